"""Reliability round 4 (#48) for real: a click store that cannot be used (random bytes, a
truncated store, another program's SQLite file, a folder, an unreachable PostgreSQL port, a
read-only file) is one line naming the store and what to do, from the library and from a real
`newsrec serve` process, and its bytes are left as they were; a store that fails while serving
answers 503; a click dated in the future is refused and a stored one never ages the rest of the
graph away; bad polling periods are refused; graph_neighbors checks k as recommend does."""

import hashlib
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_serving import train_checkpoint

from newsrec.serving import Recommender
from newsrec.serving.store import FUTURE_TOLERANCE, SQLiteClickStore, StoreError

UNREACHABLE = "postgresql://newsrec:secret@127.0.0.1:1/x"  # a real port where nothing listens
KINDS = ["random_bytes", "truncated", "foreign", "folder", "unreachable_postgresql"]


@pytest.fixture(scope="module")
def ckpt(tiny_world, tmp_path_factory):
    return train_checkpoint(tiny_world, "glory_transitions", tmp_path_factory.mktemp("store-failures") / "ckpt")


def real_store(path: Path, n: int = 3000) -> Path:
    """A real store of ``n`` clicks, checkpointed into its one file (no -wal beside it)."""
    store = SQLiteClickStore(path)
    store.add_clicks([f"U{i % 50}" for i in range(n)], [f"N{i % 97 + 1}" for i in range(n)], 1.6e9 + np.arange(n))
    store.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path


def bad_store(kind: str, folder: Path) -> str:
    """A store location that cannot be used, made for real."""
    path = folder / f"{kind}.sqlite"
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(8192))
    elif kind == "truncated":
        data = real_store(folder / "whole.sqlite").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "foreign":  # another program's database, with a table of the same name
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE clicks (a, b)")
        con.execute("INSERT INTO clicks VALUES (1, 2)")
        con.commit()
        con.close()
    elif kind == "folder":
        path.mkdir()
    else:
        return UNREACHABLE
    return str(path)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its bytes' digest."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_naming(message: str, location: str) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    shown = location.replace(":secret@", ":***@")
    assert shown in message and "secret" not in message, message
    assert "--store" in message or "PostgreSQL server" in message, message  # what to do


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_that_cannot_be_used_is_one_error_and_left_untouched(ckpt, tmp_path, kind):
    location = bad_store(kind, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as err:
        Recommender.from_checkpoint(ckpt, index_dir=None, store=location)
    one_line_naming(str(err.value), location)
    assert snapshot(tmp_path) == before  # not a byte written, no -wal/-shm left beside it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_cli(*args: str) -> subprocess.Popen:
    """A real `newsrec serve` process on 127.0.0.1 (stdout and stderr piped)."""
    cli = [sys.executable, "-m", "newsrec.cli", "serve", "--port", str(free_port()), "--log_level", "warning", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def refused(proc: subprocess.Popen, timeout: float = 180) -> str:
    """The one line a `newsrec serve` that must refuse to start printed (it must exit non-zero)."""
    try:
        out, errors = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("newsrec serve started (or hung) where it had to refuse") from None
    assert proc.returncode == 1, (proc.returncode, errors[-2000:])
    lines = [line for line in errors.splitlines() if line.strip() and "Warning" not in line and "warn" not in line]
    assert len(lines) == 1 and lines[0].startswith("newsrec: error: "), errors[-2000:]
    return lines[0]


@pytest.mark.parametrize(
    "kind",
    [k if k in ("random_bytes", "unreachable_postgresql") else pytest.param(k, marks=pytest.mark.slow) for k in KINDS],
)
def test_newsrec_serve_refuses_a_bad_store_with_one_line(ckpt, tmp_path, kind):
    """Through a real `newsrec serve` process (bounded in time); the library test above covers
    every kind, this the command's path (two kinds fast, the others marked slow)."""
    location = bad_store(kind, tmp_path)
    before = snapshot(tmp_path)
    one_line_naming(refused(serve_cli("--ckpt_path", ckpt, "--store", location, "--index_dir", "none")), location)
    assert snapshot(tmp_path) == before


@pytest.fixture
def immutable(tmp_path):
    """A real store of 50 clicks made immutable (``chattr +i``: even root cannot write it)."""
    path = real_store(tmp_path / "frozen.sqlite", n=50)
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here to make a file read-only for root")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this file system cannot make a file immutable: {made.stderr.strip()}")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_store_is_refused_at_start(ckpt, immutable, tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match="read") as err:
        Recommender.from_checkpoint(ckpt, index_dir=None, store=immutable)
    one_line_naming(str(err.value), str(immutable))
    line = refused(serve_cli("--ckpt_path", ckpt, "--store", str(immutable), "--index_dir", "none"))
    one_line_naming(line, str(immutable))
    assert "writable" in line
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_store_that_fails_while_serving_answers_503_then_recovers(ckpt, postgres_url):
    """PostgreSQL made read-only under a running service (its connections cut): writes and reads
    of the store answer 503 naming the store, nothing is stored, and once the database takes
    writes again the same service stores clicks."""
    httpx = pytest.importorskip("httpx")
    import psycopg
    from test_service import Server

    from newsrec.serving.app import create_app

    rec = Recommender.from_checkpoint(ckpt, index_dir=None, store=postgres_url)
    ids, name = rec.index.ids, postgres_url.rsplit("/", 1)[1]
    body = {"clicks": [{"user_id": "U", "news_id": ids[3], "time": "2019-11-15T08:00:00Z"}]}
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"

    def read_only(on: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}")
            con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    with Server(create_app(rec)) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/clicks", json=body).status_code == 200
        read_only(True)
        for _ in range(2):  # the cut connection, then a read-only one
            r = client.post("/clicks", json=body)
            assert r.status_code == 503 and r.json()["detail"].startswith("click store postgresql://"), r.text
        read_only(False)
        assert client.post("/clicks", json=body).status_code in (200, 503)  # a pooled connection may be cut
        assert client.post("/clicks", json=body).status_code == 200
    assert rec.store.num_clicks() in (2, 3)
    rec.close()


# -- clicks from the future ------------------------------------------------------------------------------
@pytest.fixture
def live(ckpt, tmp_path):
    rec = Recommender.from_checkpoint(ckpt, index_dir=None, store=tmp_path / "clicks.sqlite", edge_half_life=21600)
    yield rec
    rec.close()


def test_a_click_from_the_future_is_refused_over_http_and_nothing_is_stored(live):
    httpx = pytest.importorskip("httpx")
    from test_service import Server

    from newsrec.serving.app import create_app

    ids = live.index.ids
    good = {"user_id": "U", "news_id": ids[3], "time": "2019-11-15T08:00:00Z"}
    with Server(create_app(live)) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/clicks", json={"clicks": [good, {**good, "time": "2100-01-01T00:00:00Z"}]})
        assert r.status_code == 422 and "click 1: time" in r.json()["detail"] and "future" in r.json()["detail"]
        assert live.store.num_clicks() == 0
    near = time.time() + FUTURE_TOLERANCE / 2  # a clock a little ahead of the server's is fine
    assert live.add_clicks([{**good, "time": near}]) == {"accepted": 1}


def test_a_stored_click_from_the_future_never_ages_the_rest_of_the_graph_away(ckpt, tmp_path):
    """A store written before future clicks were refused holds two clicks dated 2100: they count
    as clicks at the server's clock (plus the tolerance), so clicks made now keep their weight and
    their weights' ratio is their age's, as without those clicks."""
    path = tmp_path / "old.sqlite"
    ids = Recommender.from_checkpoint(ckpt, index_dir=None).index.ids
    future = 4102444800.0  # 2100-01-01
    SQLiteClickStore(path).add_clicks(["Z", "Z"], [ids[7], ids[8]], [future, future + 60])
    with pytest.warns(UserWarning, match="dated in the future"):
        rec = Recommender.from_checkpoint(ckpt, index_dir=None, store=path, edge_half_life=21600)
    now = time.time()
    clicks = [("A", ids[3], now - 600), ("A", ids[4], now - 540), ("B", ids[5], now - 120), ("B", ids[6], now - 60)]
    rec.add_clicks([{"user_id": u, "news_id": n, "time": t} for u, n, t in clicks])
    early, late = dict(rec.graph_neighbors(ids[3], 50))[ids[4]], dict(rec.graph_neighbors(ids[5], 50))[ids[6]]
    assert early > 0.5 and math.isfinite(late)
    np.testing.assert_allclose(early / late, 2 ** (-480 / 21600), rtol=1e-9)
    assert rec._snapshot.now <= time.time() + FUTURE_TOLERANCE
    rec.close()


# -- periods and k -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option,value",
    [("follow_seconds", -1.0), ("follow_seconds", float("nan")), ("follow_seconds", float("inf")),
     ("entity_refresh_seconds", float("nan")), ("entity_refresh_seconds", -1.0), ("entity_refresh_seconds", 1e-9)],
)  # fmt: skip
def test_a_period_that_would_spin_a_core_is_refused(ckpt, tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        Recommender.from_checkpoint(ckpt, index_dir=None, store=tmp_path / "c.sqlite", **{option: value})
    assert not (tmp_path / "c.sqlite").exists()  # refused before anything was opened


def test_newsrec_serve_refuses_bad_periods_with_one_line(ckpt):
    procs = {
        "--follow_seconds": serve_cli("--ckpt_path", ckpt, "--store", "none", "--follow_seconds", "-1"),
        "--entity_refresh_seconds": serve_cli("--ckpt_path", ckpt, "--entity_refresh_seconds", "nan"),
    }
    for option, proc in procs.items():
        assert option in refused(proc, timeout=120)


@pytest.mark.parametrize("k", [-1, 0, 2.5, True, "3", None])
def test_graph_neighbors_checks_k_as_recommend_does(live, k):
    news = live.index.ids[3]
    with pytest.raises(ValueError, match="k must be a whole number >= 1") as err:
        live.graph_neighbors(news, k=k)
    assert repr(k) in str(err.value)
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        live.recommend([news], k=k)
    assert len(live.graph_neighbors(news, k=np.int64(2))) <= 2


@pytest.mark.slow
def test_newsrec_serve_serves_dkn_with_the_default_store(tiny_world, tmp_path):
    """`newsrec serve --ckpt_path dkn.ckpt` (the default --store auto), a real process."""
    httpx = pytest.importorskip("httpx")
    from test_live_service import Serve

    ckpt = train_checkpoint(tiny_world, "dkn", tmp_path / "ckpt")
    server = Serve(ckpt, "auto", tmp_path / "index")
    try:
        ids = Recommender.from_checkpoint(ckpt, index_dir=None).index.ids
        clicks = [{"user_id": "A", "news_id": ids[i], "time": f"2019-11-15T08:0{i}:00Z"} for i in (3, 4)]
        assert httpx.post(server.url + "/clicks", json={"clicks": clicks}, timeout=60).json() == {"accepted": 2}
        assert httpx.get(server.url + "/health", timeout=30).json()["clicks"] == 2
        assert (tmp_path / "index" / "clicks.sqlite").exists()
    finally:
        server.stop()
