"""The typed batch every newsrec model consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["NewsBatch", "as_batch"]


@dataclass
class NewsBatch:
    """One batch of impressions (training samples or whole evaluation impressions).

    The batch names ``U`` distinct news once; everything else indexes them. Position 0 of
    ``news`` is always the padding news (corpus row 0), so padding indices point at it.

    Attributes:
        news: features of the ``U`` news, ``{field: [U, ...]}`` (``title [U, L_title]``,
            ``entities [U, E]``, ``category [U]``, …; ``entity_neighbors [U, E, M_e]`` when the
            model asks for entity-graph neighbours).
        news_rows: ``[U]`` long, their corpus rows (what cached news vectors are indexed by).
        history: ``[B_u, L]`` long, each distinct user history as indices into ``news``, oldest
            first, padded at the end with 0.
        history_mask: ``[B_u, L]`` bool, True at real clicks.
        candidates: ``[B, C]`` long, indices into ``news`` (in training the clicked news is
            column 0).
        candidate_mask: ``[B, C]`` bool, True at real candidates.
        labels: ``[B, C]`` long, 1 = clicked, 0 = not, -1 = unknown (unlabelled test data).
        user_index: ``[B]`` long, which ``history`` row each impression uses.
        impression_ids: ``[B]`` long, the impression ids of the behaviors file.
        rows: ``[B]`` long, the impressions' rows in the behaviors arrays.
        transition_features: ``[B, C, m, 4]`` float or ``None``: click-graph transition features
            between every candidate and the impression's ``m`` most recent clicks (when the
            model asks for ``transitions = m``).
        transition_mask: ``[B, m]`` bool or ``None``: which of the ``m`` recent clicks exist.
        subgraph: a :class:`torch_geometric.data.Batch` of the users' sampled subgraphs of the
            news graph (GLORY), or ``None``; its ``node_index [T]`` gives each node's position
            in ``news`` and ``history_position`` each history entry's node.
        history_users: ``[B_u]`` long or ``None``: the user of each history as an index of the
            training users (0: a user the training split does not have), when the model asks
            for ``user_ids``.

    A ``NewsBatch`` also reads like the dict it replaces (``batch["history"]``,
    ``"subgraph" in batch``): a field that is ``None`` is absent.
    """

    news: dict[str, Tensor]
    news_rows: Tensor
    history: Tensor
    history_mask: Tensor
    candidates: Tensor
    candidate_mask: Tensor
    labels: Tensor
    user_index: Tensor
    impression_ids: Tensor
    rows: Tensor
    transition_features: Tensor | None = None
    transition_mask: Tensor | None = None
    subgraph: Any = None
    history_users: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- devices --------------------------------------------------------------------------------------
    def _apply(self, fn) -> NewsBatch:
        def move(value):
            if value is None:
                return None
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return fn(value) if hasattr(value, "to") else value

        return dataclasses.replace(self, **{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> NewsBatch:
        """A copy with every tensor (and the subgraph) on ``device`` (Lightning calls this)."""
        return self._apply(lambda v: v.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> NewsBatch:
        """A copy in page-locked memory (the DataLoader calls this with ``pin_memory=True``)."""
        return self._apply(lambda v: v.pin_memory())

    @property
    def num_impressions(self) -> int:
        """``B``."""
        return int(self.candidates.shape[0])

    # -- the dict view -------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return [
            f.name for f in dataclasses.fields(self) if f.name != "extra" and getattr(self, f.name) is not None
        ] + list(self.extra)

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        value = getattr(self, key, None) if key != "extra" else None
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


_FIELDS = {f.name for f in dataclasses.fields(NewsBatch)}


def as_batch(batch: NewsBatch | Mapping[str, Any]) -> NewsBatch:
    """``batch`` as a :class:`NewsBatch` (a dict with the same keys is converted; unknown keys
    go to ``extra``)."""
    if isinstance(batch, NewsBatch):
        return batch
    known = {k: v for k, v in batch.items() if k in _FIELDS and k != "extra"}
    required = ("news", "news_rows", "history", "history_mask", "candidates", "candidate_mask")
    missing = [f for f in required if f not in known]
    if missing:
        raise KeyError(f"a batch needs the fields {missing}; see newsrec.core.NewsBatch")
    B = known["candidates"].shape[0]
    known.setdefault("labels", torch.zeros_like(known["candidates"]))
    for name in ("user_index", "impression_ids", "rows"):
        known.setdefault(name, torch.arange(B))
    return NewsBatch(**known, extra={k: v for k, v in batch.items() if k not in _FIELDS})
