"""Beyond-accuracy metrics of recommendation lists: diversity, personalisation, novelty,
serendipity, coverage (re-exported by :mod:`newsrec.metrics`).

Every function takes padded ``[B, k]`` lists (the top-``k`` of each impression, or of a
full-index ranking) with a bool mask, is vectorised over the batch (no Python loop over users)
and never returns NaN: a list without the items a value needs gets 0, and the metric class
excludes such lists from its means and counts them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "intra_list_diversity",
    "category_diversity",
    "category_personalisation",
    "novelty",
    "serendipity",
    "coverage",
    "gini_index",
    "top_k_lists",
    "BeyondAccuracyMetrics",
    "BEYOND_ACCURACY_NAMES",
]

#: the values :class:`BeyondAccuracyMetrics` computes (logged as ``{stage}/{name}@{k}``)
BEYOND_ACCURACY_NAMES = ("ild", "category_diversity", "personalisation", "novelty", "serendipity", "coverage", "gini")


def _unit(vectors: Tensor) -> Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def intra_list_diversity(vectors: Tensor, mask: Tensor) -> Tensor:
    r"""Mean pairwise cosine distance within each list:
    :math:`\frac{1}{n(n-1)} \sum_{i \ne j} \big(1 - \cos(\mathbf{v}_i, \mathbf{v}_j)\big)` over the
    list's ``n`` valid items. Computed as
    :math:`\sum_{i \ne j} \hat{\mathbf{v}}_i^\top \hat{\mathbf{v}}_j
    = \lVert \sum_i \hat{\mathbf{v}}_i \rVert^2 - \sum_i \lVert \hat{\mathbf{v}}_i \rVert^2`
    (unit vectors :math:`\hat{\mathbf{v}}`; a zero vector has cosine 0 to everything): ``O(k d)`` per
    list, not ``O(k² d)``.

    Args:
        vectors: ``[B, k, d]`` item vectors.
        mask: bool ``[B, k]``.

    Returns:
        float64 ``[B]``; 0 for a list of ≤ 1 valid item (exclude those: ``mask.sum(1) > 1``).
    """
    m = mask.bool()
    u = _unit(vectors) * m.unsqueeze(-1).to(vectors.dtype)
    return _ild_from_sums(u.sum(1).double(), u.double().pow(2).sum((1, 2)), m.sum(1).double())


def _ild_from_sums(total: Tensor, sq: Tensor, n: Tensor) -> Tensor:
    """ILD from ``Σ v̂_i`` ``[B, d]``, ``Σ ‖v̂_i‖²`` ``[B]`` and the item count ``[B]``."""
    dots = (total * total).sum(1) - sq  # Σ_{i≠j} cos
    n_pairs = n * (n - 1)
    return torch.where(n_pairs > 0, 1.0 - dots / n_pairs.clamp_min(1), torch.zeros_like(dots))


def _category_counts(categories: Tensor, mask: Tensor, num_categories: int) -> Tensor:
    """float64 ``[B, num_categories]``: how many valid items of each list have each category."""
    if (categories[mask.bool()] < 0).any() or (categories[mask.bool()] >= num_categories).any():
        raise ValueError(f"categories must lie in [0, {num_categories})")
    counts = torch.zeros(categories.shape[0], num_categories, dtype=torch.float64, device=categories.device)
    return counts.scatter_add_(1, categories.long().clamp(0, num_categories - 1), mask.double())


def category_diversity(categories: Tensor, mask: Tensor, num_categories: int) -> Tensor:
    r"""Normalised entropy of each list's category distribution:
    :math:`-\sum_c p_c \ln p_c \,/\, \ln \min(k, C)`, with ``k`` the padded list length
    (``categories.shape[1]``) and ``C`` = ``num_categories``. All items of one category give 0;
    ``min(k, C)`` items of distinct categories give 1.

    Args:
        categories: long ``[B, k]`` category ids in ``[0, C)``.
        mask: bool ``[B, k]``.
        num_categories: ``C``.

    Returns:
        float64 ``[B]`` in ``[0, 1]``; 0 for an empty list (or when ``min(k, C) ≤ 1``).
    """
    counts = _category_counts(categories, mask, num_categories)
    n = counts.sum(1, keepdim=True)
    p = counts / n.clamp_min(1)
    entropy = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)
    norm = math.log(min(categories.shape[1], num_categories)) if min(categories.shape[1], num_categories) > 1 else 0
    return entropy / norm if norm > 0 else torch.zeros_like(entropy)


def category_personalisation(
    rec_categories: Tensor, rec_mask: Tensor, hist_categories: Tensor, hist_mask: Tensor, num_categories: int
) -> Tensor:
    r"""Generalised Jaccard similarity between the category counts :math:`p` of each list and
    :math:`q` of the user's history: :math:`\sum_c \min(p_c, q_c) / \sum_c \max(p_c, q_c)`
    (1 = the list has the history's category mix at its scale; 0 = no category in common).

    Args:
        rec_categories, rec_mask: ``[B, k]`` the list's categories and mask.
        hist_categories, hist_mask: ``[B, H]`` the history's.
        num_categories: ``C``.

    Returns:
        float64 ``[B]``; 0 when both are empty.
    """
    p = _category_counts(rec_categories, rec_mask, num_categories)
    q = _category_counts(hist_categories, hist_mask, num_categories)
    top, bottom = torch.minimum(p, q).sum(1), torch.maximum(p, q).sum(1)
    return torch.where(bottom > 0, top / bottom.clamp_min(1e-12), torch.zeros_like(top))


def novelty(item_ids: Tensor, mask: Tensor, popularity: Tensor) -> Tensor:
    r"""Mean self-information of each list's items: :math:`\frac{1}{n}\sum_i -\log_2 p_i`, with
    :math:`p_i` the item's share of clicks (``popularity``, all > 0).

    Args:
        item_ids: long ``[B, k]``.
        mask: bool ``[B, k]``.
        popularity: ``[num_items]`` click shares.

    Returns:
        float64 ``[B]``; 0 for an empty list.
    """
    m = mask.bool()
    info = -torch.log2(popularity.double()[item_ids.long().clamp_min(0)])
    n = m.sum(1).double()
    total = (info * m).sum(1)
    return torch.where(n > 0, total / n.clamp_min(1), torch.zeros_like(total))


def serendipity(rec_vectors: Tensor, rec_mask: Tensor, hist_vectors: Tensor, hist_mask: Tensor) -> Tensor:
    r"""Mean cosine distance between the list's items and the user's history items:
    :math:`\frac{1}{nH}\sum_{i, j} \big(1 - \cos(\mathbf{r}_i, \mathbf{h}_j)\big)` over valid pairs,
    computed as :math:`1 - (\sum_i \hat{\mathbf{r}}_i)^\top (\sum_j \hat{\mathbf{h}}_j) / (nH)`.

    Args:
        rec_vectors: ``[B, k, d]``; rec_mask: bool ``[B, k]``.
        hist_vectors: ``[B, H, d]``; hist_mask: bool ``[B, H]``.

    Returns:
        float64 ``[B]``; 0 when the list or the history is empty.
    """
    rm, hm = rec_mask.bool(), hist_mask.bool()
    r = _unit(rec_vectors) * rm.unsqueeze(-1).to(rec_vectors.dtype)
    h = _unit(hist_vectors) * hm.unsqueeze(-1).to(hist_vectors.dtype)
    return _serendipity_from_sums(r.sum(1).double(), h.sum(1).double(), rm.sum(1).double(), hm.sum(1).double())


def _serendipity_from_sums(rec_sum: Tensor, hist_sum: Tensor, n: Tensor, n_hist: Tensor) -> Tensor:
    """Serendipity from ``Σ r̂_i``, ``Σ ĥ_j`` (``[B, d]``) and the two item counts (``[B]``)."""
    dots = (rec_sum * hist_sum).sum(1)
    pairs = n * n_hist
    return torch.where(pairs > 0, 1.0 - dots / pairs.clamp_min(1), torch.zeros_like(dots))


def _item_counts(item_ids: Tensor, mask: Tensor, num_items: int) -> Tensor:
    ids = item_ids[mask.bool()].long()
    if len(ids) and (ids.min() < 0 or ids.max() >= num_items):
        raise ValueError(f"item ids must lie in [0, {num_items})")
    return torch.bincount(ids, minlength=num_items)


def coverage(item_ids: Tensor, mask: Tensor, num_items: int) -> Tensor:
    """Catalogue coverage: distinct recommended items / ``num_items`` (a float64 scalar)."""
    return (_item_counts(item_ids, mask, num_items) > 0).sum().double() / max(num_items, 1)


def gini_index(counts: Tensor) -> Tensor:
    r"""Gini index of recommendation counts over the whole catalogue (items never recommended
    count as 0): :math:`\frac{\sum_i (2i - n - 1)\, x_{(i)}}{n \sum_i x_i}` with :math:`x_{(i)}`
    sorted ascending. 0 = every item recommended equally often; → 1 = all on one item."""
    x = torch.sort(counts.double()).values
    n = len(x)
    total = x.sum()
    if n == 0 or total <= 0:
        return torch.tensor(0.0, dtype=torch.float64)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    return ((2 * i - n - 1) * x).sum() / (n * total)


def top_k_lists(scores: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The top-``k`` candidates of each impression: ``(positions long [B, k'], valid bool [B, k'])``
    with ``k' = min(k, L)``, best first; ties keep candidate order (as the accuracy metrics)."""
    s = torch.where(mask.bool(), scores.double(), torch.full_like(scores, -torch.inf, dtype=torch.float64))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
    return order, torch.gather(mask.bool(), 1, order)


class BeyondAccuracyMetrics(Metric):
    """Beyond-accuracy means over the top-``k`` list of every impression:
    ``ild`` (:func:`intra_list_diversity`), ``category_diversity``, ``personalisation``
    (:func:`category_personalisation`), ``novelty``, ``serendipity``, plus catalogue ``coverage``
    and the ``gini`` index of how often each item was recommended.

    Args:
        k: list length (10).
        item_categories: long ``[num_items]`` category of every item.
        item_vectors: ``[num_items, d]``: the space of diversity and serendipity. newsrec's
            models use a model-independent space (the corpus's mean title word vectors, see
            :meth:`MINDDataModule.beyond_accuracy_inputs`), so that models are comparable.
        click_counts: ``[num_items]`` training clicks of every item; novelty uses the add-one
            smoothed click shares :math:`p_i = (c_i + 1) / (\\sum_j c_j + N)`, so an item never
            clicked has a finite novelty.
        num_categories: defaults to ``item_categories.max() + 1``.
        catalogue_start: items below this id are not part of the catalogue (newsrec's corpus row
            0 is the padding news): coverage and the Gini index count items
            ``catalogue_start .. num_items − 1``.

    ``update(scores [B, L], mask [B, L], items [B, L], history [B, H], history_mask [B, H])``
    takes each impression's candidate scores, mask and item ids and the user's history item ids.
    States are sums, counts and a per-item count vector, all with ``dist_reduce_fx="sum"``: DDP
    totals are exact. Lists of ≤ 1 valid item are left out of ``ild`` (counted in
    ``ild_excluded``); impressions with an empty history are left out of ``serendipity`` and
    ``personalisation`` (counted in ``no_history``).
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    def __init__(
        self,
        k: int = 10,
        *,
        item_categories: Tensor,
        item_vectors: Tensor,
        click_counts: Tensor,
        num_categories: int | None = None,
        catalogue_start: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n = len(item_categories)
        if len(item_vectors) != n or len(click_counts) != n:
            raise ValueError(
                f"item_categories ({n}), item_vectors ({len(item_vectors)}) and click_counts "
                f"({len(click_counts)}) must describe the same items"
            )
        self.k, self.num_items, self.catalogue_start = k, n, int(catalogue_start)
        self.num_categories = int(num_categories if num_categories is not None else int(item_categories.max()) + 1)
        counts = torch.as_tensor(click_counts, dtype=torch.float64)
        self.register_buffer("item_categories", torch.as_tensor(item_categories).long(), persistent=False)
        vectors = torch.as_tensor(item_vectors).double()
        unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.register_buffer("item_vectors", unit.float(), persistent=False)  # unit length (or 0)
        self.register_buffer("unit_norms", unit.pow(2).sum(1), persistent=False)
        self.register_buffer("popularity", (counts + 1) / (counts.sum() + n), persistent=False)
        for name in ("ild", "category_diversity", "personalisation", "novelty", "serendipity"):
            self.add_state(f"sum_{name}", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("lists", "ild_lists", "ild_excluded", "history_lists", "no_history"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("item_counts", default=torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def update(  # type: ignore[override]
        self, scores: Tensor, mask: Tensor, items: Tensor, history: Tensor, history_mask: Tensor
    ) -> None:
        pos, valid = top_k_lists(scores, mask, self.k)
        ids = torch.gather(items.long(), 1, pos).masked_fill(~valid, 0)
        keep = valid.any(1)  # impressions with at least one candidate
        ids, valid = ids[keep], valid[keep]
        hist, hmask = history.long()[keep].masked_fill(~history_mask.bool()[keep], 0), history_mask.bool()[keep]
        cats, hcats = self.item_categories[ids], self.item_categories[hist]
        n, n_hist = valid.sum(1).double(), hmask.sum(1).double()
        multi, has_hist = n > 1, n_hist > 0
        # ILD and serendipity from sums of unit vectors (the functions' identities), summed by
        # embedding_bag without materialising [B, H, d]
        rec_sum = F.embedding_bag(ids, self.item_vectors, per_sample_weights=valid.float(), mode="sum").double()
        hist_sum = F.embedding_bag(hist, self.item_vectors, per_sample_weights=hmask.float(), mode="sum").double()
        sq = (self.unit_norms[ids] * valid).sum(1)  # Σ ‖v̂_i‖² (1 per item, 0 for a zero vector)
        ild = _ild_from_sums(rec_sum, sq, n)
        ser = _serendipity_from_sums(rec_sum, hist_sum, n, n_hist)
        self.sum_ild = self.sum_ild + ild[multi].sum()
        self.sum_category_diversity = (
            self.sum_category_diversity + category_diversity(cats, valid, self.num_categories).sum()
        )
        pers = category_personalisation(cats, valid, hcats, hmask, self.num_categories)
        self.sum_personalisation = self.sum_personalisation + pers[has_hist].sum()
        self.sum_novelty = self.sum_novelty + novelty(ids, valid, self.popularity).sum()
        self.sum_serendipity = self.sum_serendipity + ser[has_hist].sum()
        self.lists = self.lists + len(ids)
        self.ild_lists = self.ild_lists + multi.sum()
        self.ild_excluded = self.ild_excluded + (~multi).sum()
        self.history_lists = self.history_lists + has_hist.sum()
        self.no_history = self.no_history + (~has_hist).sum()
        self.item_counts = self.item_counts + _item_counts(ids, valid, self.num_items)

    def compute(self) -> dict[str, Tensor]:
        catalogue = self.item_counts[self.catalogue_start :]

        def mean(total: Tensor, n: Tensor) -> Tensor:
            return total / n.double() if n > 0 else torch.tensor(0.0, dtype=torch.float64)

        return {
            "ild": mean(self.sum_ild, self.ild_lists),
            "category_diversity": mean(self.sum_category_diversity, self.lists),
            "personalisation": mean(self.sum_personalisation, self.history_lists),
            "novelty": mean(self.sum_novelty, self.lists),
            "serendipity": mean(self.sum_serendipity, self.history_lists),
            "coverage": (catalogue > 0).sum().double() / max(len(catalogue), 1),
            "gini": gini_index(catalogue),
            "lists": self.lists.double(),
            "ild_excluded": self.ild_excluded.double(),
            "no_history": self.no_history.double(),
        }
