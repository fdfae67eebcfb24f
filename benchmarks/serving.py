"""Serving benchmark: ``Recommender.recommend`` latency (k = 10) over 50k and 1M news, exact and
faiss; the ANN's recall@k against exact search; index build times; HTTP throughput of
``newsrec serve`` under a bounded load from 127.0.0.1.

    python benchmarks/serving.py [--news 50000] [--models nrms fum glory gru ...] [--requests 300]
                                 [--threads N] [--no-http] [--no-1m] [--no-1m-candidates]
                                 [--checkpoints DIR]

What is measured, per model:

* a synthetic world of ``--news`` news is generated once (``benchmarks/.cache``), the model is
  trained for ``--steps`` steps (so its vectors have a trained model's structure; accuracy is not
  the point here), and a checkpoint is written as ``newsrec fit`` writes it (``--checkpoints``:
  kept there and reused by a later run with the same sizes and steps);
* **index build (50k)**: ``Recommender.from_checkpoint`` end to end (load, corpus, graphs,
  every news encoded once);
* **latency**: ``recommend(history, k=10)`` over the whole index for ``--requests`` distinct dev
  histories (user cache missed on every call; the cache-hit figure is printed beside it, and
  the p99 of the whole-index search alone within the missed calls);
* **the faiss indexes considered** (``_ann.py``), side by side on the same vectors: recall@10
  against exact search on held-out dev users, build time, single-query latency;
* **1M news**: the served index is grown to 10^6 rows whose vectors are drawn from a Gaussian
  fitted to the model's real news vectors (mean and covariance), with the real model computing
  the user vector; exact search and faiss (the default index, calibrated), both re-scored by the
  model; recall@10 of faiss against exact on the same queries; faiss build time on 1M vectors.
  Encoding 1M real news is not run here: its time is the 50k encoding rate times 20 (printed);
* **HTTP**: ``newsrec serve`` in its own process, C concurrent httpx clients (C = 1, 2, 4, 8),
  ``--http-requests`` requests each level, all to 127.0.0.1, stopped after 60 s per level;
  the throughput reported is the best level whose p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _ann import ann_candidates, concentration, percentiles  # noqa: E402
from _common import data_sizes, machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).parent / ".cache"


def world(news: int, users: int) -> Path:
    from newsrec.data import generate_mind

    path = CACHE / f"serving-{users}u-{news}n"
    if not (path / "world.json").exists():
        generate_mind(str(path), num_users=users, num_news=news, seed=0, show_progress=True)
    return path


#: the zoo's models whose whole-index ranking is a vector search (cacheable news, one user
#: vector), at the papers' sizes
ZOO = {
    "gru": ("GRU", {}),
    "npa_cacheable": ("NPA", {"personalised": False}),
    "naml": ("NAML", {}),
    "lstur": ("LSTUR", {}),
    "fastformer": ("FastformerNR", {}),
    "libfm": ("LibFM", {}),
    "kred": ("KRED", {}),
    "gerl": ("GERL", {}),
    "user_as_graph": ("UserAsGraph", {}),
}


def make_model(name: str, dm):
    from newsrec import models

    common = dict(
        **data_sizes(dm),
        pretrained_words=False,  # the papers' sizes (300-d words); the synthetic vectors are 50-d
    )
    if name == "nrms":
        return models.NRMS(**common)
    if name == "fum":
        return models.FUM(**common)
    if name == "glory":
        return models.GLORY(**common)
    if name == "glory_transitions":
        return models.GLORY(graph_score=True, **common)
    if name in ZOO:
        cls, options = ZOO[name]
        return getattr(models, cls)(**options, **common)
    raise SystemExit(f"unknown model {name}; the zoo's served by vector search: {' '.join(ZOO)}")


def train(name: str, root: Path, steps: int, out: Path) -> Path:
    import pytorch_lightning as pl

    from newsrec.data import MINDDataModule

    torch.manual_seed(0)
    dm = MINDDataModule(str(root), batch_size=32)
    dm.prepare_data()
    model = make_model(name, dm).connect_data(dm)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(out), save_last=True)
    pl.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(model, dm)
    return out / "last.ckpt"


def sample_histories(rec, n: int, seed: int = 0, split: str = "dev") -> list[list[str]]:
    """``n`` distinct histories (news ids) of ``split``'s impressions, in a random order."""
    b = rec.dm.behaviors(split)
    rows = np.random.default_rng(seed).permutation(len(b))
    hist, lengths = b.histories(rows, rec.history_length)
    ids = rec.dm.corpus.news_ids
    out, seen = [], set()
    for h, n_ in zip(hist, lengths):
        key = tuple(h[:n_].tolist())
        if n_ and key not in seen:
            seen.add(key)
            out.append([ids[x] for x in key])
        if len(out) == n:
            break
    return out


def latency(rec, histories, k: int = 10) -> tuple[float, float, float, float]:
    """p50, p99 of cache-missing calls (ms), the median of cache-hitting calls, and the p99 of
    the whole-index search alone within the cache-missing calls."""
    rec._users.clear()
    rec.recommend(histories[0], k=k)  # warm-up
    rec._users.clear()
    search, searching = rec.index.search, []

    def timed(*args, _search=search.search, **kwargs):
        t = time.perf_counter()
        out = _search(*args, **kwargs)
        searching.append((time.perf_counter() - t) * 1e3)
        return out

    search.search = timed  # the instance's own attribute, removed below
    miss = []
    for h in histories:
        t = time.perf_counter()
        rec.recommend(h, k=k)
        miss.append((time.perf_counter() - t) * 1e3)
    del search.search
    hit = []
    for h in histories[:50]:
        t = time.perf_counter()
        rec.recommend(h, k=k)
        hit.append((time.perf_counter() - t) * 1e3)
    p50, p99 = percentiles(miss)
    return p50, p99, float(np.median(hit)), percentiles(searching)[1]


def grow_to(rec, total: int, seed: int = 0) -> None:
    """Grow the served index to ``total`` news with vectors drawn from a Gaussian fitted to the
    model's real news vectors (news fields copied from real rows: only the vectors matter to
    the whole-index search)."""
    from newsrec.models import NewsCache

    index = rec.index
    n = len(index)
    extra = total - rec.num_news  # news, the padding row not counted
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, n, (extra,), generator=g)
    arrays = {f: np.concatenate([a, a[src.numpy()]]) for f, a in index.arrays.items()}
    grown = []
    for vectors in (index.vectors.candidate, index.vectors.history):
        real = vectors[1:].double()
        mu = real.mean(0)
        cov = torch.cov(real.T) + 1e-6 * torch.eye(real.shape[1], dtype=torch.float64)
        chol = torch.linalg.cholesky(cov)
        draw = mu + torch.randn(extra, real.shape[1], generator=g, dtype=torch.float64) @ chol.T
        grown.append(torch.cat([vectors, draw.to(vectors.dtype)]))
    rec._install(index.ids + [f"S{i}" for i in range(extra)], arrays, NewsCache(*grown), ())


def served_recall_at_k(rec, histories, k: int = 10) -> float:
    """faiss top-k ∩ exact top-k over the whole index (model scores), averaged."""
    from newsrec.serving.search import ExactSearch

    faiss_search = rec.index.search
    got = [set(i for i, _ in r) for r in rec.recommend_many(histories, k=k)]
    rec.index.search = ExactSearch(rec.index.vectors.candidate.float())
    rec._users.clear()
    want = [set(i for i, _ in r) for r in rec.recommend_many(histories, k=k)]
    rec.index.search = faiss_search
    return float(np.mean([len(a & b) / max(len(b), 1) for a, b in zip(got, want)]))


# -- HTTP ---------------------------------------------------------------------------------------------
def http_load(ckpt: Path, root: Path, histories, per_level: int, levels=(1, 2, 4, 8)) -> list[dict]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "newsrec.cli", "serve", "--ckpt_path", str(ckpt), "--root", str(root),
           "--port", str(port), "--index_dir", "none", "--log_level", "warning"]  # fmt: skip
    env = dict(os.environ, NEWSREC_PROGRESS="0")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"newsrec serve exited: {server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("newsrec serve did not start in 600 s")
            time.sleep(0.5)
        for clients in levels:
            bodies = [{"history": histories[i % len(histories)], "k": 10} for i in range(per_level)]
            times: list[float] = []
            stop = time.monotonic() + 60

            def worker(part, times=times, stop=stop):
                with httpx.Client(base_url=url, timeout=30) as c:
                    for body in part:
                        if time.monotonic() > stop:
                            return
                        t = time.perf_counter()
                        r = c.post("/recommend", json=body)
                        r.raise_for_status()
                        times.append((time.perf_counter() - t) * 1e3)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, [bodies[i::clients] for i in range(clients)]))
            wall = time.perf_counter() - t0
            p50, p99 = percentiles(times)
            rows.append({"clients": clients, "requests": len(times), "rps": len(times) / wall, "p50": p50, "p99": p99})
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def queries_of(rec, histories) -> torch.Tensor:
    """The model's user vectors of ``histories`` (news ids), ``[Q, d]``."""
    rows = [tuple(rec.index.position[h] for h in hist)[-rec.history_length :] for hist in histories]
    with torch.inference_mode():
        return torch.stack([u[0] for u in rec._user_states(rec.index, [(r, 0) for r in rows])]).float().cpu()


def latency_row(name: str, rec, search: str, measured: tuple, built: str, recall) -> list[str]:
    """A row of the latency table (``measured``: :func:`latency`'s figures)."""
    p50, p99, hit, search_p99 = measured
    recall = recall if isinstance(recall, str) else f"{recall:.3f}"
    return [name, f"{rec.num_news:,}", search, f"{p50:.1f}", f"{p99:.1f}", f"{hit:.1f}", f"{search_p99:.2f}", built,
            recall]  # fmt: skip


def progress_row(kind: str, row) -> None:
    """Print a measured row at once (a long run shows its figures as it goes)."""
    print(f"[{kind}] " + " | ".join(str(v) for v in (row.values() if isinstance(row, dict) else row)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--news", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--models", nargs="+", default=["nrms", "fum", "glory", "glory_transitions"])
    ap.add_argument("--steps", type=int, default=60, help="training steps before serving")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--http-requests", type=int, default=400)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--no-1m", action="store_true")
    ap.add_argument("--no-1m-candidates", action="store_true",
                    help="at 1M news, serve the default index only (not every index considered)")  # fmt: skip
    ap.add_argument("--checkpoints", default=None,
                    help="keep the trained checkpoints here and reuse them (default: a temporary folder)")  # fmt: skip
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    os.environ.setdefault("NEWSREC_PROGRESS", "0")
    from newsrec.serving import Recommender

    print(f"machine: {machine()}")
    root = world(a.news, a.users)
    lat_rows, big_rows, http_rows, ann_rows, spread_rows = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            kept = Path(a.checkpoints or tmp) / f"{name}-{a.news}n-{a.users}u-{a.steps}steps"
            ckpt = kept / "last.ckpt" if (kept / "last.ckpt").exists() else train(name, root, a.steps, kept)
            t = time.perf_counter()
            rec = Recommender.from_checkpoint(ckpt, index_dir=None)
            build = time.perf_counter() - t
            t = time.perf_counter()
            with torch.inference_mode():
                rec.model.encode_all_news(rec.dm.news_dataloader(1024))
            encode = time.perf_counter() - t
            histories = sample_histories(rec, a.requests)
            built = f"{build:.1f} s ({rec.num_news / encode:,.0f} news/s encoding)"
            lat_rows.append(latency_row(name, rec, "exact", latency(rec, histories), built, "1 (exact)"))
            progress_row("latency", lat_rows[-1])
            index = rec.index
            calibration = queries_of(rec, sample_histories(rec, 512, split="train"))  # as the Recommender's
            held_out = queries_of(rec, histories)
            spread_rows.append({"model": name, **concentration(index.vectors.candidate.float().cpu(), calibration)})
            progress_row("spread", spread_rows[-1])
            for row in ann_candidates(index.vectors.candidate.float().cpu(), calibration, held_out):
                ann_rows.append({"model": name, "news": f"{rec.num_news:,}", **row})
                progress_row("ann", ann_rows[-1])
            rec.search_kind = "faiss"
            rec.min_approximate_news = 0
            rec._install(index.ids, index.arrays, index.vectors, index.changed)
            measured = latency(rec, histories)
            built = f"{rec.index.search.kind} effort {rec.index.search.effort}"
            lat_rows.append(latency_row(name, rec, "faiss", measured, built, served_recall_at_k(rec, histories)))
            progress_row("latency", lat_rows[-1])
            if not a.no_1m:
                rec.search_kind = "exact"
                grow_to(rec, 1_000_000)
                built = f"~{1e6 / (rec.num_corpus_news / encode):.0f} s (encoding, extrapolated)"
                big_rows.append(latency_row(name, rec, "exact", latency(rec, histories[:100]), built, "1 (exact)"))
                progress_row("latency", big_rows[-1])
                for row in (
                    []
                    if a.no_1m_candidates
                    else ann_candidates(rec.index.vectors.candidate.float().cpu(), calibration, held_out)
                ):
                    ann_rows.append({"model": name, "news": "1,000,000", **row})
                    progress_row("ann", ann_rows[-1])
                rec.search_kind = "faiss"
                index = rec.index
                t = time.perf_counter()
                rec._install(index.ids, index.arrays, index.vectors, index.changed)
                faiss_build = time.perf_counter() - t
                measured = latency(rec, histories[:100])
                search = rec.index.search
                built = f"{faiss_build:.1f} s (build + calibration), {search.kind} effort {search.effort}"
                recall = served_recall_at_k(rec, histories[:100])
                big_rows.append(latency_row(name, rec, "faiss", measured, built, recall))
                progress_row("latency", big_rows[-1])
            if not a.no_http:
                for row in http_load(ckpt, root, histories, a.http_requests):
                    http_rows.append([name, row["clients"], row["requests"], f"{row['rps']:.0f}",
                                      f"{row['p50']:.1f}", f"{row['p99']:.1f}"])  # fmt: skip
            rec = index = search = None  # this model's million-row index and search, freed before the next
            gc.collect()
    head = ["model", "news", "search", "p50 ms", "p99 ms", "cached-user ms", "search p99 ms", "index build",
            "recall@10"]  # fmt: skip
    print("\nrecommend(history, k=10) over the whole index, one request at a time, user cache missed")
    print(table([dict(zip(head, r)) for r in lat_rows + big_rows], head))
    print("\nfaiss indexes considered, on the same vectors; recall@10 = the exact top 10 among the index's top 40")
    print("(held-out dev users as queries; training users shape the query-weighted space and calibrate)")
    cols = ["model", "news", "index", "build s", "recall@10", "p50 ms", "p99 ms", "settings"]
    print(table(ann_rows, cols))
    print(f"\nhow concentrated the users' vectors are against the news vectors ({a.news:,} news)")
    print(table(spread_rows, list(spread_rows[0]) if spread_rows else []))
    if http_rows:
        print("\nHTTP POST /recommend (k=10) to newsrec serve on 127.0.0.1, bounded load")
        cols = ["model", "concurrent clients", "requests", "requests/s", "p50 ms", "p99 ms"]
        print(table([dict(zip(cols, r)) for r in http_rows], cols))


if __name__ == "__main__":
    main()
