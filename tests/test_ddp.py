"""DDP on CPU (2 processes, gloo, ddp_spawn): exact evaluation and a training run."""

import pytest
import pytorch_lightning as pl
import torch
from _models import make

from newsrec.data import MINDDataModule
from newsrec.metrics import BEYOND_ACCURACY_NAMES
from newsrec.training import training_callbacks


def small_model(dm, name="nrms"):
    return make(name, dm)


# the papers' baselines
ZOO = [
    "gru",
    "naml",
    "fastformer_nr",
    "npa",
    "lstur",
    "hierec",
    "miner",
    "libfm",
    "deepfm",
    "fim",
    "dkn",
    "kred",
    "user_as_graph",
    "gerl",
    "gnewsrec",
    "digat",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["NRMS", "GLORY", "FUM", "nrms_plm", "fum_plm", *ZOO])
def test_ddp_evaluation_equals_single_process(tiny_world, tmp_path, name):
    dm = MINDDataModule(str(tiny_world), batch_size=8, eval_batch_size=7)  # uneven shards on purpose
    torch.manual_seed(0)
    model = small_model(dm, name)
    model.beyond_accuracy = "all"  # beyond-accuracy totals must be DDP-exact too
    model.connect_data(dm, stage="validate")
    common = dict(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        use_distributed_sampler=False,
        callbacks=training_callbacks(),
    )
    single = pl.Trainer(devices=1, **common).validate(model, dm, verbose=False)[0]
    ddp = pl.Trainer(devices=2, strategy="ddp_spawn", **common).validate(model, dm, verbose=False)[0]
    beyond = [f"val/{n}@10" for n in BEYOND_ACCURACY_NAMES]
    for k in ("val/auc", "val/mrr", "val/ndcg@5", "val/ndcg@10", "val/impressions", *beyond):
        assert ddp[k] == pytest.approx(single[k], abs=1e-6), k
    assert single["val/impressions"] == len(dm.behaviors("dev"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nrms", "glory_plm"])
def test_ddp_training_runs_and_shards_batches(tiny_world, tmp_path, name):
    """Two ranks train; with a PLM encoder too (a trainable backbone whose unused pooler and
    frozen layers must not stall DDP's gradient reduction)."""
    dm = MINDDataModule(str(tiny_world), batch_size=8)
    model = small_model(dm, name)
    trainer = pl.Trainer(
        devices=2,
        strategy="ddp_spawn",
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        use_distributed_sampler=False,
        enable_checkpointing=False,
        callbacks=training_callbacks(),
    )
    trainer.fit(model.connect_data(dm), dm)
    assert trainer.state.finished


@pytest.mark.parametrize("world", [1, 2, 3])
def test_samplers_shard_without_overlap_or_padding(world, monkeypatch):
    import numpy as np

    from newsrec.data.batching import EpochBatchSampler, ImpressionBatchSampler

    def shards(make):
        out = []
        for rank in range(world):
            monkeypatch.setattr(EpochBatchSampler, "_world", staticmethod(lambda r=rank: (r, world)))
            out.append([np.asarray(b[1] if isinstance(b, tuple) else b) for b in make()])
        return out

    train = shards(lambda: EpochBatchSampler(103, 8, seed=1))
    lengths = {len(s) for s in train}
    assert len(lengths) == 1  # every rank runs the same number of steps
    seen = np.concatenate([np.concatenate(s) for s in train])
    assert len(seen) == len(set(seen.tolist()))  # no sample twice in an epoch
    order = np.random.default_rng(0).permutation(50)
    evals = shards(lambda: ImpressionBatchSampler(order, 7))
    got = np.concatenate([np.concatenate(s) for s in evals if s])
    assert sorted(got.tolist()) == list(range(50))  # every impression exactly once


@pytest.mark.slow
def test_ddp_prediction_file_has_every_impression_once(tiny_world, tmp_path):
    import zipfile

    from newsrec.training import PredictionFileWriter

    dm = MINDDataModule(str(tiny_world), eval_batch_size=7)
    model = small_model(dm)
    out = tmp_path / "prediction.zip"
    trainer = pl.Trainer(
        devices=2,
        strategy="ddp_spawn",
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        use_distributed_sampler=False,
        callbacks=[PredictionFileWriter(str(out)), *training_callbacks()],
    )
    trainer.predict(model.connect_data(dm, stage="predict"), dm, return_predictions=False)
    with zipfile.ZipFile(out) as zf:
        text = zf.read("prediction.txt").decode()
    ids = [int(line.split()[0]) for line in text.splitlines()]
    assert ids == sorted(dm.behaviors("dev").impression_ids.tolist())
    # the same file as one process writes
    single = tmp_path / "single.txt"
    pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[PredictionFileWriter(str(single))]
    ).predict(model, dm, return_predictions=False)
    assert single.read_text() == text


def _release_worker(rank: int, init_file: str, results) -> None:
    import torch.distributed as dist

    from newsrec.training import release_spawned_process_group

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    released = release_spawned_process_group()
    results.put((rank, released, dist.is_initialized()))


def test_spawned_workers_leave_their_process_group_before_exit(tmp_path):
    """ddp_spawn workers destroy the gloo group themselves (after a barrier) rather than at
    interpreter exit, where a worker could abort after its work was done (seen in CI)."""
    import torch.multiprocessing as mp

    from newsrec.training import release_spawned_process_group

    assert release_spawned_process_group() is False  # the main process: nothing to release
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(_release_worker, args=(str(tmp_path / "init"), results), nprocs=2, start_method="spawn")
    assert sorted(results.get() for _ in range(2)) == [(0, True, False), (1, True, False)]
