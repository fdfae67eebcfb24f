"""Each model of the papers' tables, built from its MIND-small config at MIND-small's sizes, has
the parameter count per component recorded beside its reference (``tests/fidelity/*.json``,
``docs/models/fidelity.md``), and no learned table starts larger than the text vectors beside it
unless the official code does so."""

from __future__ import annotations

import pytest
import torch
from _fidelity import (
    MAX_LEARNED_ROW_NORM,
    build_paper_model,
    component_counts,
    learned_tables,
    load_record,
    paper_config,
    recorded_models,
)

MODELS = recorded_models()


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_per_component(name):
    record = load_record(name)
    counts = component_counts(build_paper_model(name))
    recorded = {component: c["newsrec"] for component, c in record["components"].items()}
    assert counts == recorded


@pytest.mark.parametrize("name", MODELS)
def test_components_match_the_reference_or_say_why(name):
    """Every component within 2 % of the reference's count, or its reason in ``differences``."""
    record = load_record(name)
    reasons = record.get("differences", {})
    assert record.get("reference"), f"{name}: no reference named"
    for component, c in record["components"].items():
        ref = c.get("reference")
        assert ref is not None, f"{name}.{component}: the reference's count is missing"
        if abs(c["newsrec"] - ref) > 0.02 * ref:
            assert reasons.get(component), f"{name}.{component}: {c['newsrec']:,} against {ref:,}, no reason given"


@pytest.mark.parametrize("name", MODELS)
def test_learned_tables_start_small(name):
    allowed = load_record(name).get("large_tables", {})
    model = build_paper_model(name)
    for table_name, table in learned_tables(model).items():
        rows = table.weight.detach()
        if table.padding_idx is not None:
            rows = torch.cat([rows[: table.padding_idx], rows[table.padding_idx + 1 :]])
        norm = rows.norm(dim=-1).mean().item() if len(rows) else 0.0
        if table_name not in allowed:
            assert norm <= MAX_LEARNED_ROW_NORM, f"{name}.{table_name} starts with row norm {norm:.2f}"


#: the nineteen systems of the GLORY and FUM papers' tables, by config name
PAPER_MODELS = (
    "nrms glory fum gru npa naml lstur hierec miner fastformer "
    "gerl gnewsrec user_as_graph digat dkn kred fim libfm deepfm"
).split()


def test_every_model_of_the_tables_is_recorded():
    missing = sorted(set(PAPER_MODELS) - set(MODELS))
    assert not missing, f"no fidelity record for {missing}"


@pytest.mark.parametrize("name,amsgrad", [("kred", True), ("hierec", True), ("nrms", False)])
def test_the_mind_config_builds_the_official_optimiser(name, amsgrad):
    """KRED's and HieRec's official codes train with Adam's AMSGrad variant; the others with
    plain Adam: the MIND config's model builds that optimiser, at the config's rate."""
    _, config = paper_config(name)
    model = build_paper_model(name)
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    assert isinstance(optimizer, torch.optim.Adam)
    assert all(group["amsgrad"] is amsgrad for group in optimizer.param_groups)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(config.get("lr", model.lr))
