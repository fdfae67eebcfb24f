"""Resuming: last.ckpt is always the latest state, `--ckpt_path last` finds it across version
folders, and a mid-epoch resume trains the rest of that epoch exactly."""

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from _models import make

from newsrec.checkpoint_io import LastCheckpoint, find_last_checkpoint
from newsrec.cli import main
from newsrec.data import MINDDataModule
from newsrec.data.batching import EpochBatchSampler, ResumableLoader
from newsrec.training import training_callbacks

TESTS = Path(__file__).parent


def batches(loader):
    return [idx.tolist() for _, idx in loader]


class Echo(torch.utils.data.Dataset):
    """Returns its key, ``(epoch, indices)``."""

    def __getitem__(self, key):
        return key


def loader(n=50, batch=7, seed=1):
    return ResumableLoader(Echo(), EpochBatchSampler(n, batch, seed=seed), collate_fn=lambda b: b)


def test_resumable_loader_continues_mid_epoch_and_after_an_epoch_end():
    full = loader()
    full.epoch_sampler.set_epoch(2)
    want = batches(full)
    a = loader()
    a.epoch_sampler.set_epoch(2)
    it = iter(a)
    seen = [next(it)[1].tolist() for _ in range(3)]
    state = a.state_dict()
    assert state == {"epoch": 2, "position": 3}
    b = loader()
    b.load_state_dict(state)
    b.epoch_sampler.set_epoch(2)  # what Lightning does before the epoch: keeps the position
    assert seen + batches(b) == want
    assert b.state_dict() == {"epoch": 2, "position": len(want)}
    # saved at the epoch's end: the next epoch starts from its first batch
    c = loader()
    c.load_state_dict(b.state_dict())
    assert c.state_dict() == {"epoch": 3, "position": 0}
    nxt = loader()
    nxt.epoch_sampler.set_epoch(3)
    assert batches(c) == batches(nxt) and batches(c) != want
    # a later epoch never inherits the skip
    d = loader()
    d.load_state_dict(state)
    d.epoch_sampler.set_epoch(5)
    e = loader()
    e.epoch_sampler.set_epoch(5)
    assert batches(d) == batches(e)


def test_last_checkpoint_is_the_latest_state_every_epoch(tiny_world, tmp_path):
    """ModelCheckpoint(save_last=True, monitor=…) rewrites last.ckpt only when the monitored value
    improves; LastCheckpoint holds the final step whatever the metric does."""
    dm = MINDDataModule(str(tiny_world), batch_size=16)
    model = make("nrms", dm, lr=0.0).connect_data(dm)  # lr 0: val/auc never improves after epoch 0
    best = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/auc", mode="max", save_last=True)
    latest = LastCheckpoint(filename="latest.ckpt", every_n_train_steps=5)
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = pl.Trainer(max_epochs=3, callbacks=[best, latest, *training_callbacks()], limit_val_batches=2, **quiet)
    trainer.fit(model, dm)
    state = torch.load(tmp_path / "latest.ckpt", weights_only=True)
    assert state["global_step"] == trainer.global_step and state["epoch"] == 2
    lagging = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert lagging["global_step"] < trainer.global_step  # what Lightning's save_last does here


class RecordBatches(pl.Callback):
    """(global step, batch index, first impression rows) of every training batch."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.seen, self.stop_at = [], stop_at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append((trainer.global_step, batch_idx, batch.rows[:4].tolist()))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop_at:  # what max_time's timer does
            trainer.should_stop = True


@pytest.mark.parametrize("how", ["max_steps", "should_stop"])
def test_a_run_stopped_mid_epoch_resumes_the_rest_of_that_epoch(tiny_world, tmp_path, how):
    """Issue: stopped by max_time mid-epoch, then resumed, the run skipped the rest of the epoch
    (Lightning marks the epoch finished once its loop ends, and the loader restarted at batch 0)."""
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1)

    def fit(max_steps=-1, stop_at=None, ckpt=None):
        pl.seed_everything(5)
        dm = MINDDataModule(str(tiny_world), batch_size=16)
        model = make("nrms", dm, lr_schedule="constant").connect_data(dm)
        record = RecordBatches(stop_at)
        callbacks = training_callbacks()
        last = LastCheckpoint(dirpath=tmp_path)
        trainer = pl.Trainer(max_epochs=2, max_steps=max_steps, callbacks=[record, last, *callbacks], **quiet)
        trainer.fit(model, dm, ckpt_path=ckpt)
        return record.seen, trainer, model

    full, trainer, full_model = fit()
    per_epoch = trainer.num_training_batches
    cut = per_epoch // 2
    stopped, _, _ = fit(**({"max_steps": cut} if how == "max_steps" else {"stop_at": cut}))
    assert len(stopped) == cut
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["global_step"] == cut
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "position": cut}]
    resumed, trainer, model = fit(ckpt=str(tmp_path / "last.ckpt"))
    assert stopped + resumed == full  # the same batches, in the same order, with the same indices
    assert trainer.global_step == 2 * per_epoch
    for (k, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_find_last_checkpoint_takes_the_newest(tmp_path):
    assert find_last_checkpoint(tmp_path) is None
    for i, name in enumerate(["lightning_logs/version_0/checkpoints", "lightning_logs/version_2/checkpoints"]):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "last.ckpt").write_bytes(b"x")
        os.utime(tmp_path / name / "last.ckpt", ns=(10**18 + i, 10**18 + i))
    (tmp_path / "lightning_logs/version_3").mkdir()  # an empty folder of a killed command
    assert find_last_checkpoint(tmp_path) == tmp_path / "lightning_logs/version_2/checkpoints/last.ckpt"


def tiny_config(tmp_path, root, **trainer) -> str:
    config = {
        "seed_everything": 5,
        "model": {
            "class_path": "newsrec.models.NRMS",
            "init_args": {"word_dim": 50, "num_heads": 2, "head_dim": 8, "attention_hidden": 8, "lr": 3e-3},
        },
        "data": {"root": str(root), "batch_size": 16},
        "trainer": {
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "limit_val_batches": 2,
            "deterministic": True,
            "accelerator": "cpu",
            **trainer,
        },
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return str(cfg)


def test_cli_ckpt_path_last_resumes_the_run(tiny_world, tmp_path, capsys):
    """Lightning's own `last` looked in the new (empty) version folder and started over."""
    cfg = tiny_config(tmp_path, tiny_world)
    assert main(["fit", "--config", cfg, "--trainer.max_epochs", "1"]) == 0
    first = find_last_checkpoint(tmp_path)
    one_epoch = torch.load(first, weights_only=True)["global_step"]
    assert main(["fit", "--config", cfg, "--trainer.max_epochs", "2", "--ckpt_path", "last"]) == 0
    assert f"resuming from {first}" in capsys.readouterr().out
    assert torch.load(find_last_checkpoint(tmp_path), weights_only=True)["global_step"] == 2 * one_epoch


def fit_weights(cfg, out, *extra) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.update(NEWSREC_PROGRESS="0", OMP_NUM_THREADS="1")
    script = (
        "import sys, torch; from newsrec.lightning_cli import NewsRecCLI, run_lightning_cli;"
        "torch.set_num_threads(1); run_lightning_cli(sys.argv[1:])"
    )
    return subprocess.run(
        [sys.executable, "-c", script, "fit", "--config", cfg, *extra], env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip


def final_weights(root: Path) -> dict:
    return torch.load(find_last_checkpoint(root), weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_ckpt_path_last_gives_the_same_weights(tiny_world, tmp_path):
    """The issue's bar: SIGKILL at a random point, the README's resume command, torch.equal weights."""
    epochs, every = 3, 3
    per_epoch = len(MINDDataModule(str(tiny_world), batch_size=16).train_dataloader())
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir(), cut_dir.mkdir()
    args = ["--trainer.max_epochs", str(epochs), "--checkpoint_every_n_steps", str(every)]
    full = fit_weights(tiny_config(full_dir, tiny_world), full_dir, *args)
    assert full.returncode == 0, full.stderr[-3000:]
    rng = random.Random(2026)
    # mid-epoch, past a step checkpoint, not on one: the resume redoes some steps of that epoch
    step = rng.choice([s for s in range(per_epoch + 1, epochs * per_epoch) if s % every and s % per_epoch])
    cfg = tiny_config(cut_dir, tiny_world)
    config = yaml.safe_load(Path(cfg).read_text())
    config["trainer"]["callbacks"] = [{"class_path": "_resume_worker.KillAtStep", "init_args": {"step": step}}]
    killed_cfg = cut_dir / "killed.yaml"
    killed_cfg.write_text(yaml.safe_dump(config))
    killed = fit_weights(str(killed_cfg), cut_dir, *args)
    assert killed.returncode == -9, killed.stderr[-3000:]
    saved = torch.load(find_last_checkpoint(cut_dir), weights_only=True)["global_step"]
    assert saved == step - step % every and saved % per_epoch  # a mid-epoch last.ckpt
    resumed = fit_weights(cfg, cut_dir, *args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    a, b = final_weights(full_dir), final_weights(cut_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not np.isnan(float(next(iter(a.values())).sum()))


def test_best_checkpoint_keeps_its_best_across_folders(tmp_path):
    """Lightning's ModelCheckpoint forgets the best score when a resume writes to a new folder."""
    from newsrec.checkpoint_io import BestCheckpoint

    old = tmp_path / "version_0" / "checkpoints"
    old.mkdir(parents=True)
    (old / "best.ckpt").write_bytes(b"x")
    saved = pl.callbacks.ModelCheckpoint(dirpath=old, monitor="val/auc", mode="max")
    saved.best_model_path, saved.best_model_score = str(old / "best.ckpt"), torch.tensor(0.9)
    saved.best_k_models = {saved.best_model_path: saved.best_model_score}
    state = saved.state_dict()
    for cls, kept in ((pl.callbacks.ModelCheckpoint, False), (BestCheckpoint, True)):
        cb = cls(dirpath=tmp_path / "version_1" / "checkpoints", monitor="val/auc", mode="max")
        cb.load_state_dict(state)
        assert (cb.best_model_score is not None) == kept
        # a worse score after the resume is not in the top 1
        trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        assert cb.check_monitor_top_k(trainer, torch.tensor(0.5)) != kept
