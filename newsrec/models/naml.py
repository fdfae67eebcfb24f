"""NAML (Wu et al., IJCAI 2019): attentive multi-view news encoding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import AdditiveAttention, MultiViewCombiner
from newsrec.nn.cnn import CNNTextEncoder
from newsrec.nn.embedding import learned_embedding

__all__ = ["NAML"]

NAML_VIEWS = ("title", "abstract", "category", "subcategory")


class NAML(NewsRecModel):
    r"""NAML: four views of a news (title and body text, category, subcategory), combined by view
    attention; the user is attention pooling over the clicked news; the score is the inner
    product.

    Text views (MIND's abstract stands for the body): word vectors → CNN (``num_filters`` = 400,
    window 3) → word attention (query 200-d). Category views: ID embedding (``category_dim`` =
    100) → dense ReLU to the model size. View attention:

    .. math::
        \alpha_v = \operatorname{softmax}_v\big(\mathbf{q}^\top \tanh(\mathbf{U}\mathbf{r}_v + \mathbf{u})\big),
        \qquad \mathbf{n} = \sum_v \alpha_v \mathbf{r}_v, \qquad
        \mathbf{u} = \operatorname{Att}(\mathbf{n}_1, \dots, \mathbf{n}_H), \qquad s = \mathbf{u}^\top\mathbf{c}

    With ``news_encoder="plm"`` the text views are the PLM encoder (pooling and projection to the
    model size) instead of the CNN. Cacheable.

    Args:
        num_filters: the CNN's filters (400): the model size of NAML. The base ``num_heads ×
            head_dim`` is not used by NAML's encoders (the PLM text views project to it).
        window: the CNN's window (3).
        category_dim: category and subcategory embedding size (100).
        views: the views used (default all four; an ablation may drop some).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: news fields ``title [U, Lt]``, ``abstract [U, La]``, ``category [U]``,
    ``subcategory [U]`` → ``[U, num_filters]``.
    """

    def __init__(
        self,
        num_filters: int = 400,
        window: int = 3,
        category_dim: int = 100,
        views: tuple[str, ...] = NAML_VIEWS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        unknown = set(views) - set(NAML_VIEWS)
        if unknown or not views:
            raise ValueError(f"views must be a non-empty subset of {NAML_VIEWS}, got {views!r}")
        self.views = tuple(views)
        hidden, dropout = self.attention_hidden, self.dropout_rate
        if self.text_encoders.kind == "plm":
            if num_filters != self.dim:
                raise ValueError(f"with news_encoder='plm' num_filters must equal num_heads*head_dim ({self.dim})")
            self.text_views = nn.ModuleDict({v: self.text_encoder() for v in ("title", "abstract") if v in views})
        else:
            self.text_views = nn.ModuleDict(
                {
                    v: CNNTextEncoder(self.word_embedding, num_filters, window, hidden, dropout, self.length_buckets)
                    for v in ("title", "abstract")
                    if v in views
                }
            )
        self.category_views = nn.ModuleDict(
            {
                v: nn.Sequential(learned_embedding(n, category_dim), nn.Linear(category_dim, num_filters), nn.ReLU())
                for v, n in (("category", self.num_categories), ("subcategory", self.num_subcategories))
                if v in views
            }
        )
        self.view_attention = MultiViewCombiner(num_filters, hidden)
        self.user_pooling = AdditiveAttention(num_filters, hidden)

    def data_requirements(self) -> DataRequirements:
        fields = [self.text_field(v) if v in ("title", "abstract") else v for v in self.views]
        return DataRequirements(news_fields=tuple(fields), text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        views = []
        for v in self.views:
            if v in self.text_views:
                views.append(self.text_views[v](news[self.text_field(v)]))
            else:
                views.append(self.category_views[v](news[v]))
        return self.view_attention(torch.stack(views, dim=-2))

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        return self.user_pooling(gather_rows(history_news, batch["history"]), batch["history_mask"])
