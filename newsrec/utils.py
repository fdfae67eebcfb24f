"""Small shared helpers: progress bars and plain-text tables (atomic writes live in
:mod:`newsrec.core.files`)."""

from __future__ import annotations

import os

from tqdm.auto import tqdm

__all__ = ["progress", "format_table"]


def progress(*args, disable: bool = False, **kwargs) -> tqdm:
    """A tqdm progress bar (disabled with ``disable=True`` or ``NEWSREC_PROGRESS=0``)."""
    if os.environ.get("NEWSREC_PROGRESS", "1") == "0":
        disable = True
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, disable=disable, **kwargs)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text metrics table (one row per model)."""
    cols = ["auc", "mrr", "ndcg@5", "ndcg@10"]
    lines = [f"{'model':<14}" + "".join(f"{c:>10}" for c in cols)]
    for name, m in rows.items():
        lines.append(f"{name:<14}" + "".join(f"{m[c]:>10.4f}" for c in cols))
    return "\n".join(lines)
