"""LibFM (Rendle, 2012): a factorisation machine over the sparse features of a user and a news."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, ModelInputs
from newsrec.core.requirements import ROW_FIELD
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import FeatureField, fm_pairwise

__all__ = ["LibFM"]

#: the fields, by side: (name, the data size that numbers its ids)
USER_FIELDS = (("user", "num_users"), ("clicked_words", "num_words"), ("clicked_categories", "num_categories"))
NEWS_FIELDS = (
    ("news", "num_news"),
    ("category", "num_categories"),
    ("subcategory", "num_subcategories"),
    ("entities", "num_entity_ids"),
    ("title_words", "num_words"),
)


class LibFM(NewsRecModel):
    r"""A factorisation machine (Rendle, *Factorization Machines with libFM*, 2012) over sparse
    features, as the news papers' feature-based baseline:

    .. math::
        \hat{y}(\mathbf{x}) = w_0 + \sum_i w_i x_i + \sum_{i<j} x_i x_j \langle\mathbf{v}_i, \mathbf{v}_j\rangle

    in its O(k·n) form (:class:`~newsrec.nn.FeatureField`). The features, one field each:

    - user side: the user ID (the training users; 0 for a new user), the TF-IDF weighted title
      words of the clicked news (each click's term frequencies × IDF, averaged over the clicks),
      and the categories of the clicked news (each weighted by its share of the clicks);
    - news side: the news ID (the corpus rows; a news added later counts as no ID), category,
      subcategory, entities (weight 1 each) and the TF-IDF weighted title words.

    The IDF comes from the training split's news titles only (``ModelInputs.word_idf``, set by
    :meth:`attach_data` and kept in the checkpoint as the buffer ``idf``; plain term
    frequencies before that). Because every pairwise term between a user feature and a news
    feature is :math:`\mathbf{s}_u^\top\mathbf{s}_n`, the score splits exactly into a user vector
    :math:`[\mathbf{s}_u; 1; w_0 + l_u + p_u]` and a news vector :math:`[\mathbf{s}_n; l_n + p_n; 1]`
    (:math:`l` the linear and :math:`p` the within-side pairwise terms): the model is cacheable
    and served by a vector search.

    Args:
        factor_dim: ``k`` (10).
        **kwargs: the :class:`NewsRecModel` arguments (``num_users`` and ``num_news`` among the
            data sizes; the text-encoder arguments are not used).

    Shapes: news fields ``title [U, L]``, ``category [U]``, ``subcategory [U]``, ``entities
    [U, E]`` → news ``[U, k + 2]``; users ``[B_u, k + 2]``.
    """

    def __init__(self, factor_dim: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.word_embedding = None  # no text encoder: the words are sparse features
        self.factor_dim = factor_dim
        self.fields = nn.ModuleDict(
            {name: FeatureField(getattr(self, size), factor_dim) for name, size in USER_FIELDS + NEWS_FIELDS}
        )
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("idf", torch.ones(max(self.num_words, 1)))

    def data_requirements(self) -> DataRequirements:
        fields = ("title", "category", "subcategory", "entities", ROW_FIELD)
        return DataRequirements(news_fields=fields, user_ids=True)

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        return {}

    def attach_data(self, inputs: ModelInputs, *, init_pretrained: bool = False) -> None:
        """Also take the training split's word IDF (:attr:`ModelInputs.word_idf`)."""
        super().attach_data(inputs, init_pretrained=init_pretrained)
        if init_pretrained and inputs.word_idf is not None:
            idf = torch.as_tensor(inputs.word_idf(), dtype=self.idf.dtype)
            if idf.shape != self.idf.shape:
                raise ValueError(f"word_idf has {len(idf)} entries, the model {len(self.idf)} words: rebuild the model")
            self.idf.copy_(idf)

    def tfidf(self, tokens: Tensor) -> Tensor:
        """``[..., L] → [..., L]``: each token's term-frequency × IDF weight within its title."""
        real = (tokens != 0).to(self.idf.dtype)
        idf = self.idf[tokens.clamp(0, len(self.idf) - 1)] * real
        return idf / real.sum(-1, keepdim=True).clamp_min(1)

    def news_fields(self, news: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Each news-side field's sums ``(s [U, k], q [U, k], l [U])`` (:class:`FeatureField`)."""
        title = news["title"]
        ids = {
            "news": news[ROW_FIELD][:, None],
            "category": news["category"][:, None],
            "subcategory": news["subcategory"][:, None],
            "entities": news["entities"],
        }
        out = {name: self.fields[name](value) for name, value in ids.items()}
        out["title_words"] = self.fields["title_words"](title, self.tfidf(title))
        return out

    def user_fields(self, batch: dict) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Each user-side field's sums for the batch's distinct histories (``[B_u, ...]``)."""
        history, mask = batch["history"], batch["history_mask"]
        clicks = mask.sum(-1, keepdim=True).clamp_min(1).to(self.idf.dtype)  # [B_u, 1]
        words = gather_rows(batch["news"]["title"], history)  # [B_u, H, L]
        word_weights = self.tfidf(words) * mask.unsqueeze(-1).to(self.idf.dtype) / clicks.unsqueeze(-1)
        categories = gather_rows(batch["news"]["category"], history)
        return {
            "user": self.fields["user"](batch["history_users"][:, None]),
            "clicked_words": self.fields["clicked_words"](words.flatten(1), word_weights.flatten(1)),
            "clicked_categories": self.fields["clicked_categories"](categories, mask.to(self.idf.dtype) / clicks),
        }

    @staticmethod
    def side_terms(fields: dict[str, tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """``(s [..., k], linear + within-side pairwise [...])`` of one side's fields."""
        s = sum(f[0] for f in fields.values())
        q = sum(f[1] for f in fields.values())
        return s, sum(f[2] for f in fields.values()) + fm_pairwise(s, q)

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        s, own = self.side_terms(self.news_fields(news))
        return torch.cat([s, own.unsqueeze(-1), torch.ones_like(own).unsqueeze(-1)], -1)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        s, own = self.side_terms(self.user_fields(batch))
        return torch.cat([s, torch.ones_like(own).unsqueeze(-1), (own + self.bias).unsqueeze(-1)], -1)
