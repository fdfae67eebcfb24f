"""Fastformer as a news recommender (Wu et al., 2021); the class is ``FastformerNR``."""

from __future__ import annotations

from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import AdditiveAttention, Fastformer

__all__ = ["FastformerNR"]

#: the block of each side: the official PyTorch code's, or the bare attention (README, FUM)
BLOCKS = {
    "official": dict(input_norm=True, layer_norm=True, feed_forward=True, output_dense=True, score_bias=True),
    "bare": {},
}


class FastformerNR(NewsRecModel):
    r"""Fastformer for news recommendation: a Fastformer over the title's word vectors, then
    attention pooling, gives the news vector; a Fastformer over the clicked news vectors, then
    attention pooling, gives the user vector; the score is the inner product. Named
    ``FastformerNR`` so that it does not clash with the layer :class:`newsrec.nn.Fastformer`.

    .. math::
        \mathbf{n} = \operatorname{Att}\big(\operatorname{Fastformer}(\mathbf{W}_0\mathbf{E}[t_1..t_L])\big),
        \qquad \mathbf{u} = \operatorname{Att}\big(\operatorname{Fastformer}(\mathbf{n}_1..\mathbf{n}_H)\big),
        \qquad s = \mathbf{u}^\top \mathbf{c}

    Each side is the official PyTorch ``FastformerEncoder`` (``wuch15/Fastformer``,
    ``Fastformer.ipynb``) with ``block="official"`` (default): learned position embeddings
    (``max_positions`` rows, N(0, 0.02²)) added to the input, LayerNorm and dropout, then
    ``num_layers`` = 2 layers, each the Fastformer attention (score layers with bias), the
    self-output dense + dropout + residual LayerNorm and the feed-forward (dense → GELU → dense,
    ``intermediate_dim`` wide; the official config's is the model size), + residual LayerNorm;
    all weights N(0, 0.02²), biases zero. ``block="bare"`` is the README's advice for news
    recommendation (the attention alone: no LayerNorm, position embeddings or feed-forward),
    the form FUM's fine-grained model uses.

    Differences from the official code, kept deliberately: the news side starts from 300-d GloVe
    vectors projected to the model size (the official example learns its word table at the
    model size; MIND's papers use GloVe), with dropout on the word vectors as newsrec's other
    text encoders; padding is masked everywhere (the official code masks it too). The model size
    is the base ``num_heads × head_dim`` (20 × 20 = 400), the heads ``num_heads``; the poolings'
    hidden size is ``attention_hidden`` (the official ``AttentionPooling`` is model-size wide:
    ``configs/fastformer_mind_small.yaml`` sets 400). With ``news_encoder="plm"`` the news side is
    the PLM encoder (as the paper's PLM-empowered form) and the user side stays a Fastformer.
    Cacheable.

    Args:
        num_layers: Fastformer layers on each side (2, the official config).
        block: ``"official"`` (the official PyTorch block, default) or ``"bare"``.
        max_positions: the position tables' size (256, the official config); titles and
            histories longer than it are an error.
        intermediate_dim: the feed-forward width (``None``: the model size, as the official
            config's 256 / 256).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]`` → ``[U, dim]``; clicked news ``[B, H, dim]`` + mask → ``[B, dim]``.
    """

    def __init__(
        self,
        num_layers: int = 2,
        block: str = "official",
        max_positions: int = 256,
        intermediate_dim: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {tuple(BLOCKS)}, got {block!r}")
        dim, hidden, dropout = self.dim, self.attention_hidden, self.dropout_rate
        layer = dict(BLOCKS[block], hidden_dim=intermediate_dim or dim)
        if block == "official":
            layer["max_positions"] = max_positions
        self.plm_news = self.text_encoder() if self.text_encoders.kind == "plm" else None
        if self.plm_news is None:
            self.word_projection = nn.Linear(self.word_dim, dim)
            self.news_fastformer = Fastformer(dim, self.num_heads, num_layers, dropout, **layer)
            self.news_pooling = AdditiveAttention(dim, hidden, score_bias=block == "official")
            self.word_dropout = nn.Dropout(dropout)
        self.user_fastformer = Fastformer(dim, self.num_heads, num_layers, dropout, **layer)
        self.user_pooling = AdditiveAttention(dim, hidden, score_bias=block == "official")

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=(self.text_field("title"),), text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        tokens = news[self.text_field("title")]
        if self.plm_news is not None:
            return self.plm_news(tokens)
        mask = tokens != 0
        x = self.word_projection(self.word_dropout(self.word_embedding(tokens)))
        return self.news_pooling(self.news_fastformer(x, mask), mask)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        mask = batch["history_mask"]
        x = self.user_fastformer(gather_rows(history_news, batch["history"]), mask)
        return self.user_pooling(x, mask)
