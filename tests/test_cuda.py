"""The models on a CUDA device: the same scores as on the CPU, bf16 autocast training, and a
Lightning fit + validate on the GPU. Skipped where no CUDA device is present (CI is CPU-only;
these run on a lent GPU machine, see benchmarks/RESULTS.md)."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from _models import make

from newsrec.data import MINDDataModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

MODELS = ["nrms", "glory", "glory_sampled", "fum", "fum_mhsa"]


@pytest.fixture(scope="module")
def dm(tiny_world):
    return MINDDataModule(str(tiny_world), batch_size=8, eval_batch_size=16, history_length=20)


def to(batch, device):
    return {
        k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
        for k, v in batch.items()
    }


@pytest.fixture(autouse=True)
def exact_float32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("name", MODELS)
def test_cuda_scores_equal_cpu_scores(dm, name):
    torch.manual_seed(0)
    model = make(name, dm).eval()
    dm.configure(model.data_requirements())
    batch = dm.val_dataloader().dataset[np.arange(10)]
    with torch.no_grad():
        cpu = model(batch)
        gpu = model.cuda()(to(batch, "cuda")).cpu()
    mask = batch["candidate_mask"]
    torch.testing.assert_close(gpu[mask], cpu[mask], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_training_step_gives_finite_loss_and_gradients(dm, name):
    torch.manual_seed(0)
    model = make(name, dm).cuda().train()
    model.log = lambda *a, **k: None  # no Trainer attached
    dm.configure(model.data_requirements())
    batch = to(next(iter(dm.train_dataloader())), "cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["nrms", "glory", "fum"])
def test_fit_and_validate_on_gpu_match_cpu_validation(dm, name, tmp_path):
    pl.seed_everything(0)
    model = make(name, dm)
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = pl.Trainer(
        accelerator="gpu", devices=1, max_epochs=1, limit_train_batches=5, num_sanity_val_steps=0, **quiet
    )
    trainer.fit(model.connect_data(dm), dm)
    gpu = pl.Trainer(accelerator="gpu", devices=1, **quiet).validate(model, dm, verbose=False)[0]
    cpu = pl.Trainer(accelerator="cpu", **quiet).validate(model.cpu(), dm, verbose=False)[0]
    assert np.isfinite(gpu["val/auc"])
    for key in ("val/auc", "val/mrr", "val/ndcg@10"):
        assert gpu[key] == pytest.approx(cpu[key], abs=2e-3)


def test_batches_are_pinned_for_a_cuda_device(tiny_world):
    dm = MINDDataModule(str(tiny_world), batch_size=8, history_length=20)  # no Trainer attached
    model = make("glory", dm)
    dm.configure(model.data_requirements())
    batch = next(iter(dm.train_dataloader()))  # "auto": CUDA is available
    assert batch["history"].is_pinned() and batch["news"]["title"].is_pinned()
    assert batch["subgraph"].edge_index.is_pinned()
