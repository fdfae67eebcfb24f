"""GRU (Okura et al., KDD 2017): the user is the final state of a GRU over the clicked news."""

from __future__ import annotations

from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn.user import last_states

__all__ = ["GRU"]


class GRU(NewsRecModel):
    r"""Embedding-based news recommendation (Okura et al., KDD 2017, Yahoo! JAPAN): a news
    encoder, and a GRU over the clicked news vectors in click order whose final state is the
    user vector; the score is the inner product.

    .. math::
        \mathbf{h}_t = \operatorname{GRU}(\mathbf{n}_t, \mathbf{h}_{t-1}), \qquad
        \mathbf{u} = \mathbf{h}_H, \qquad s = \mathbf{u}^\top \mathbf{c}

    The paper learns news vectors with a denoising autoencoder over article text; here the news
    encoder is newsrec's text encoder of the title (``news_encoder``: GloVe words with
    self-attention and attention pooling, or a PLM), so that GRU differs from NRMS in the user
    model only. An empty history gives the zero user vector. Cacheable.

    Shapes: clicked news ``[B, H, dim]`` with a mask ``[B, H]`` (oldest first, padded at the
    end) → ``[B, dim]``.

    GRU adds nothing to the base arguments (:class:`NewsRecModel`); the GRU's state is the model
    size ``dim`` (``num_heads × head_dim``).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.news_encoder = self.text_encoder()
        self.gru = nn.GRU(self.dim, self.dim, batch_first=True)

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=(self.text_field("title"),), text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        clicked = gather_rows(history_news, batch["history"])  # [B_u, H, d]
        lengths = batch["history_mask"].sum(1)
        states, _ = self.gru(clicked)  # padding follows the clicks: it never reaches an earlier state
        last = last_states(states, lengths)
        return last * (lengths > 0).unsqueeze(-1).to(last.dtype)
