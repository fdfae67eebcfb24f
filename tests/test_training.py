"""newsrec.training: the schedule, its plan in checkpoints, and the run's callbacks."""

import io
from types import SimpleNamespace

import pytest
import torch

from newsrec.training import ReseedEveryStep, WarmupLinearDecay, configure_adam, parameter_groups


def test_warmup_linear_decay_exact_values():
    plan = WarmupLinearDecay(total_steps=10, warmup_steps=2)
    assert [plan(t) for t in (0, 1, 2, 6, 10, 12)] == [0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    assert WarmupLinearDecay(4, 0)(0) == 1.0  # no warm-up: decay from the first step


def test_the_plan_travels_with_the_scheduler_state_through_a_weights_only_checkpoint():
    """A resumed fit keeps the plan it started with, even when the new run would plan more."""
    params = [torch.nn.Parameter(torch.zeros(2))]
    first = configure_adam([{"params": params}], lr=1.0, planned_steps=100)["lr_scheduler"]["scheduler"]
    for _ in range(5):
        first.optimizer.step()
        first.step()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = configure_adam([{"params": params}], lr=1.0, planned_steps=300)["lr_scheduler"]["scheduler"]
    resumed.load_state_dict(state)
    plan = resumed.lr_lambdas[0]
    assert (plan.total_steps, plan.warmup_steps) == (100, 10)
    assert resumed.get_last_lr() == first.get_last_lr()


def test_unknown_steps_or_schedule():
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))]}]
    with pytest.warns(UserWarning, match="constant learning rate"):
        assert isinstance(configure_adam(params, lr=1.0, planned_steps=float("inf")), torch.optim.Adam)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        configure_adam(params, lr=1.0, schedule="cosine")


def test_parameter_groups_give_a_submodule_its_own_rate():
    outer, inner = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    both = list(outer.parameters()) + list(inner.parameters())
    assert len(parameter_groups(both, inner, None)) == 1
    rest, sub = parameter_groups(both, inner, 1e-5)
    assert sub["lr"] == 1e-5 and {id(p) for p in sub["params"]} == {id(p) for p in inner.parameters()}
    assert len(rest["params"]) == 2


def test_reseeding_depends_only_on_the_seed_and_the_step():
    callback = ReseedEveryStep(seed=3)

    def draw(step, batch_idx=0):
        torch.rand(5)  # whatever ran before
        callback.on_train_batch_start(SimpleNamespace(global_step=step), None, None, batch_idx)
        return torch.rand(3)

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))
    assert not torch.equal(draw(7, 0), draw(7, 1))  # gradient accumulation: batches of one step differ


def _resident_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_release_freed_memory_gives_the_heaps_free_pages_back():
    """Blocks freed in the middle of glibc's heap stay resident until malloc_trim: the helper the
    base module calls after every training step must return them."""
    import sys

    from newsrec.utils import release_freed_memory

    if not sys.platform.startswith("linux") or not release_freed_memory():
        pytest.skip("glibc's malloc_trim is not available here")
    keep, big = [], []
    for _ in range(400):  # 64 KiB blocks (below glibc's mmap threshold) pinned apart by small ones
        big.append(bytearray(64 * 1024))
        keep.append(bytearray(1024))
    before = _resident_bytes()
    del big
    assert _resident_bytes() > before - 8 * 2**20  # freed, yet still resident
    assert release_freed_memory() is True
    assert _resident_bytes() < before - 16 * 2**20  # 25 MiB freed: most of it back to the OS
    assert len(keep) == 400
    assert release_freed_memory(max_share=1e-12) is False  # right after one: skipped (budget)
