"""The faiss indexes considered for serving, side by side on the same vectors and held-out
queries (used by ``serving.py``): build seconds, recall@k (the exact top k found among the
index's top 4k, the shortlist the model re-scores) and single-query search latency."""

from __future__ import annotations

import time

import numpy as np
import torch


def percentiles(ms: list[float]) -> tuple[float, float]:
    a = np.asarray(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def ann_candidates(vectors: torch.Tensor, training_users: torch.Tensor, queries: torch.Tensor, k: int = 10) -> list:
    """``vectors [N, d]`` news; ``training_users [Q, d]`` the model's user vectors of training
    histories, split as the Recommender splits them (every other one shapes the query-weighted
    space, the others calibrate every calibrated index); ``queries [Q', d]`` held-out dev users."""
    import faiss

    from newsrec.serving.search import ExactSearch, FaissSearch, recall_at_k

    x = np.ascontiguousarray(vectors.numpy())
    n, d = x.shape
    nlist = int(np.sqrt(n))
    shaping, calibrating = training_users[0::2], training_users[1::2]
    want = ExactSearch(vectors).search(queries, k)[1]
    rows = []

    def measure(name, build, search, note=""):
        t = time.perf_counter()
        index = build()
        built = time.perf_counter() - t
        got = search(index, queries.numpy(), 4 * k)
        times = []
        for q in queries.numpy()[:200]:
            t = time.perf_counter()
            search(index, q[None], 4 * k)
            times.append((time.perf_counter() - t) * 1e3)
        p50, p99 = percentiles(times)
        rows.append({"index": name, "build s": built, "recall@10": recall_at_k(torch.as_tensor(got), want),
                     "p50 ms": p50, "p99 ms": p99, "settings": note})  # fmt: skip
        return index

    def old_lift():  # newsrec 0.1: Euclidean IVF over [x, sqrt(M^2 - |x|^2)], queries [q, 0]
        sq = (x * x).sum(1)
        m = 1.05 * np.sqrt(sq.max())
        lifted = np.hstack([x, np.sqrt(np.maximum(m * m - sq, 0))[:, None]]).astype(np.float32)
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d + 1), d + 1, nlist, faiss.METRIC_L2)
        index.train(lifted[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)])
        index.add(lifted)
        index.nprobe = max(8, nlist // 16)
        return index

    measure("IVF-L2 on the lift, query unnormalised (0.1)", old_lift,
            lambda i, q, kk: i.search(np.hstack([q, np.zeros((len(q), 1), np.float32)]), kk)[1],
            f"nlist {nlist}, nprobe {max(8, nlist // 16)}")  # fmt: skip

    def raw_ip():
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)])
        index.add(x)
        index.nprobe = max(8, nlist // 16)
        return index

    measure("IVF-IP on the raw vectors", raw_ip, lambda i, q, kk: i.search(np.ascontiguousarray(q), kk)[1],
            f"nlist {nlist}, nprobe {max(8, nlist // 16)}")  # fmt: skip

    def ours(kind: str, weighted: bool, calibrate: bool):
        def build():
            search = FaissSearch(vectors, kind, queries=shaping if weighted else None)
            if calibrate:
                search.calibrate(calibrating, k)
            return search

        return build

    variants = [("ivf", False), ("ivf", True), ("hnsw", False)]
    for kind, weighted in variants:
        for calibrate in (False, True):
            if kind == "hnsw" and n > 200_000:
                continue  # minutes to build per million vectors on 2 cores, and at 50k news it already needed
                # efSearch 4096 for recall 0.94 on NRMS's vectors (slower than exact search)
            name = {"ivf": "IVF-IP on the unit-sphere lift, spherical k-means", "hnsw": "HNSW-IP"}[kind]
            label = name + (", query-weighted space" if weighted else "")
            label += ", effort calibrated on training users" if calibrate else ""
            search = measure(
                label, ours(kind, weighted, calibrate),
                lambda i, q, kk: i.search(torch.from_numpy(q), kk)[1].numpy(),
            )  # fmt: skip
            rows[-1]["settings"] = ("nprobe " if kind == "ivf" else "efSearch ") + str(search.effort) + (
                f" (calibration recall {search.recall:.3f})" if calibrate else "")  # fmt: skip
            if kind == "ivf" and weighted and calibrate:
                rows[-1]["index"] += " (default)"
    return rows


def concentration(vectors: torch.Tensor, users: torch.Tensor, top: int = 5) -> dict:
    """How concentrated the users are against the news: the share of the users' energy (the mean
    of ``q̂q̂ᵀ`` over unit user vectors) in its ``top`` largest directions, and the share of the
    news vectors' variance in theirs."""

    def share(matrix: torch.Tensor) -> float:
        values = torch.linalg.eigvalsh(matrix.double()).flip(0)
        return float(values[:top].sum() / values.sum())

    unit = users / users.norm(dim=1, keepdim=True).clamp_min(1e-12)
    centred = vectors[1:] - vectors[1:].mean(0)  # row 0: the padding news
    return {
        f"users' energy in {top} directions": share(unit.T @ unit / len(unit)),
        f"news variance in {top} directions": share(centred.T @ centred / len(centred)),
    }
