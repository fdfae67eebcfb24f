"""The house's layering, read from newsrec's own imports with ``ast`` (function-level imports
included: an import inside a function is still an arrow)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "newsrec"

#: rank of every top-level part; a module may import only parts of its own rank or below
LAYERS = {
    "newsrec.errors": 0,
    "newsrec.utils": 0,
    "newsrec.core": 1,  # the contract: requirements, typed batch, disk cache, atomic writes
    "newsrec.training": 2,  # optimiser, schedule and the run's callbacks: no model, no data
    "newsrec.nn": 2,
    "newsrec.beyond_accuracy": 2,
    "newsrec.metrics": 2,
    "newsrec.graphs": 3,
    "newsrec.data": 4,
    "newsrec.models": 5,
    "newsrec.baselines": 5,
    "newsrec.checkpoint_io": 5,
    "newsrec.serving": 6,
    "newsrec.lightning_cli": 7,
    "newsrec.cli": 8,
    "newsrec": 9,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best


def imports() -> dict[str, set[str]]:
    """module → the newsrec modules it imports (``from a.b import c`` counts ``a.b.c`` when that
    is a module, else ``a.b``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.startswith("newsrec")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("newsrec"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    out.add(full if full in modules else node.module)
        graph[name] = {m for m in out if m in modules and m != name}
    return graph


def test_the_graph_is_read():
    graph = imports()
    assert "newsrec.core.cache" in graph["newsrec.graphs.store"]
    assert "newsrec.models.base" in graph["newsrec.models.nrms"]


def test_no_arrow_points_up():
    bad = []
    for module, targets in imports().items():
        for target in targets:
            if LAYERS[layer_of(target)] > LAYERS[layer_of(module)]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("low,high", [("newsrec.nn", "newsrec.data"), ("newsrec.graphs", "newsrec.data")])
def test_named_layers_stay_apart(low, high):
    graph = imports()
    bad = [f"{m} -> {t}" for m, ts in graph.items() if layer_of(m) == low for t in ts if layer_of(t) == high]
    assert not bad


def test_no_import_cycle():
    graph = imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_models_and_data_never_reach_through_the_trainer():
    """The model ↔ data handshake is explicit (``model.connect_data(dm)``)."""
    bad = []
    for part in ("models", "data"):
        for path in (PACKAGE / part).rglob("*.py"):
            text = path.read_text()
            for needle in ("trainer.datamodule", "trainer.lightning_module", '"datamodule"', "'datamodule'"):
                if needle in text:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}: {needle}")
    assert not bad


def test_files_stay_small_and_the_base_module_thin():
    """Every module of newsrec ≤ 400 lines; the base model module ≤ 300 (it holds the protocol,
    the loss and the scoring path; what is about a run lives in newsrec.training)."""
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long
    assert len((PACKAGE / "models" / "base.py").read_text().splitlines()) <= 300


def test_no_private_lightning_name_is_imported():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "pytorch_lightning", "lightning", "lightning_fabric"
            ):  # fmt: skip
                private = [p for p in node.module.split(".") if p.startswith("_")]
                private += [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module} {private}")
    assert not bad, bad
