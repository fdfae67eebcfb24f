"""Top-k search over news vectors by inner product: exact (a matrix product) or approximate
(faiss, extra ``[serve]``). Either only shortlists: the served scores are the model's own."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["ExactSearch", "FaissSearch", "make_search", "recall_at_k"]


class ExactSearch:
    """Exact top-k by ``vectors @ query``.

    Args:
        vectors: ``[N, d]`` float (row ``i`` = news row ``i``).

    Shapes: :meth:`search` takes ``queries [B, d]`` and returns ``(scores [B, k], rows [B, k])``.
    """

    exact = True
    recall = 1.0

    def __init__(self, vectors: Tensor, reason: str = "") -> None:
        self.vectors = vectors
        #: why an exact search serves (e.g. an approximate one was asked for too few news)
        self.reason = reason

    def updated(self, vectors: Tensor, rows: Tensor) -> ExactSearch:
        """The search over the new full ``vectors`` (``rows`` changed or were added)."""
        return ExactSearch(vectors, self.reason)

    def search(self, queries: Tensor, k: int, allowed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``allowed``: optional bool ``[N]`` (False rows are never returned)."""
        scores = queries @ self.vectors.T
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        k = min(k, scores.shape[1])
        top = torch.topk(scores, k, dim=1)
        return top.values, top.indices


class FaissSearch:
    r"""Approximate top-k by inner product: a faiss inverted file (``IndexIVFFlat``) over the
    vectors lifted onto the unit sphere, with spherical k-means clusters, and a number of probed
    clusters calibrated on real queries.

    **The lift** (Bachrach et al., RecSys 2014, with the query normalised as there): with
    :math:`M` 5 % above the largest norm at build time,

    .. math::
        \tilde{\mathbf{x}} = \big[\mathbf{x} / M,\ \sqrt{1 - \lVert\mathbf{x}\rVert^2 / M^2}\big],
        \qquad \tilde{\mathbf{q}} = [\mathbf{q} / \lVert\mathbf{q}\rVert,\ 0],
        \qquad \tilde{\mathbf{q}}^\top\tilde{\mathbf{x}} = \mathbf{q}^\top\mathbf{x} / (M\lVert\mathbf{q}\rVert),

    so every lifted vector has norm 1 and the largest lifted inner product is the largest
    inner product. Clusters are spherical (unit centroids) and ranked by inner product, so a
    query is sent to the clusters in its direction. (The earlier form kept the query's own
    length and ranked clusters by Euclidean distance: with a trained model's short user
    vectors, the centroids' norms outweighed their directions and every query scanned the same
    few clusters: recall@10 0.06-0.08 at 50k news.)

    **Calibration.** :meth:`calibrate` measures recall@k on sample queries (the fraction of the
    exact top-``k`` that is among the search's top ``k × fetch_factor``, the shortlist the model
    re-scores) and doubles ``nprobe`` until it reaches ``target_recall`` (at ``nprobe = nlist``
    the scan is exhaustive, so the target is always reached). :attr:`recall` is the last measure
    (``None`` before any).

    Args:
        vectors: ``[N, d]`` float.
        nlist: clusters (default ``√N``, at least 1).
        nprobe: clusters scanned per query before calibration (default ``max(8, nlist // 16)``).
        train_size: vectors the clustering is trained on (default ``64·nlist``; all when fewer).
        seed: seed of the clustering and its sample.
        target_recall: what :meth:`calibrate` aims for (0.95).
        fetch_factor: the shortlist the calibration measures, ``k × fetch_factor`` (4, as the
            :class:`~newsrec.serving.Recommender` re-scores).

    A vector added later (:meth:`updated`) that is longer than ``M`` makes the index rebuild
    (clustering included) so the lift stays valid.
    """

    exact = False
    reason = ""

    def __init__(
        self,
        vectors: Tensor,
        nlist: int | None = None,
        nprobe: int | None = None,
        train_size: int | None = None,
        seed: int = 0,
        target_recall: float = 0.95,
        fetch_factor: int = 4,
    ) -> None:
        try:
            import faiss
        except ImportError:
            raise ImportError("the faiss index needs faiss-cpu: pip install 'newsrec-pyg[serve]'") from None
        x = np.ascontiguousarray(vectors.detach().float().cpu().numpy())
        n, d = x.shape
        self.options = {"nlist": nlist, "nprobe": nprobe, "train_size": train_size, "seed": seed,
                        "target_recall": target_recall, "fetch_factor": fetch_factor}  # fmt: skip
        self.target_recall, self.fetch_factor = target_recall, fetch_factor
        sq = _squared_norms(x)
        self.max_norm = 1.05 * float(np.sqrt(sq.max())) if n else 1.0  # room for added news
        self.max_norm = self.max_norm or 1.0
        lifted = self._lift(x, sq)
        self.nlist = max(1, min(nlist or int(np.sqrt(n)), n))
        train_size = min(n, train_size or 64 * self.nlist)
        quantizer = faiss.IndexFlatIP(d + 1)
        index = faiss.IndexIVFFlat(quantizer, d + 1, self.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.cp.seed = seed
        train = lifted if train_size >= n else lifted[np.random.default_rng(seed).choice(n, train_size, replace=False)]
        index.train(train)
        index.add_with_ids(lifted, np.arange(n, dtype=np.int64))
        self.index, self.quantizer, self.num_vectors = index, quantizer, n
        self.vectors = vectors.detach().float().cpu()  # exact scores for calibration and recall checks
        self.nprobe = min(nprobe or max(8, self.nlist // 16), self.nlist)
        #: recall@k measured by the last :meth:`calibrate` (``None``: not measured)
        self.recall: float | None = None

    @property
    def nprobe(self) -> int:
        return int(self.index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.index.nprobe = int(value)

    def _lift(self, x: np.ndarray, sq: np.ndarray) -> np.ndarray:
        """``[n, d]`` (squared norms ``sq [n]``) → ``[n, d + 1]`` unit vectors."""
        extra = np.sqrt(np.maximum(1.0 - sq / self.max_norm**2, 0.0))
        return np.ascontiguousarray(np.hstack([x / self.max_norm, extra[:, None]]).astype(np.float32))

    def calibrate(self, queries: Tensor, k: int = 10) -> float:
        """Raise ``nprobe`` until recall@``k`` on ``queries [Q, d]`` reaches ``target_recall``;
        returns (and keeps in :attr:`recall`) the recall reached."""
        queries = queries.detach().float().cpu()
        if not len(queries):
            return self.recall if self.recall is not None else float("nan")
        want = ExactSearch(self.vectors).search(queries, k)[1]
        while True:
            got = self.search(queries, k * self.fetch_factor)[1]
            self.recall = recall_at_k(got, want)
            if self.recall >= self.target_recall or self.nprobe >= self.nlist:
                return self.recall
            self.nprobe = min(2 * self.nprobe, self.nlist)

    def updated(self, vectors: Tensor, rows: Tensor) -> FaissSearch:
        """Replace / add the vectors of ``rows`` (of the new full ``vectors``) in place, without
        re-clustering; a new vector longer than ``M`` rebuilds the index over ``vectors``
        (keeping the calibrated ``nprobe``)."""
        ids = np.ascontiguousarray(rows.cpu().numpy().astype(np.int64))
        new = np.ascontiguousarray(vectors[rows].detach().float().cpu().numpy())
        sq = _squared_norms(new)
        if len(new) and float(np.sqrt(sq.max())) > self.max_norm:
            rebuilt = FaissSearch(vectors, **{**self.options, "nprobe": self.nprobe})
            rebuilt.recall = self.recall
            return rebuilt
        self.index.remove_ids(ids)
        self.index.add_with_ids(self._lift(new, sq), ids)
        self.vectors = vectors.detach().float().cpu()
        self.num_vectors = int(vectors.shape[0])
        return self

    def search(self, queries: Tensor, k: int, allowed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Like :meth:`ExactSearch.search` (scores are inner products); with ``allowed``, more
        rows are fetched and the disallowed ones dropped (rows that cannot be filled are ``-1``
        with score ``-inf``)."""
        q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        banned = 0 if allowed is None else int((~allowed).sum())
        fetch = min(k + banned, self.num_vectors)
        norms = np.sqrt(_squared_norms(q))
        unit = q / np.maximum(norms, np.finfo(np.float32).tiny)[:, None]
        lifted = np.ascontiguousarray(np.hstack([unit, np.zeros((len(q), 1), np.float32)]))
        sims, rows = self.index.search(lifted, fetch)
        scores = torch.from_numpy(sims * norms[:, None] * self.max_norm)
        rows = torch.from_numpy(rows).long()
        ok = rows >= 0
        if allowed is not None:
            ok &= allowed[rows.clamp_min(0)]
        scores = scores.masked_fill(~ok, float("-inf"))
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        rows = torch.gather(rows.masked_fill(~ok, -1), 1, order)
        return torch.gather(scores, 1, order), rows


def recall_at_k(found: Tensor, wanted: Tensor) -> float:
    """Mean over queries of ``|wanted_q ∩ found_q| / |wanted_q|`` (``found [Q, K]``, ``wanted
    [Q, k]`` rows; ``-1`` = none)."""
    hits = [len(set(w[w >= 0].tolist()) & set(f[f >= 0].tolist())) / max(int((w >= 0).sum()), 1)
            for f, w in zip(found, wanted)]  # fmt: skip
    return float(np.mean(hits)) if hits else float("nan")


def _squared_norms(x: np.ndarray) -> np.ndarray:
    """``[n, d]`` float32 → ``[n]`` squared norms (no float64 copy of ``x``)."""
    return np.einsum("ij,ij->i", x, x)


def make_search(kind: str, vectors: Tensor, **options):
    """``"exact"`` → :class:`ExactSearch`, ``"faiss"`` → :class:`FaissSearch`."""
    if kind == "exact":
        return ExactSearch(vectors)
    if kind == "faiss":
        return FaissSearch(vectors, **options)
    raise ValueError(f"search must be 'exact' or 'faiss', got {kind!r}")
