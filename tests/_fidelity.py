"""The papers' sizes and the per-component parameter counts of ``tests/test_fidelity.py``.

Each model of the papers' tables is built from its ``configs/<name>_mind_small.yaml``
(``model.init_args``) at MIND-small's sizes (:data:`MIND_SMALL_SIZES`), and its parameters are
counted per top-level component (:func:`component_counts`). ``tests/fidelity/<name>.json`` records
newsrec's counts beside the reference's (``docs/models/fidelity.md`` prints them):

.. code-block:: json

    {"model": "GLORY", "reference": "tinyrolls/GLORY@<commit>",
     "components": {"<child module>": {"newsrec": 123, "reference": 123}},
     "large_tables": {"<table>": "why this learned table starts large (the official code does)"},
     "differences": {"<child module>": "why its count is more than 2 % off the reference's"}}
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RECORDS = Path(__file__).resolve().parent / "fidelity"

#: MIND-small's sizes (train + dev), each with its padding / unknown row, as the data module counts
#: them: words of the titles (and abstracts) kept by the reader, entity ids of the TransE files,
#: 18 categories and 270 subcategories, 94,057 users, 65,238 news
MIND_SMALL_SIZES = {
    "num_words": 42_000,
    "num_entity_ids": 26_000,
    "num_categories": 19,
    "num_subcategories": 271,
    "num_users": 94_058,
    "num_news": 65_239,
}

#: learned tables whose rows may start above this mean norm must be named in the record's
#: ``large_tables`` with the reason (a GloVe word or TransE entity table is pretrained, not learned)
MAX_LEARNED_ROW_NORM = 1.0


def paper_config(name: str) -> tuple[type, dict]:
    """The model class and its ``init_args`` from ``configs/<name>_mind_small.yaml``."""
    import importlib

    config = yaml.safe_load((ROOT / "configs" / f"{name}_mind_small.yaml").read_text())["model"]
    module, cls = config["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls), dict(config.get("init_args") or {})


def build_paper_model(name: str) -> nn.Module:
    """The model of ``configs/<name>_mind_small.yaml`` at :data:`MIND_SMALL_SIZES`, seeded."""
    cls, args = paper_config(name)
    torch.manual_seed(0)
    return cls(**{**args, **MIND_SMALL_SIZES})


def component_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level child module (each tensor counted once, in the first child that
    holds it); children without parameters are left out."""
    seen: set[int] = set()
    counts: dict[str, int] = {}
    for name, child in model.named_children():
        total = 0
        for p in child.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        if total:
            counts[name] = total
    return counts


def learned_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """Every embedding table of the model that is not loaded from pretrained vectors."""
    pretrained = {id(t) for tables in model.pretrained_embeddings().values() for t in tables}
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Embedding) and id(m) not in pretrained}


def load_record(name: str) -> dict:
    return json.loads((RECORDS / f"{name}.json").read_text())


def recorded_models() -> list[str]:
    return sorted(p.stem for p in RECORDS.glob("*.json"))


def main() -> None:
    """``python tests/_fidelity.py NAME``: print the per-component counts of the paper-size model
    as a record skeleton (fill ``reference`` from the official code, counted once in a scratch
    environment)."""
    import sys

    for name in sys.argv[1:]:
        model = build_paper_model(name)
        path = RECORDS / f"{name}.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        components = {
            k: {"newsrec": v, "reference": old.get("components", {}).get(k, {}).get("reference")}
            for k, v in component_counts(model).items()
        }
        norms = {
            k: round(float(t.weight.detach()[1:].norm(dim=-1).mean()), 3) for k, t in learned_tables(model).items()
        }
        record = {"model": type(model).__name__, "reference": old.get("reference"), "components": components}
        record["large_tables"] = old.get("large_tables", {})
        record["differences"] = old.get("differences", {})
        print(json.dumps(record, indent=1))
        print(f"# learned tables' mean row norm: {norms}", file=sys.stderr)


if __name__ == "__main__":
    main()
