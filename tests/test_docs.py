import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_docs_build_strict(tmp_path):
    """The documentation site builds with warnings as errors (mkdocs is in the test extra)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("GatedGraphEncoder") > 0


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- test-command -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    extras = set(re.search(r"\.\[([^\]]*)\]", block).group(1).split(","))
    # the service tests skip without [serve]: CI must install it, or they would never run
    assert "pytest" in block and {"test", "serve"} <= extras, block
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_demo_configs_share_one_world():
    """The demo configs write one root (data/synthetic-demo): they must ask for the same world,
    or the second demo a user runs would meet a world it did not ask for."""
    import yaml

    configs = sorted((ROOT / "configs").glob("*_demo.yaml"))
    assert len(configs) >= 4
    worlds = {
        (c["data"]["root"], str(c["data"]["synthetic"])) for c in (yaml.safe_load(p.read_text()) for p in configs)
    }
    assert len(worlds) == 1, worlds
