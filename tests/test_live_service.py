"""The live click graph over HTTP, for real: uvicorn on 127.0.0.1 and an httpx client; POST
/clicks, users by id, GET /graph/neighbors, /health; bad clicks refused with nothing stored; a
server SIGKILLed during a stream of clicks and articles restarts into the state of a server that
never died; two `newsrec serve` processes on one PostgreSQL database see each other's clicks."""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from test_live_serving import clicks_for  # noqa: E402
from test_service import Server  # noqa: E402
from test_serving import train_checkpoint  # noqa: E402

from newsrec.serving import Recommender  # noqa: E402
from newsrec.serving.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tiny_world, tmp_path_factory):
    return train_checkpoint(tiny_world, "glory_transitions", tmp_path_factory.mktemp("live-http") / "ckpt")


@pytest.fixture
def served(ckpt, tmp_path):
    rec = Recommender.from_checkpoint(ckpt, index_dir=None, store=tmp_path / "clicks.sqlite")
    with Server(create_app(rec)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, rec
    rec.close()


def test_clicks_users_and_neighbors_over_http(served):
    client, rec = served
    ids = rec.index.ids
    health = client.get("/health").json()
    assert health["clicks"] == 0 and health["graph_edges"] == rec.click_info["graph_edges"]
    chain = clicks_for(["A", "B"], [ids[3], ids[4]])
    body = {"clicks": [{**c, "time": f"2019-11-15T08:{i:02d}:00Z"} for i, c in enumerate(chain)]}
    assert client.post("/clicks", json=body).json() == {"accepted": 4}
    neighbors = client.get("/graph/neighbors", params={"news_id": ids[3], "k": 3}).json()
    assert neighbors[0] == {"news_id": ids[4], "weight": dict(rec.graph_neighbors(ids[3], 3))[ids[4]]}
    assert client.get("/health").json()["clicks"] == 4
    by_id = client.post("/recommend", json={"user_id": "A", "k": 5}).json()
    want = rec.recommend(rec.user_history("A"), k=5)
    assert [it["news_id"] for it in by_id["items"]] == [n for n, _ in want]
    cold = client.post("/recommend/batch", json=[{"user_id": "nobody", "k": 3}, {"history": [ids[3]], "k": 3}])
    assert cold.status_code == 200 and len(cold.json()) == 2


GOOD = {"user_id": "U", "news_id": "N1", "time": "2019-11-15T08:00:00Z"}


@pytest.mark.parametrize(
    "path,body,status,match",
    [
        ("/clicks", {"clicks": [GOOD, {**GOOD, "time": "tomorrow"}]}, 422, "click 1: time"),
        ("/clicks", {"clicks": [GOOD, {**GOOD, "news_id": "Nx"}]}, 422, "click 1: unknown news id"),
        ("/clicks", {"clicks": [GOOD, {"user_id": "U", "news_id": "N1"}]}, 422, "clicks.1.time"),
        ("/clicks", {"clicks": [{**GOOD, "user_id": 3}]}, 422, "clicks.0.user_id"),
        ("/clicks", {"clicks": []}, 422, "clicks is empty"),
        ("/recommend", {"user_id": "U", "history": ["N1"], "k": 3}, 422, "exactly one of history and user_id"),
        ("/recommend", {"k": 3}, 422, "exactly one of history and user_id"),
    ],
)  # fmt: skip
def test_bad_clicks_and_requests_get_a_4xx_and_store_nothing(served, path, body, status, match):
    client, rec = served
    r = client.post(path, json=body)
    assert r.status_code == status and match in r.json()["detail"], r.text
    assert rec.store.num_clicks() == 0


def test_graph_neighbors_edges(served, ckpt):
    client, rec = served
    assert client.get("/graph/neighbors", params={"news_id": "Nnowhere"}).status_code == 404
    assert client.get("/graph/neighbors", params={"news_id": rec.index.ids[1], "k": 0}).status_code == 422
    r = client.get("/graph/neighbors", params={"news_id": rec.index.ids[1], "direction": "sideways"})
    assert r.status_code == 422
    no_store = Recommender.from_checkpoint(ckpt, index_dir=None)
    with Server(create_app(no_store)) as url, httpx.Client(base_url=url, timeout=30) as plain:
        assert plain.get("/health").json()["clicks"] is None
        clicks = {"clicks": [{"user_id": "U", "news_id": "N1", "time": "2019-11-15T08:00:00Z"}]}
        assert plain.post("/clicks", json=clicks).status_code == 404
        assert "--store" in plain.get("/graph/neighbors", params={"news_id": "N1"}).json()["detail"]


# -- real processes -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """`newsrec serve` in its own process on 127.0.0.1."""

    def __init__(self, ckpt: str, store: str, index_dir: Path, *extra: str) -> None:
        self.port = free_port()
        cli = [sys.executable, "-m", "newsrec.cli", "serve", "--ckpt_path", ckpt, "--store", store]
        cli += ["--index_dir", str(index_dir), "--port", str(self.port), "--log_level", "warning"]
        cli += ["--entity_refresh_seconds", "0", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"newsrec serve exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("newsrec serve did not start")
            time.sleep(0.2)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_during_a_stream_loses_nothing_acknowledged(ckpt, tmp_path):
    """Clicks and articles stream to a server that is SIGKILLed at a random moment and to one
    that never dies. After the restart, every acknowledged click and article is there; once the
    one request in flight at the kill is sent again (if it was lost), both servers hold the same
    log, and their live graphs and recommendations are the same."""
    ids = Recommender.from_checkpoint(ckpt, index_dir=None).index.ids
    rng = random.Random(0)
    victim = Serve(ckpt, str(tmp_path / "victim.sqlite"), tmp_path / "victim-index")
    steady = Serve(ckpt, str(tmp_path / "steady.sqlite"), tmp_path / "steady-index")
    restarted = None
    try:
        acked, articles, in_flight = 0, [], None
        killer = threading.Timer(rng.uniform(1.0, 3.0), victim.kill)
        killer.start()
        with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for step in range(100_000):
                if step % 7 == 3:  # an article now and then, clicked at once
                    request = ("/news", {"news": [{"news_id": f"Nlive{step}", "title": f"breaking story {step}"}]})
                else:
                    pool = ids[1:40] + articles[-3:]
                    when = f"2020-09-13T12:{step // 60 % 60:02d}:{step % 60:02d}Z"
                    batch = [{"user_id": f"U{rng.randrange(25)}", "news_id": rng.choice(pool), "time": when}
                             for _ in range(20)]  # fmt: skip
                    request = ("/clicks", {"clicks": batch})
                assert client.post(steady.url + request[0], json=request[1]).status_code == 200
                try:
                    r = client.post(victim.url + request[0], json=request[1])
                except httpx.HTTPError:  # killed (or a connection lost just before): the request is in flight
                    in_flight = request
                    break
                assert r.status_code == 200, r.text
                if request[0] == "/news":
                    articles.append(request[1]["news"][0]["news_id"])
                else:
                    acked += 20
        killer.join()
        assert victim.proc.poll() is not None and in_flight is not None and acked > 0
        restarted = Serve(ckpt, str(tmp_path / "victim.sqlite"), tmp_path / "victim-index")
        with httpx.Client(timeout=30) as client:
            stored = client.get(restarted.url + "/health").json()["clicks"]
            assert stored >= acked  # every acknowledged click
            for news_id in articles:  # every acknowledged article, rankable
                body = {"history": [ids[1]], "k": 1, "candidates": [news_id]}
                assert client.post(restarted.url + "/recommend", json=body).status_code == 200
            # the request in flight at the kill either committed or not: send it again if it did not
            if in_flight[0] == "/clicks" and stored == acked:
                assert client.post(restarted.url + "/clicks", json=in_flight[1]).status_code == 200
            news_id = in_flight[1]["news"][0]["news_id"] if in_flight[0] == "/news" else None
            body = {"history": [ids[1]], "k": 1, "candidates": [news_id or ids[2]]}
            if news_id and client.post(restarted.url + "/recommend", json=body).status_code != 200:
                assert client.post(restarted.url + "/news", json=in_flight[1]).status_code == 200
            health = [client.get(u + "/health").json() for u in (restarted.url, steady.url)]
            assert health[0]["clicks"] == health[1]["clicks"] and health[0]["news"] == health[1]["news"]
            assert health[0]["graph_edges"] == health[1]["graph_edges"]
            for news_id in ids[1:40] + articles:
                q = {"news_id": news_id, "k": 10}
                got = client.get(restarted.url + "/graph/neighbors", params=q).json()
                assert got == client.get(steady.url + "/graph/neighbors", params=q).json()
            for user in ("U3", "U11", "nobody"):
                got, want = (client.post(u + "/recommend", json={"user_id": user, "k": 10}).json()["items"]
                             for u in (restarted.url, steady.url))  # fmt: skip
                assert [g["news_id"] for g in got] == [w["news_id"] for w in want]
                assert all(abs(g["score"] - w["score"]) < 1e-4 for g, w in zip(got, want))
    finally:
        for server in (victim, steady, restarted):
            if server is not None:
                server.stop()


@pytest.mark.slow
def test_two_serve_processes_on_one_postgresql_database_see_each_others_clicks(ckpt, postgres_url, tmp_path):
    one = Serve(ckpt, postgres_url, tmp_path / "one-index")
    two = Serve(ckpt, postgres_url, tmp_path / "two-index")
    try:
        with httpx.Client(timeout=30) as client:
            a = Recommender.from_checkpoint(ckpt, index_dir=None).index.ids[3]
            news = {"news": [{"news_id": "Nfrom-one", "title": "posted to process one"}]}
            assert client.post(one.url + "/news", json=news).status_code == 200
            clicks = [{"user_id": f"R{i}", "news_id": n, "time": f"2020-09-13T12:00:{2 * i + j:02d}Z"}
                      for i in range(5) for j, n in enumerate([a, "Nfrom-one"])]  # fmt: skip
            assert client.post(one.url + "/clicks", json={"clicks": clicks}).json() == {"accepted": 10}
            start, q = time.monotonic(), {"news_id": a, "k": 5}
            want = client.get(one.url + "/graph/neighbors", params=q).json()
            assert {"news_id": "Nfrom-one", "weight": 5.0} in want
            while client.get(two.url + "/graph/neighbors", params=q).json() != want:
                assert time.monotonic() - start < 2.0, "process two did not see process one's clicks within 2 s"
                time.sleep(0.05)
            assert client.get(two.url + "/health").json()["news"] == client.get(one.url + "/health").json()["news"]
    finally:
        one.stop(), two.stop()
