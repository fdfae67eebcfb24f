"""Saving and loading graphs in the processed cache (npy + manifest, never pickle)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from newsrec.core.cache import ArrayCache

__all__ = ["save_graph", "load_graph"]


def save_graph(graph: Data, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Write ``edge_index``, ``edge_weight`` and ``num_nodes`` of ``graph`` atomically."""
    path = Path(path)
    arrays = {"edge_index": graph.edge_index.cpu().numpy(), "edge_weight": graph.edge_weight.cpu().numpy()}
    ArrayCache(path.parent).save(path.name, arrays, {"num_nodes": int(graph.num_nodes), **(meta or {})})


def load_graph(path: str | os.PathLike) -> Data | None:
    """The graph saved at ``path``, or ``None`` when missing or corrupt (a warning says which)."""
    path = Path(path)
    got = ArrayCache(path.parent).load(path.name)
    if got is None:
        return None
    arrays, meta = got
    return Data(
        edge_index=torch.from_numpy(np.asarray(arrays["edge_index"])).long(),
        edge_weight=torch.from_numpy(np.asarray(arrays["edge_weight"])).float(),
        num_nodes=int(meta["num_nodes"]),
    )
