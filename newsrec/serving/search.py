"""Top-k search over news vectors by inner product: exact (a matrix product) or approximate
(faiss, extra ``[serve]``). Either only shortlists: the served scores are the model's own."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["ExactSearch", "FaissSearch", "make_search", "query_metric", "recall_at_k"]


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
    r"""Approximate top-k by inner product with faiss, built and tuned on real queries.

    **The query-weighted space.** Given a sample of the model's queries (user vectors
    ``queries [Q, d]``), the index is built over :math:`\mathbf{x}' = W^{1/2}\mathbf{x}` and
    searched with :math:`\mathbf{q}' = W^{-1/2}\mathbf{q}`, where

    .. math::
        W = (1 - \alpha)\,\Sigma + \alpha\,\frac{\operatorname{tr}\Sigma}{d} I, \qquad
        \Sigma = \frac{1}{Q}\sum_j \hat{\mathbf{q}}_j\hat{\mathbf{q}}_j^\top
        \quad (\hat{\mathbf{q}} = \mathbf{q}/\lVert\mathbf{q}\rVert,\ \alpha = ``isotropy``).

    Every inner product is kept, :math:`\mathbf{q}'^\top\mathbf{x}' = \mathbf{q}^\top\mathbf{x}`,
    so only the index's structure changes: k-means in that space minimises
    :math:`\sum_i (\mathbf{x}_i - \mathbf{c})^\top W (\mathbf{x}_i - \mathbf{c})`, at
    :math:`\alpha = 0` the expected squared error of the inner product
    :math:`\mathbb{E}_{\hat{\mathbf{q}}}[(\hat{\mathbf{q}}^\top(\mathbf{x}_i - \mathbf{c}))^2]`
    over the queries, so clusters split the news along the directions users' vectors point in,
    not along the news vectors' own largest variance. A trained model's user vectors are
    concentrated (GLORY's at 50k news: 67 % of their energy in 5 directions, where the news
    vectors' 5 largest directions hold 13 % of their variance): in the raw space recall@10 needed
    208 of 223 clusters, in this one 13. With isotropic queries :math:`W \propto I` and nothing
    changes; ``isotropy`` keeps every direction in the metric for queries unlike the sample.

    Two kinds of index, measured side by side in ``benchmarks/serving.py``:

    - ``"ivf"`` (default): an inverted file (``IndexIVFFlat``) over the vectors lifted onto the unit sphere
      (Bachrach et al., RecSys 2014, with the query normalised as there: with :math:`M` 5 %
      above the largest norm, :math:`\tilde{\mathbf{x}} = [\mathbf{x}/M,
      \sqrt{1 - \lVert\mathbf{x}\rVert^2/M^2}]`, :math:`\tilde{\mathbf{q}} =
      [\mathbf{q}/\lVert\mathbf{q}\rVert, 0]`, so :math:`\tilde{\mathbf{q}}^\top\tilde{\mathbf{x}} =
      \mathbf{q}^\top\mathbf{x}/(M\lVert\mathbf{q}\rVert)`), spherical k-means and clusters ranked
      by inner product. (newsrec 0.1 ranked clusters by Euclidean distance with the query's own
      length: with a trained model's short user vectors the centroids' norms outweighed their
      directions, recall@10 0.06-0.08 at 50k news.) Calibrated on a paper-sized NRMS's users at
      50k news it scans 52 of 223 clusters for recall@10 0.97 in 1.0 ms (104 in the raw space).
    - ``"hnsw"``: a navigable small-world graph over the raw vectors with inner-product
      distances (``IndexHNSWFlat``, ``M`` links per node; in the query-weighted space its recall
      on GLORY's vectors fell from 0.96 to 0.80 at ``efSearch`` 512). On NRMS's vectors it
      needed ``efSearch`` 4096 for recall@10 0.94, slower than exact search: not the default.
      Rows are filtered at search time (the padding news, a user's history, replaced vectors);
      an updated row's old vector stays in the graph, unreachable.

    **Calibration.** :meth:`calibrate` measures recall@k on sample queries (the fraction of the
    exact top ``k`` among the search's top ``k × fetch_factor``, the shortlist the model
    re-scores) and doubles the search effort (HNSW's ``efSearch``, IVF's ``nprobe``) until it
    reaches ``target_recall``. :attr:`recall` is the last measure (``None`` before any).

    Args:
        vectors: ``[N, d]`` float.
        kind: ``"ivf"`` (default) or ``"hnsw"``.
        queries: ``[Q, d]``, a sample of the queries the index will serve (the model's user
            vectors), which shapes the space the index is built in; ``None``: the raw space.
        isotropy: :math:`\alpha`, the identity's share of the query metric :math:`W` (0.1; 1:
            the raw space).
        hnsw_m, ef_construction, ef_search: HNSW's links per node (32), build effort (80) and
            search effort before calibration (64).
        nlist, nprobe, train_size: IVF's clusters (``√N``), clusters scanned before calibration
            (``max(8, nlist // 16)``) and clustering sample (``64·nlist``).
        seed: seed of the clustering and its sample (IVF).
        target_recall: what :meth:`calibrate` aims for (0.95).
        fetch_factor: the shortlist :meth:`calibrate` measures, ``k × fetch_factor`` (4, as
            :class:`~newsrec.serving.Recommender` re-scores).
    """

    exact = False
    reason = ""

    def __init__(
        self,
        vectors: Tensor,
        kind: str = "ivf",
        *,
        queries: Tensor | None = None,
        isotropy: float = 0.1,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
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
        if kind not in ("hnsw", "ivf"):
            raise ValueError(f"the faiss index kind must be 'hnsw' or 'ivf', got {kind!r}")
        if not 0.0 <= isotropy <= 1.0:
            raise ValueError(f"isotropy must be in [0, 1], got {isotropy!r}")
        self.faiss, self.kind = faiss, kind
        self.options = dict(kind=kind, isotropy=isotropy, hnsw_m=hnsw_m, ef_construction=ef_construction,
                            ef_search=ef_search, nlist=nlist, nprobe=nprobe, train_size=train_size, seed=seed,
                            target_recall=target_recall, fetch_factor=fetch_factor)  # fmt: skip
        self.target_recall, self.fetch_factor = target_recall, fetch_factor
        self.vectors = vectors.detach().float().cpu()  # exact scores for calibration
        n, d = self.vectors.shape
        #: the query sample that shaped the space (``None``: the raw space)
        self.queries = None if queries is None or not len(queries) else queries.detach().float().cpu()
        self._to_space, self._query_to_space = (  # HNSW: the raw space (measured: it lost recall here)
            (None, None) if self.queries is None or kind == "hnsw" else query_metric(self.queries, isotropy)
        )
        x = self._in_space(self.vectors.numpy())
        self.num_vectors = n
        #: the row of every stored vector (-1: replaced by a later vector of its row)
        self.row_of = np.arange(n, dtype=np.int64)
        self.stored_of = np.arange(n, dtype=np.int64)  # the stored vector of every row
        self.has_updates = False
        sq = _squared_norms(x)
        self.max_norm = (1.05 * float(np.sqrt(sq.max())) if n else 1.0) or 1.0  # room for added news
        if kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.add(x)
            self.effort, self.max_effort = ef_search, max(ef_search, 4096)
        else:
            self.nlist = max(1, min(nlist or int(np.sqrt(n)), n))
            train_size = min(n, train_size or 64 * self.nlist)
            lifted = self._lift(x, sq)
            del x  # a million 400-d vectors: 1.6 GB, not kept through the build
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d + 1), d + 1, self.nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.spherical, self.index.cp.seed = True, seed
            sample = np.random.default_rng(seed).choice(n, train_size, replace=False) if train_size < n else slice(None)
            self.index.train(lifted[sample])
            self.index.add_with_ids(lifted, np.arange(n, dtype=np.int64))
            self.effort, self.max_effort = min(nprobe or max(8, self.nlist // 16), self.nlist), self.nlist
        #: recall@k measured by the last :meth:`calibrate` (``None``: not measured)
        self.recall: float | None = None

    @property
    def effort(self) -> int:
        """The search effort: HNSW's ``efSearch`` or IVF's ``nprobe``."""
        return self._effort

    @effort.setter
    def effort(self, value: int) -> None:
        self._effort = int(value)
        if self.kind == "ivf":
            self.index.nprobe = self._effort

    def _in_space(self, x: np.ndarray, queries: bool = False) -> np.ndarray:
        """``[n, d]`` float32 → the same in the index's space (a contiguous array; the transform
        in blocks, so that no float64 copy of a million vectors is made)."""
        transform = self._query_to_space if queries else self._to_space
        if transform is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty(x.shape, np.float32)
        for start in range(0, len(x), 65536):
            np.matmul(x[start : start + 65536], transform, out=out[start : start + 65536])
        return out

    def _lift(self, x: np.ndarray, sq: np.ndarray) -> np.ndarray:
        """``[n, d]`` (squared norms ``sq [n]``) → ``[n, d + 1]`` unit vectors (IVF)."""
        lifted = np.empty((len(x), x.shape[1] + 1), np.float32)  # written in place: no temporary copies
        np.divide(x, self.max_norm, out=lifted[:, :-1])
        lifted[:, -1] = np.sqrt(np.maximum(1.0 - sq / self.max_norm**2, 0.0))
        return lifted

    def calibrate(self, queries: Tensor, k: int = 10) -> float:
        """Double the search effort until recall@``k`` on ``queries [Q, d]`` reaches
        ``target_recall`` (or the effort its maximum); returns the recall, kept in :attr:`recall`."""
        queries = queries.detach().float().cpu()
        if not len(queries):
            return self.recall if self.recall is not None else float("nan")
        want = ExactSearch(self.vectors).search(queries, k)[1]
        while True:
            self.recall = recall_at_k(self.search(queries, k * self.fetch_factor)[1], want)
            if self.recall >= self.target_recall or self.effort >= self.max_effort:
                return self.recall
            self.effort = min(2 * self.effort, self.max_effort)

    def updated(self, vectors: Tensor, rows: Tensor) -> FaissSearch:
        """Replace / add the vectors of ``rows`` (of the new full ``vectors``) in place, without
        rebuilding (the IVF's clusters stay; HNSW links the new vectors in and keeps the old
        ones unreachable); a new vector longer than the IVF's ``M`` rebuilds it."""
        rows_np = rows.cpu().numpy().astype(np.int64)
        new = self._in_space(vectors[rows].detach().float().cpu().numpy())
        sq = _squared_norms(new)
        if self.kind == "ivf" and len(new) and float(np.sqrt(sq.max())) > self.max_norm:
            rebuilt = FaissSearch(vectors, queries=self.queries, **{**self.options, "nprobe": self.effort})
            rebuilt.recall = self.recall
            return rebuilt
        self.vectors = vectors.detach().float().cpu()
        grow = int(vectors.shape[0]) - len(self.stored_of)
        self.stored_of = np.concatenate([self.stored_of, np.full(max(grow, 0), -1, np.int64)])
        old = self.stored_of[rows_np]
        self.row_of[old[old >= 0]] = -1
        stored = np.arange(len(self.row_of), len(self.row_of) + len(rows_np), dtype=np.int64)
        if self.kind == "hnsw":
            self.index.add(new)
        else:
            self.index.add_with_ids(self._lift(new, sq), stored)
        self.row_of = np.concatenate([self.row_of, rows_np])
        self.stored_of[rows_np] = stored
        self.has_updates = True
        self.num_vectors = int(vectors.shape[0])
        return self

    def search(self, queries: Tensor, k: int, allowed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Like :meth:`ExactSearch.search` (scores are inner products; rows that cannot be filled
        are ``-1`` with score ``-inf``)."""
        faiss = self.faiss
        q = self._in_space(queries.detach().float().cpu().numpy(), queries=True)
        identity = not self.has_updates  # stored vector i is row i
        if identity and allowed is None:
            selector, available = None, len(self.row_of)
        else:
            keep = np.ones(len(self.stored_of), bool) if allowed is None else allowed.cpu().numpy()
            if not identity:
                keep = (self.row_of >= 0) & keep[np.maximum(self.row_of, 0)]
            bitmap = np.packbits(keep, bitorder="little")  # kept alive until the search returns
            selector, available = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bitmap)), int(keep.sum())
        fetch = max(1, min(k, available))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.effort, fetch), sel=selector)
            sims, stored = self.index.search(q, fetch, params=params)
            scores = sims
        else:
            norms = np.sqrt(_squared_norms(q))
            unit = q / np.maximum(norms, np.finfo(np.float32).tiny)[:, None]
            lifted = np.ascontiguousarray(np.hstack([unit, np.zeros((len(q), 1), np.float32)]))
            params = faiss.SearchParametersIVF(nprobe=self.effort, sel=selector)
            sims, stored = self.index.search(lifted, fetch, params=params)
            scores = np.where(stored >= 0, sims, 0.0) * norms[:, None] * self.max_norm  # unfilled: -FLT_MAX
        found = stored >= 0
        rows = np.where(found, self.row_of[np.maximum(stored, 0)], -1)
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        if fetch < k:  # fewer rows to give than asked
            rows = np.pad(rows, ((0, 0), (0, k - fetch)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, k - fetch)), constant_values=-np.inf)
        return torch.from_numpy(scores), torch.from_numpy(rows).long()


def recall_at_k(found: Tensor, wanted: Tensor) -> float:
    """Mean over queries of ``|wanted_q ∩ found_q| / |wanted_q|`` (``found [Q, K]``, ``wanted
    [Q, k]`` rows; ``-1`` = none)."""
    hits = [len(set(w[w >= 0].tolist()) & set(f[f >= 0].tolist())) / max(int((w >= 0).sum()), 1)
            for f, w in zip(found, wanted)]  # fmt: skip
    return float(np.mean(hits)) if hits else float("nan")


def query_metric(queries: Tensor, isotropy: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    r"""The query-weighted space of :class:`FaissSearch`: ``(W^{1/2}, W^{-1/2})``, both ``[d, d]``
    float32 (symmetric), with :math:`W = (1 - \alpha)\Sigma + \alpha (\operatorname{tr}\Sigma / d) I`
    and :math:`\Sigma` the mean of :math:`\hat{\mathbf{q}}\hat{\mathbf{q}}^\top` over the unit
    ``queries [Q, d]`` (zero rows ignored). News go in as ``x @ W^{1/2}``, queries as
    ``q @ W^{-1/2}``: their inner products are the raw ones. Without a non-zero query, or at
    ``isotropy`` 1, both are the identity."""
    q = queries.detach().double().cpu()
    d = q.shape[1]
    norms = q.norm(dim=1, keepdim=True)
    unit = q[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
    if not len(unit) or isotropy >= 1.0:
        eye = np.eye(d, dtype=np.float32)
        return eye, eye.copy()
    second = unit.T @ unit / len(unit)
    metric = (1.0 - isotropy) * second + isotropy * float(torch.trace(second)) / d * torch.eye(d, dtype=torch.float64)
    values, basis = torch.linalg.eigh(metric)
    values = values.clamp_min(float(values.max()) * 1e-12)  # isotropy 0: a rank-deficient sample
    half = (basis * values.sqrt()) @ basis.T
    inverse = (basis / values.sqrt()) @ basis.T
    return half.float().numpy(), inverse.float().numpy()


def _squared_norms(x: np.ndarray) -> np.ndarray:
    """``[n, d]`` float32 → ``[n]`` squared norms (no float64 copy of ``x``)."""
    return np.einsum("ij,ij->i", x, x)


def make_search(kind: str, vectors: Tensor, **options) -> ExactSearch | FaissSearch:
    """``"exact"`` → :class:`ExactSearch`, ``"faiss"`` → :class:`FaissSearch`."""
    if kind == "exact":
        return ExactSearch(vectors)
    if kind == "faiss":
        return FaissSearch(vectors, **options)
    raise ValueError(f"search must be 'exact' or 'faiss', got {kind!r}")
