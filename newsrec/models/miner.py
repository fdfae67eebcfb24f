"""MINER (Li et al., Findings of ACL 2022): multi-interest matching with poly attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch, as_batch
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import learned_embedding, masked_softmax

__all__ = ["MINER", "PolyAttention", "TargetAwareAttention"]

AGGREGATIONS = ("max", "mean", "weighted")


class PolyAttention(nn.Module):
    r"""Poly attention: ``K`` learnable context codes each pool the clicked news,

    .. math::
        a_{j,i} = \operatorname{softmax}_i\big(\mathbf{c}_j^\top \tanh(\mathbf{W}\mathbf{h}_i) + b_{j,i}\big),
        \qquad \mathbf{v}_j = \sum_i a_{j,i}\,\mathbf{h}_i

    with an optional additive bias :math:`b_{j,i}` (MINER's category-aware term).

    Shapes: ``h [B, H, d]``, ``mask [B, H]``, ``bias [B, *, H]`` or ``None`` → interest
    vectors ``[B, K, d]`` (``[B, *, K, d]`` with a bias), and with ``return_logits`` the
    logits ``[B, K, H]`` instead.
    """

    def __init__(self, in_dim: int, num_codes: int = 32, code_dim: int = 200) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, code_dim, bias=False)
        self.codes = nn.Parameter(torch.empty(num_codes, code_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # as the reference (newsreclib): PyTorch's Linear default, codes Glorot with tanh's gain
        self.proj.reset_parameters()
        nn.init.xavier_uniform_(self.codes, gain=nn.init.calculate_gain("tanh"))

    def logits(self, h: Tensor) -> Tensor:
        return torch.einsum("kc,bhc->bkh", self.codes, torch.tanh(self.proj(h)))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        weights = masked_softmax(self.logits(h), mask.unsqueeze(1))
        return torch.einsum("bkh,bhd->bkd", weights, h)


class TargetAwareAttention(nn.Module):
    r"""MINER's target-aware attention over the ``K`` interest·candidate products (the
    reference implementations', newsreclib's ``TargetAwareAttention``):

    .. math::
        w_j = \operatorname{softmax}_j\big(\mathbf{c}^\top \operatorname{GELU}(\mathbf{W}\mathbf{v}_j)\big),
        \qquad s = \sum_j w_j\, y_j

    Shapes: ``interests [..., K, d]``, ``candidates [..., d]``, ``products [..., K]`` → ``[...]``
    (``interests`` broadcast over the candidate dimensions of ``products``).
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, in_dim, bias=False)

    def reset_parameters(self) -> None:
        self.proj.reset_parameters()

    def forward(self, interests: Tensor, candidates: Tensor, products: Tensor) -> Tensor:
        logits = torch.einsum("...kd,...d->...k", F.gelu(self.proj(interests)), candidates)
        return (torch.softmax(logits, -1) * products).sum(-1)


class MINER(NewsRecModel):
    r"""MINER: ``K`` interest vectors from poly attention over the clicked news; a candidate is
    matched with each and the ``K`` products are aggregated.

    .. math::
        y_j = \mathbf{v}_j^\top \mathbf{c}, \qquad
        s = \max_j y_j \ \big|\ \tfrac{1}{K}\sum_j y_j \ \big|\ \sum_j \operatorname{softmax}_j\big(\mathbf{c}^\top
        \operatorname{GELU}(\mathbf{W}\mathbf{v}_j)\big)\, y_j,
        \qquad \mathcal{L} = \mathcal{L}_{\text{rank}} + \beta\,
        \tfrac{1}{K^2}\sum_{j, j'} \cos(\mathbf{v}_j, \mathbf{v}_{j'})

    (``aggregation`` max, mean or weighted, the last the target-aware attention of the open
    implementations, :class:`TargetAwareAttention`; the disagreement regularisation with ``beta``
    keeps the interests apart). With ``category_aware=True`` each attention logit adds
    :math:`\lambda \cos(\mathbf{e}_{cat(i)}, \mathbf{e}_{cat(c)})`, per candidate as the paper
    describes it: the interests then depend on the candidate, so the model is **not cacheable**
    (evaluation and serving run the plain forward, exact); the products are
    :math:`y_j = \sum_i a_{j,i}(c)\,(\mathbf{h}_i^\top\mathbf{c})` and, for ``"weighted"``, the
    candidate's interests ``[B, C, K, d]`` are built a few candidates at a time. Without it (the
    class default, so that MINER stays cacheable) its user state is the ``K`` vectors
    (``user_is_vector = False``: serving scores every news from them);
    ``configs/miner_mind_small.yaml`` turns the term on, as the paper and the reference
    implementation (newsreclib's ``use_categ_bias``) do. The paper's news encoder is a PLM
    (``news_encoder: plm``); with GloVe it is newsrec's title encoder.

    Differences from the reference (newsreclib), kept deliberately: padded clicks are masked
    (it fills their logits with ``1e-30``, which leaves them in the softmax); the category term
    is per candidate (it averages the similarity over every candidate of the batch, other users'
    included, so a user's interests depend on the other rows); the category table is learned
    from small rows (it loads category-name vectors); the disagreement's weight ``beta`` is 0.8
    (it adds the term with weight 1).

    Args:
        num_codes: ``K`` (32).
        code_dim: the context codes' size (200).
        aggregation: ``"max"``, ``"mean"`` or ``"weighted"`` (default).
        category_aware: add the category similarity to the attention logits (False).
        category_dim: category embedding size for it (100; the table starts ±0.05);
            ``category_weight`` :math:`\lambda` (1.0).
        beta: the disagreement regularisation's weight (0.8).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]`` → news ``[U, d]``; users ``[B_u, K, d]``; scores ``[B, C]``.
    """

    user_is_vector = False

    def __init__(
        self,
        num_codes: int = 32,
        code_dim: int = 200,
        aggregation: str = "weighted",
        category_aware: bool = False,
        category_dim: int = 100,
        category_weight: float = 1.0,
        beta: float = 0.8,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if num_codes < 1:
            raise ValueError(f"num_codes must be ≥ 1, got {num_codes}")
        self.aggregation, self.category_aware, self.beta = aggregation, category_aware, beta
        self.category_weight = category_weight
        self.cacheable = not category_aware
        self.news_encoder = self.text_encoder()
        self.poly_attention = PolyAttention(self.dim, num_codes, code_dim)
        self.target_attention = TargetAwareAttention(self.dim) if aggregation == "weighted" else None
        self.category_embedding = learned_embedding(self.num_categories, category_dim) if category_aware else None
        self._disagreement: Tensor | None = None

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"),) + (("category",) if self.category_aware else ())
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        interests = self.poly_attention(gather_rows(history_news, batch["history"]), batch["history_mask"])
        if self.training:
            self._disagreement = self.disagreement(interests)
        return interests

    @staticmethod
    def disagreement(interests: Tensor) -> Tensor:
        """The mean pairwise cosine of each user's ``K`` interests, averaged over users: ``[B, K, d] → []``."""
        unit = F.normalize(interests, dim=-1)
        return torch.einsum("bkd,bjd->bkj", unit, unit).mean()

    def aggregate(self, products: Tensor, interests: Tensor | None = None, candidates: Tensor | None = None) -> Tensor:
        """``products [..., K] → [...]``: their max, mean, or the target-aware weighted sum
        (which reads ``interests [..., K, d]`` and ``candidates [..., d]``)."""
        if self.aggregation == "max":
            return products.amax(-1)
        if self.aggregation == "mean":
            return products.mean(-1)
        return self.target_attention(interests, candidates, products)

    def score(self, users: Tensor, candidates: Tensor) -> Tensor:
        """``users [B, K, d]``, ``candidates [B, C, d]`` → ``[B, C]``."""
        products = torch.einsum("bkd,bcd->bck", users, candidates)
        return self.aggregate(products, users.unsqueeze(1), candidates)

    def forward(self, batch: NewsBatch) -> Tensor:
        if not self.category_aware:
            return super().forward(batch)
        batch = as_batch(batch)
        news = self.encode_news(batch["news"])  # [U, d]
        history, mask = batch["history"], batch["history_mask"]
        clicked = gather_rows(news, history)  # [B_u, H, d]
        logits = self.poly_attention.logits(clicked).index_select(0, batch["user_index"])  # [B, K, H]
        clicked = clicked.index_select(0, batch["user_index"])
        mask = mask.index_select(0, batch["user_index"])
        categories = F.normalize(self.category_embedding(batch["news"]["category"]), dim=-1)  # [U, e]
        similarity = torch.einsum(
            "bhe,bce->bch", gather_rows(categories, history).index_select(0, batch["user_index"]),
            gather_rows(categories, batch["candidates"]),
        )  # fmt: skip
        weights = masked_softmax(
            logits.unsqueeze(1) + self.category_weight * similarity.unsqueeze(2), mask[:, None, None, :]
        )  # [B, C, K, H]
        candidates = gather_rows(news, batch["candidates"])  # [B, C, d]
        matched = torch.einsum("bhd,bcd->bch", clicked, candidates)
        products = torch.einsum("bckh,bch->bck", weights, matched)
        if self.training:
            interests = torch.einsum("bckh,bhd->bckd", weights[:, :1], clicked)[:, 0]  # the clicked candidate's
            self._disagreement = self.disagreement(interests)
        if self.aggregation != "weighted":
            return self.aggregate(products)
        step = 16  # each candidate has its own K interests: [B, step, K, d] at a time
        return torch.cat([
            self.aggregate(products[:, i : i + step], torch.einsum("bckh,bhd->bckd", weights[:, i : i + step], clicked),
                           candidates[:, i : i + step])
            for i in range(0, max(candidates.shape[1], 1), step)
        ], 1)  # fmt: skip

    def training_loss(self, batch: NewsBatch, batch_idx: int = 0) -> Tensor:
        """The ranking loss plus ``beta`` × the disagreement of the batch's interests."""
        self._disagreement = None
        loss = super().training_loss(batch, batch_idx)
        if self.beta and self._disagreement is not None:
            loss = loss + self.beta * self._disagreement
        self._disagreement = None
        return loss
