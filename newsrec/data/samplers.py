"""Samplers and the resumable loader: which samples or impressions form each batch, per epoch
and per DDP rank."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from newsrec.data.behaviors import Behaviors

__all__ = ["EpochBatchSampler", "ImpressionBatchSampler", "ResumableLoader", "history_order"]


class EpochBatchSampler(Sampler):
    """Shuffled batches of sample indices, re-shuffled every epoch from ``(seed, epoch)``, and
    sharded over DDP ranks (rank r takes batches r, r + W, …; every rank gets the same number of
    batches: the last incomplete round is dropped when sharding). Yields ``(epoch, indices)``
    so that workers know the epoch (negatives are re-drawn per epoch)."""

    def __init__(
        self, num_samples: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ) -> None:
        self.num_samples, self.batch_size, self.shuffle, self.seed = num_samples, batch_size, shuffle, seed
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0  # batches of this epoch to skip (a mid-epoch resume), once

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    @staticmethod
    def _world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _batches(self) -> list[np.ndarray]:
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
            if self.shuffle
            else np.arange(self.num_samples)
        )
        n = len(order) // self.batch_size if self.drop_last else -(-len(order) // self.batch_size)
        batches = [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(n)]
        rank, world = self._world()
        if world > 1:
            batches = batches[: len(batches) // world * world][rank::world]
        return batches

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        start, self.start = self.start, 0
        for b in self._batches()[start:]:
            yield self.epoch, b

    def __len__(self) -> int:
        return len(self._batches())


class ResumableLoader(DataLoader):
    """The training loader: a ``DataLoader`` over an :class:`EpochBatchSampler` that knows where
    it is. ``state_dict()`` is ``{"epoch", "position"}`` (batches of the epoch delivered so far);
    ``load_state_dict`` makes the next iteration start there. Lightning stores it in checkpoints
    (a *stateful* loader), so a run resumed from a mid-epoch checkpoint trains the rest of that
    epoch exactly, batch for batch: the batch order and the negatives depend only on
    ``(seed, epoch)``."""

    def __init__(self, dataset: Dataset, sampler: EpochBatchSampler, **kwargs) -> None:
        kwargs.setdefault("batch_size", None)  # the sampler yields whole batches
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.epoch_sampler = sampler
        self.position = 0

    def __iter__(self):
        sampler = self.epoch_sampler
        epoch, self.position = sampler.epoch, sampler.start
        for batch in super().__iter__():
            self.position += 1
            yield batch
        if sampler.epoch == epoch:
            self.position = len(sampler)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.epoch_sampler.epoch), "position": int(self.position)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        sampler = self.epoch_sampler
        if position >= len(sampler):  # saved at the epoch's end: the next epoch starts afresh
            epoch, position = epoch + 1, 0
        sampler.epoch, sampler.start, self.position = epoch, position, position


class ImpressionBatchSampler(Sampler):
    """Whole impressions in batches of ``batch_size``, in an order that puts impressions with
    identical histories side by side (so each batch encodes a history once); sharded over DDP
    ranks by contiguous blocks of batches, without padding or duplication."""

    def __init__(self, order: np.ndarray, batch_size: int) -> None:
        self.order, self.batch_size = order, batch_size

    def _batches(self) -> list[np.ndarray]:
        batches = [self.order[i : i + self.batch_size] for i in range(0, len(self.order), self.batch_size)]
        rank, world = EpochBatchSampler._world()
        if world > 1:
            bounds = np.linspace(0, len(batches), world + 1).round().astype(int)
            batches = batches[bounds[rank] : bounds[rank + 1]]
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())


def history_order(behaviors: Behaviors) -> np.ndarray:
    """Impression rows ordered by (user, history length, row): identical histories adjacent."""
    return np.lexsort((np.arange(len(behaviors)), behaviors.history_lengths, behaviors.users))
