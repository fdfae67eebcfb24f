"""The synthetic world's knobs are checked in the data layer (#48 item 6): an unknown knob, a
missing value or one of the wrong type is one line naming the knob (and the valid names), from
``newsrec synth --knobs``, from the benchmarks' ``--knob`` and from ``generate_mind``; every field
of the config is a checked knob, so knobs added later are checked too."""

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from newsrec.cli import main
from newsrec.data import generate_mind
from newsrec.data.synthetic import SyntheticConfig, check_knob, check_knobs

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "knobs,said",
    [('{"bogus": 1}', "'bogus' is not a knob"), ('{"transition_strength": "abc"}', "knob transition_strength"),
     ("[1, 2]", "knobs must be an object"), ('{"num_users": 5}', "'num_users' is set by its own argument"),
     ('{"title_length": [3]}', "knob title_length"), ("{bad json", "--knobs is not JSON")],
)  # fmt: skip
def test_synth_refuses_bad_knobs_with_one_line(tmp_path, capsys, knobs, said):
    assert main(["synth", "--out", str(tmp_path / "world"), "--knobs", knobs]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("newsrec: error: ") and said in err, err
    if "not a knob" in said or "own argument" in said:
        assert "the knobs are: " in err and "transition_strength" in err
    assert not (tmp_path / "world").exists()


BENCH_SAID = {
    "bogus=3": "'bogus' is not a knob",
    "transition_strength": "--knob transition_strength has no value",
    "transition_strength=abc": "knob transition_strength: expected a number, got 'abc'",
}


@pytest.mark.parametrize("knob", BENCH_SAID)
def test_the_benchmarks_parse_knob_ends_with_one_line(knob, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["paper_tables.py"])
    from _common import parse_knob

    with pytest.raises(SystemExit) as end:
        parse_knob(knob)
    assert str(end.value).startswith("paper_tables.py: error: ") and BENCH_SAID[knob] in str(end.value)
    assert parse_knob("transition_strength=0") == ("transition_strength", 0)


@pytest.mark.slow
def test_paper_tables_refuses_an_unknown_knob_with_one_line():
    """A real `benchmarks/paper_tables.py --knob bogus=3` process: it ends at its command line."""
    script = str(ROOT / "benchmarks" / "paper_tables.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--knob", "bogus=3"], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert proc.stderr.startswith("paper_tables.py: error: 'bogus' is not a knob") and "the knobs are: " in proc.stderr


def test_every_field_of_the_config_is_a_checked_knob():
    """Generic over the config's fields and their types: a knob added later is checked too."""
    default = SyntheticConfig()
    for f in fields(SyntheticConfig):
        value = getattr(default, f.name)
        assert check_knob(f.name, value) == value
        with pytest.raises(ValueError, match=f"knob {f.name}: expected"):
            check_knob(f.name, {"not": "a value"})
    assert check_knobs({"num_topics": 4.0, "title_length": [3, 5], "transition_strength": 2}) == {
        "num_topics": 4,
        "title_length": [3, 5],
        "transition_strength": 2,
    }
    for bad in ({"num_topics": True}, {"transition_strength": float("nan")}, {"transition_scope": 3}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            check_knobs(bad)


def test_generate_mind_checks_its_knobs(tmp_path):
    with pytest.raises(ValueError, match="'bogus' is not a knob of the synthetic world; the knobs are: "):
        generate_mind(tmp_path / "w", num_users=5, num_news=8, bogus=1)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "name,value,said",
    [("transition_strength", -1.0, "transition_strength must be non-negative"),
     ("hub_strength", -2, "hub_strength must be >= 0"), ("dev_fraction", 1.5, "dev_fraction must be in (0, 1)")],
)  # fmt: skip
def test_check_knob_refuses_a_value_out_of_the_fields_range(name, value, said):
    """A knob's range is the config's own check, made by check_knob itself: every caller (synth,
    generate_mind, each benchmark's --knob) refuses it before any world is generated."""
    with pytest.raises(ValueError, match=re.escape(said)):
        check_knob(name, value)
    assert check_knob(name, 0.5 if name == "dev_fraction" else 1.0) in (0.5, 1.0)
