"""Acknowledged writes survive SIGKILL: the disk cache's entries (what the served news index is
stored in) and articles added to a running recommender. Real processes are killed."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from newsrec.core import ArrayCache

ROOT = Path(__file__).parents[1]

SAVER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import newsrec.core.cache as cache
    folder, mode = sys.argv[1], sys.argv[2]
    if mode == "between-renames":  # die right after the old entry is moved aside
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if ".old." in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
        cache.os.replace = replace
    store = cache.ArrayCache(folder)
    i = int(sys.argv[3])
    while True:
        store.save("index", {"x": np.full(20000, i)}, {"i": i})
        print(i, flush=True)  # acknowledged
        i += 1
    """
)


def run_saver(folder, mode, start=0):
    return subprocess.Popen(
        [sys.executable, "-c", SAVER, str(folder), mode, str(start)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    ArrayCache(tmp_path).save("index", {"x": np.full(20000, -1)}, {"i": -1})
    proc = run_saver(tmp_path, "between-renames", start=7)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "index").exists()  # the old entry was moved aside, the new not yet in
    arrays, meta = ArrayCache(tmp_path).load("index")
    assert meta["i"] == 7 and (arrays["x"] == 7).all()  # the complete new entry is put in place


@pytest.mark.slow
def test_sigkill_at_random_moments_keeps_every_acknowledged_save(tmp_path):
    rng = random.Random(0)
    acknowledged = -1
    for _round in range(5):
        proc = run_saver(tmp_path, "plain", start=acknowledged + 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for a first acknowledgement, then a random moment
            line = proc.stdout.readline()
            if line:
                acknowledged = max(acknowledged, int(line))
                break
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        for line in out.split():
            acknowledged = max(acknowledged, int(line))
        arrays, meta = ArrayCache(tmp_path).load("index")
        assert meta["i"] >= acknowledged and (arrays["x"] == meta["i"]).all()
