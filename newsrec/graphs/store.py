"""Saving and loading graphs in the processed cache (npy + manifest, never pickle)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from newsrec.core.cache import ArrayCache

__all__ = ["save_graph", "load_graph", "load_or_build_graph"]


def _entry(graph: Data, meta: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
    arrays = {"edge_index": graph.edge_index.cpu().numpy(), "edge_weight": graph.edge_weight.cpu().numpy()}
    return arrays, {"num_nodes": int(graph.num_nodes), **(meta or {})}


def save_graph(graph: Data, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Write ``edge_index``, ``edge_weight`` and ``num_nodes`` of ``graph`` atomically."""
    path = Path(path)
    ArrayCache(path.parent).save(path.name, *_entry(graph, meta))


def load_graph(path: str | os.PathLike) -> Data | None:
    """The graph saved at ``path``, or ``None`` when missing or corrupt (a warning says which)."""
    path = Path(path)
    got = ArrayCache(path.parent).load(path.name)
    return None if got is None else _graph(*got)


def load_or_build_graph(path: str | os.PathLike, build: Callable[[], Data], meta: dict | None = None) -> Data:
    """The graph cached at ``path``, built with ``build()`` and saved when missing or corrupt
    (:meth:`ArrayCache.load_or_build`: of several processes only one builds it)."""
    path = Path(path)
    return _graph(*ArrayCache(path.parent).load_or_build(path.name, lambda: _entry(build(), meta)))


def _graph(arrays: dict, meta: dict) -> Data:
    return Data(
        edge_index=torch.from_numpy(np.asarray(arrays["edge_index"])).long(),
        edge_weight=torch.from_numpy(np.asarray(arrays["edge_weight"])).float(),
        num_nodes=int(meta["num_nodes"]),
    )
