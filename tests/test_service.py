"""The HTTP service, for real: uvicorn on 127.0.0.1, an httpx client, every endpoint and the
bad-input cases; scores over HTTP equal the offline model's; concurrent = sequential."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from test_serving import offline, train_checkpoint  # noqa: E402

from newsrec.serving import Recommender  # noqa: E402
from newsrec.serving.app import ServiceLimits, create_app  # noqa: E402


class Server:
    """uvicorn serving ``app`` on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tiny_world, tmp_path_factory):
    base = tmp_path_factory.mktemp("service")
    ckpt = train_checkpoint(tiny_world, "glory_transitions", base / "ckpt")
    rec = Recommender.from_checkpoint(ckpt, index_dir=base / "index")
    limits = ServiceLimits(max_k=50, max_history=30, max_candidates=40, max_batch=8, max_body_bytes=20_000)
    with Server(create_app(rec, limits)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, rec, ckpt


def test_health_and_openapi_docs(served):
    client, rec, _ = served
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {
        "status": "ok", "model": "GLORY", "news": rec.num_news, "search": "exact", "recall": 1.0, "search_reason": "",
        "clicks": None, "graph_edges": None, "stale_entities": None,
    }  # fmt: skip
    assert client.get("/docs").status_code == 200
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_http_scores_equal_offline_scores(served, tiny_world):
    client, _, ckpt = served
    for history, cands, want, _ in offline(ckpt, tiny_world, "glory_transitions")[:6]:
        body = {"history": history, "k": len(cands), "candidates": cands, "exclude_history": False}
        r = client.post("/recommend", json=body)
        assert r.status_code == 200, r.text
        got = {it["news_id"]: it["score"] for it in r.json()["items"]}
        np.testing.assert_allclose([got[c] for c in cands], want, rtol=1e-5, atol=1e-5)


def test_batch_endpoint_and_concurrent_requests_match_sequential_ones(served):
    client, rec, _ = served
    ids = rec.index.ids
    bodies = [{"history": [ids[i], ids[i + 1], "Nmissing"], "k": 5} for i in range(1, 25)]
    sequential = [client.post("/recommend", json=b).json() for b in bodies]
    assert all(s["unknown_history"] == ["Nmissing"] for s in sequential)
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda b: client.post("/recommend", json=b).json(), bodies))
    assert concurrent == sequential
    batch = client.post("/recommend/batch", json=bodies[:8])
    assert batch.status_code == 200 and batch.json() == sequential[:8]


@pytest.mark.parametrize(
    "body,status,match",
    [
        ('{"history": ["N1"', 422, "JSON"),  # malformed JSON
        ({"history": "N1"}, 422, "history"),  # wrong type
        ({"history": ["N1"], "k": "ten"}, 422, "k"),
        ({"history": ["N1"], "k": 0}, 422, "k must be between 1 and 50"),
        ({"history": ["N1"], "k": 51}, 422, "k must be between 1 and 50"),
        ({"history": []}, 422, "history is empty"),
        ({"history": ["N1"] * 31}, 422, "over the limit of 30"),
        ({"history": ["N1"], "candidates": ["N2"] * 41}, 422, "over the limit of 40"),
        ({"history": ["N1"], "candidates": ["N2", "Nnope"]}, 422, "Nnope"),
        ({"history": ["N1"], "colour": "red"}, 422, "colour"),
        ({"history": ["N1"] * 5000}, 413, "body over"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(served, body, status, match):
    client, rec, _ = served
    before = rec.num_news
    if isinstance(body, str):
        r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    else:
        r = client.post("/recommend", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert match.lower() in detail.lower(), detail
    assert "Traceback" not in r.text and rec.num_news == before


def test_bad_batches_and_articles_are_refused(served):
    client, rec, _ = served
    assert client.post("/recommend/batch", json=[]).status_code == 422
    assert "over the limit of 8" in client.post("/recommend/batch", json=[{"history": ["N1"]}] * 9).json()["detail"]
    r = client.post("/recommend/batch", json=[{"history": ["N1"]}, {"history": ["N1"], "k": -1}])
    assert r.status_code == 422 and "request 1" in r.json()["detail"]
    before = rec.num_news
    for news in (
        [],
        [{"news_id": "X", "title": ""}],
        [{"news_id": "X"}],
        [{"news_id": "X", "title": "t", "title_entities": "[{"}],
    ):
        r = client.post("/news", json={"news": news})
        assert r.status_code == 422, r.text
    assert rec.num_news == before and client.get("/health").json()["news"] == before


def test_posted_news_is_recommended_at_once(served):
    client, rec, _ = served
    ids = rec.index.ids
    r = client.post("/news", json={"news": [{"news_id": "Nhttp", "title": "breaking story", "category": "news"}]})
    assert r.status_code == 200 and r.json() == {"added": 1, "updated": 0}
    r = client.post("/news", json={"news": [{"news_id": "Nhttp", "title": "breaking story, updated"}]})
    assert r.json() == {"added": 0, "updated": 1}
    body = {"history": [ids[1], ids[2]], "k": 2, "candidates": ["Nhttp", ids[3]]}
    got = client.post("/recommend", json=body).json()["items"]
    assert "Nhttp" in [it["news_id"] for it in got]
    assert client.get("/health").json()["news"] == rec.num_news


def test_service_edges_lone_surrogates_reserved_ids_and_duplicate_candidates(served):
    """Over HTTP: an id with a lone surrogate (JSON "\\ud800") is a 422 naming it, never a 500,
    in a history, a candidate list or a new article (which is then not stored); the padding id
    is refused; duplicate candidates are ranked once."""
    client, rec, _ = served
    ids = rec.index.ids
    body = '{"history": ["' + ids[1] + '", "\\ud800"], "k": 3}'
    r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid UTF-8" in r.json()["detail"]
    body = '{"history": ["' + ids[1] + '"], "k": 3, "candidates": ["' + ids[2] + '", "S\\ud800"]}'
    r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    before = rec.num_news
    body = '{"news": [{"news_id": "S\\ud800", "title": "t"}]}'
    r = client.post("/news", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and rec.num_news == before
    r = client.post("/news", json={"news": [{"news_id": ids[0], "title": "padding"}]})
    assert r.status_code == 422 and "reserved" in r.json()["detail"]
    r = client.post("/recommend", json={"history": [ids[1]], "k": 5, "candidates": [ids[3], ids[3], ids[3], ids[4]]})
    assert r.status_code == 200 and sorted(i["news_id"] for i in r.json()["items"]) == sorted([ids[3], ids[4]])
