"""Small shared helpers: progress bars and plain-text tables (atomic writes live in
:mod:`newsrec.core.files`)."""

from __future__ import annotations

import functools
import os
import warnings

from tqdm.auto import tqdm

__all__ = ["METRIC_NAMES", "format_table", "progress", "renamed_arguments"]

#: the per-impression ranking metrics every table and log reports, in this order
METRIC_NAMES = ("auc", "mrr", "ndcg@5", "ndcg@10")


def progress(*args, disable: bool = False, **kwargs) -> tqdm:
    """A tqdm progress bar (disabled with ``disable=True`` or ``NEWSREC_PROGRESS=0``)."""
    if os.environ.get("NEWSREC_PROGRESS", "1") == "0":
        disable = True
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, disable=disable, **kwargs)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text metrics table (one row per model)."""
    cols = METRIC_NAMES
    lines = [f"{'model':<14}" + "".join(f"{c:>10}" for c in cols)]
    for name, m in rows.items():
        lines.append(f"{name:<14}" + "".join(f"{m[c]:>10.4f}" for c in cols))
    return "\n".join(lines)


def renamed_arguments(**renames: str):
    """Accept each old keyword name (``old="new"``) for one release, with a
    ``DeprecationWarning`` that names the new one; passing both is an error."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    owner = fn.__qualname__.removesuffix(".__init__")
                    if new in kwargs:
                        raise TypeError(f"{owner}: pass {new}= only ({old}= is its old name)")
                    warnings.warn(
                        f"{owner}({old}=...) is deprecated: use {new}= (removed in the next release)",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return inner

    return wrap
