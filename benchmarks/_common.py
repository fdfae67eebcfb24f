"""Helpers shared by the benchmark scripts: machine description, isolated phases, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def peak_rss_gib() -> float:
    """Peak resident memory of this process (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@contextmanager
def timer(out: dict, key: str):
    t = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t


def run_phase(script: str, phase: str, *args: str) -> dict:
    """Run ``script --phase phase args`` in a fresh process (so peak memory is the phase's own);
    the phase prints one JSON line last."""
    cmd = [sys.executable, script, "--phase", phase, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    result["peak_rss_gib"] = round(peak_rss_gib(), 3)
    print(json.dumps(result))


def table(rows: list[dict], cols: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cols, widths)), " | ".join("-" * w for w in widths)]
    for r in rows:
        lines.append(" | ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths)))
    return "\n".join("| " + line + " |" for line in lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def parse_knob(text: str) -> tuple[str, object]:
    """``field=value`` with a JSON value (``3``, ``[5, 40]``) or, failing that, a plain string,
    checked against the synthetic world's config (:func:`newsrec.data.synthetic.check_knob`): an
    unknown knob, a missing value or a value of the wrong type ends the script with one line."""
    from newsrec.data.synthetic import check_knob, knob_names

    key, eq, value = text.partition("=")
    try:
        if not eq or not value.strip():
            if key not in knob_names():
                check_knob(key, None)  # an unknown knob: the error names the valid ones
            raise ValueError(f"--knob {key} has no value: write --knob {key}=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        return key, check_knob(key, parsed, reserved=("num_users", "num_news", "seed"))
    except ValueError as e:
        raise SystemExit(f"{Path(sys.argv[0]).name}: error: {e}") from None


def data_sizes(dm) -> dict[str, int]:
    """The data's sizes every model takes (``newsrec.core.DATA_SIZE_ARGUMENTS``: words, entities,
    categories, subcategories, users, news), as the CLI links them: a benchmark that forgot one
    (GERL's news-ID table without ``num_news``) would silently run a smaller model."""
    from newsrec.core import DATA_SIZE_ARGUMENTS

    return {name: getattr(dm, name) for name in DATA_SIZE_ARGUMENTS}
