"""A new user's first run: the README's main job (`newsrec fit --config configs/glory_demo.yaml`)
from nothing — world generation, preparation, graphs, training, the closing validation — timed
end to end in a fresh folder.

    python benchmarks/first_run.py [--config configs/glory_demo.yaml]

Prints the wall time and the table `fit` prints (the model beside popularity and the oracle).
Target (issue: reliability/newcomer): ≤ 3 minutes on 2 CPU cores, with GLORY clearly above
popularity: met, 67 s and 64.4 against 53.9 AUC (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/glory_demo.yaml")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "newsrec.cli", "fit", "--config", str(ROOT / a.config),
            "--data.root", f"{tmp}/demo", "--trainer.default_root_dir", f"{tmp}/runs",
            "--trainer.enable_progress_bar", "false",
        ]  # fmt: skip
        env = dict(os.environ, NEWSREC_PROGRESS="0")
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        seconds = time.perf_counter() - t
    if res.returncode:
        sys.exit(res.stderr[-3000:])
    table = res.stdout[res.stdout.index("validation metrics") :] if "validation metrics" in res.stdout else res.stdout
    print(f"machine: {machine()}")
    print(f"{a.config}: {seconds:.0f} s end to end (world generation included)")
    print(table.strip())


if __name__ == "__main__":
    main()
