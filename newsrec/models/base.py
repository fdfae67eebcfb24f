"""NewsRecModel: the protocol, the loss and cached evaluation/prediction; nothing else.

What is about a *run* lives elsewhere: the optimiser and schedule in
:mod:`newsrec.training.optim`, reseeding, loader restore, the LR-plan check and DDP teardown in
the callbacks of :mod:`newsrec.training` (``training_callbacks()``), the text-encoder choice in
:class:`newsrec.nn.TextEncoderFactory`.
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.core import DATA_SIZE_ARGUMENTS, DataRequirements, ModelInputs, NewsBatch, as_batch
from newsrec.models.evaluation import EvaluationMixin, NewsCache
from newsrec.models.optimization import OptimizerMixin
from newsrec.models.sizes import DataSizesMixin
from newsrec.nn import TextEncoderFactory
from newsrec.nn.embedding import copy_pretrained_
from newsrec.utils import release_freed_memory

__all__ = ["NewsCache", "NewsRecModel", "gather_rows"]


def gather_rows(vectors: Tensor, index: Tensor) -> Tensor:
    """``vectors[index]`` for any index shape: ``[U, *f]`` and ``[...]`` → ``[..., *f]``."""
    return vectors.index_select(0, index.reshape(-1)).reshape(*index.shape, *vectors.shape[1:])


class NewsRecModel(DataSizesMixin, OptimizerMixin, EvaluationMixin, pl.LightningModule):
    """Base class of every newsrec model.

    **The protocol** a model implements (its file holds nothing else):

    - ``encode_news(news, history_news=None) -> [U, d]``: candidate-side vectors of the news whose
      features are in ``news`` (``{field: [U, ...]}``);
    - ``encode_history_news(news) -> [U, d_h]``: what the user side consumes per news (default:
      ``encode_news``; :attr:`history_is_candidate`);
    - ``encode_users(batch, history_news) -> [B_u, ...]``: the user state of every distinct
      history of the batch (a ``[B_u, d]`` vector for a :attr:`cacheable` model);
    - ``score(users [B, ...], candidates [B, C, d]) -> [B, C]`` (dot product by default);
    - ``data_requirements() -> DataRequirements``; ``pretrained_embeddings()``.

    **One scoring path.** :meth:`score_candidates` (``score`` plus the model's candidate-aware
    terms that read the batch: GLORY's click-graph term) is what training, cached evaluation and
    serving all call: :meth:`forward` = :meth:`batch_news` → ``encode_users`` →
    :meth:`score_candidates`. In evaluation every news is encoded once (:meth:`cached_news`) and
    identical histories once per batch. A model whose user state depends on the candidate, or
    whose news vectors depend on the user, sets ``cacheable = False``: evaluation then runs the
    plain forward on every batch and serving scores candidates through ``forward`` (exact, only
    slower). Nothing a user's scores depend on comes from another row of the batch.

    **The handshake**: :meth:`connect_data` (``dm.configure(model.data_requirements())``, then
    :meth:`attach_data` with ``dm.model_inputs()``), before ``trainer.fit`` or a plain loop.

    Every model takes these arguments through ``**kwargs`` (``None``: the model's
    :attr:`base_defaults`): the data's sizes ``num_words``, ``num_entity_ids``,
    ``num_categories``, ``num_subcategories``, ``num_users``, ``num_news`` (linked from the data); ``word_dim`` (300),
    ``num_heads`` × ``head_dim`` (20 × 20 = the model size ``dim``), ``attention_hidden`` (200),
    ``dropout`` (0.2), ``length_buckets``, ``pretrained_words``, ``freeze_words``; the
    optimiser's ``lr``, ``warmup_fraction``, ``lr_schedule`` (``"linear"`` | ``"constant"``),
    ``weight_decay``, ``amsgrad``, ``plm_lr`` (:class:`~newsrec.models.optimization.OptimizerMixin`); ``gradient_check``
    (a non-finite loss is an error); ``news_batch_size`` (news per chunk when encoding every
    news); ``beyond_accuracy`` (``"test"`` | ``"all"`` | ``"off"``) and ``beyond_accuracy_k``
    (:class:`~newsrec.models.evaluation.EvaluationMixin`); ``news_encoder`` (``"glove"`` |
    ``"plm"``) and the ``plm_*`` options (:class:`~newsrec.nn.TextEncoderFactory`).
    """

    #: True when ``encode_history_news`` equals ``encode_news`` (computed once per batch)
    history_is_candidate: bool = True
    #: the user state is independent of the candidate and the news vectors of the user, so
    #: every news is encoded once per evaluation and serving can search a vector index
    cacheable: bool = True
    #: the user state is one ``[d]`` vector per user whose dot product with a news vector is the
    #: score (up to :meth:`rescore_rows`): serving may search a vector index; else it scores all
    user_is_vector: bool = True
    #: the data's sizes every model accepts
    data_size_arguments = DATA_SIZE_ARGUMENTS
    #: the model's defaults for the arguments given as ``None``
    base_defaults: dict = {"lr": 1e-4, "warmup_fraction": 0.1, "lr_schedule": "linear"}

    def __init__(
        self,
        num_words: int = 2,
        num_entity_ids: int = 2,
        num_categories: int = 2,
        num_subcategories: int = 2,
        num_users: int = 1,
        num_news: int = 1,
        word_dim: int = 300,
        num_heads: int = 20,
        head_dim: int = 20,
        attention_hidden: int = 200,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        pretrained_words: bool = True,
        freeze_words: bool = False,
        lr: float | None = None,
        warmup_fraction: float | None = None,
        lr_schedule: str | None = None,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        gradient_check: bool = True,
        news_batch_size: int = 1024,
        beyond_accuracy: str = "test",
        beyond_accuracy_k: int = 10,
        news_encoder: str = "glove",
        plm_path: str | None = None,
        plm_pooling: str = "cls",
        plm_trainable_layers: int = -1,
        plm_max_length: int = 32,
        plm_gradient_checkpointing: bool = False,
        plm_lr: float | None = None,
    ) -> None:
        super().__init__()
        self._init_evaluation(beyond_accuracy, beyond_accuracy_k)
        defaults = {**NewsRecModel.base_defaults, **type(self).base_defaults}
        self._init_optimizer(defaults, lr, warmup_fraction, lr_schedule, weight_decay, amsgrad, plm_lr)
        self.gradient_check = gradient_check
        self.transition_scorer: nn.Module | None = None  # a TransitionScorer's term, added by score_candidates
        self._inputs: ModelInputs | None = None  # from attach_data: the handshake's data half
        self.num_words, self.num_entity_ids, self.news_batch_size = num_words, num_entity_ids, news_batch_size
        self.num_categories, self.num_subcategories = num_categories, num_subcategories
        self.num_users, self.num_news = num_users, num_news
        self.word_dim, self.num_heads, self.head_dim = word_dim, num_heads, head_dim
        self.attention_hidden, self.dropout_rate, self.length_buckets = attention_hidden, dropout, length_buckets
        self.dim = num_heads * head_dim
        self.text_encoders = TextEncoderFactory(
            news_encoder, num_words=num_words, word_dim=word_dim, out_dim=self.dim, num_heads=num_heads,
            head_dim=head_dim, hidden_dim=attention_hidden, dropout=dropout, length_buckets=length_buckets,
            freeze_words=freeze_words, plm_path=plm_path, plm_pooling=plm_pooling,
            plm_trainable_layers=plm_trainable_layers, plm_max_length=plm_max_length,
            plm_gradient_checkpointing=plm_gradient_checkpointing,
        )  # fmt: skip
        self.pretrained_words = pretrained_words and news_encoder == "glove"
        #: the word table of the GloVe text encoders (``None`` with ``news_encoder="plm"``)
        self.word_embedding: nn.Embedding | None = self.text_encoders.word_embedding

    # -- protocol ---------------------------------------------------------------------------------
    def data_requirements(self) -> DataRequirements:
        return DataRequirements()

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def encode_history_news(self, news: dict[str, Tensor]) -> Tensor:
        return self.encode_news(news)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        raise NotImplementedError

    def encode_batch_news(self, batch: dict) -> Tensor:
        """History-side vectors of every news of a batch (``[U, d_h]``); a model may serve some
        rows from a cache of its own (GLORY's approximate mode)."""
        return self.encode_history_news(batch["news"])

    def score(self, users: Tensor, candidates: Tensor) -> Tensor:
        """Dot products: ``users [B, d]``, ``candidates [B, C, d]`` → ``[B, C]``."""
        return torch.einsum("bd,bcd->bc", users, candidates)

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        """Tables initialised from the data's pretrained matrices, by kind (``"words"``,
        ``"entities"``); a model adds its own."""
        return {"words": [self.word_embedding]} if self.pretrained_words else {}

    # -- the text encoder choice (TextEncoderFactory) ------------------------------------------------
    def text_encoder(self, **glove_options) -> nn.Module:
        """A new title/abstract encoder (``[U, L] → [U, dim]``) of the configured kind
        (``glove_options``: :class:`~newsrec.nn.TextEncoder`'s ``layer_norm``, ``key_bias``,
        ``score_bias``)."""
        return self.text_encoders(**glove_options)

    def text_field(self, text: str) -> str:
        """The news field the text encoders read for ``text`` (``title`` or ``plm_title``, …)."""
        return self.text_encoders.field(text)

    def text_tokenizer(self) -> dict | None:
        """``DataRequirements.text_tokenizer`` of the text encoders (``None`` for GloVe)."""
        return self.text_encoders.tokenizer()

    # -- the handshake (connect_data, from_data: newsrec.models.sizes) -----------------------------
    def attach_data(self, inputs: ModelInputs, *, init_pretrained: bool = False) -> None:
        """Keep the data's :class:`~newsrec.core.ModelInputs`; ``init_pretrained``: copy its
        pretrained matrices into :meth:`pretrained_embeddings`."""
        self._inputs = inputs
        if init_pretrained:
            for kind, tables in self.pretrained_embeddings().items():
                source = inputs.pretrained.get(kind)
                vectors = source() if source is not None else None
                for table in tables if vectors is not None else ():
                    copy_pretrained_(table, vectors, name=f"pretrained {kind} vectors")

    def setup(self, stage: str) -> None:
        if stage == "fit" and self._inputs is None and any(self.pretrained_embeddings().values()):
            warnings.warn(
                f"{type(self).__name__} was not connected to its data, so its embeddings are not initialised from "
                "the pretrained vectors: call model.connect_data(dm) before trainer.fit(model, dm)",
                UserWarning,
                stacklevel=2,
            )

    # -- the one scoring path ----------------------------------------------------------------------
    def batch_news(self, batch: NewsBatch) -> tuple[Tensor, Tensor, Tensor]:
        """``(history_news [U, d_h], candidate_news [U', d], candidate_index [B, C])``: from the
        news cache in use (:meth:`cached_news`; not in training), else encoded."""
        if self._news_cache is not None and not self.training:
            rows = batch["news_rows"]
            cache = self._news_cache
            return cache.history.index_select(0, rows), cache.candidate.index_select(0, rows), batch["candidates"]
        history_news = self.encode_batch_news(batch)
        if self.history_is_candidate:
            return history_news, history_news, batch["candidates"]
        used, inverse = torch.unique(batch["candidates"], return_inverse=True)
        sub = {k: v.index_select(0, used) for k, v in batch["news"].items()}
        return history_news, self.encode_news(sub, history_news.index_select(0, used)), inverse

    def score_candidates(self, users: Tensor, candidates: Tensor, batch: NewsBatch) -> Tensor:
        """Scores ``[B, C]``: :meth:`score` of ``users [B, ...]`` and ``candidates [B, C, d]`` plus
        the terms that read the batch (:attr:`transition_scorer` over ``transition_features``)."""
        scores = self.score(users, candidates)
        if self.transition_scorer is None:
            return scores
        if "transition_features" not in batch:
            raise ValueError(
                f"{type(self).__name__} has a transition scorer but the batch carries no transition_features: "
                "configure the data with the model's requirements (model.connect_data(dm))"
            )
        term = self.transition_scorer(batch["transition_features"], batch["transition_mask"])
        return scores + term.to(scores.dtype)

    def rescore_rows(self, batch: NewsBatch) -> list[Tensor] | None:
        """Per user of a history-only batch, the rows whose score may differ from ``score`` of the
        vectors, which a vector search must re-score (``None``: none). With a transition scorer:
        ``batch["transition_neighbors"]`` (every other candidate's term is exactly 0), and with a
        fresh-aware scorer also ``batch["transition_silent"]`` (the news its own term is for)."""
        if self.transition_scorer is None:
            return None
        if not getattr(self.transition_scorer, "fresh_aware", False):
            return batch["transition_neighbors"]
        return [torch.unique(torch.cat([r, batch["transition_silent"]])) for r in batch["transition_neighbors"]]

    def forward(self, batch: NewsBatch) -> Tensor:
        """Scores ``[B, C]`` of a :class:`~newsrec.core.NewsBatch` (padded candidates too: mask
        them with ``candidate_mask``)."""
        batch = as_batch(batch)
        missing = [f for f in self.data_requirements().news_fields if f not in batch.news]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the news fields {missing}, which the batch lacks: configure the data "
                "with the model's requirements (model.connect_data(dm))"
            )
        history_news, candidate_news, candidate_index = self.batch_news(batch)
        users = self.encode_users(batch, history_news).index_select(0, batch["user_index"])
        return self.score_candidates(users, gather_rows(candidate_news, candidate_index), batch)

    # -- training -----------------------------------------------------------------------------------
    def training_loss(self, batch: NewsBatch, batch_idx: int = 0) -> Tensor:
        """Softmax cross-entropy of the clicked news (column 0) against its ``K`` non-clicked
        candidates (:meth:`training_step`'s loss; callable from a plain loop)."""
        scores = self(batch)
        scores = scores.masked_fill(~batch["candidate_mask"], torch.finfo(scores.dtype).min)
        target = torch.zeros(len(scores), dtype=torch.long, device=scores.device)
        loss = F.cross_entropy(scores.float(), target)
        if self.gradient_check and not torch.isfinite(loss):
            ids = batch["impression_ids"].tolist()
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, batch {batch_idx}; "
                f"impression ids of the batch: {ids[:20]}{' …' if len(ids) > 20 else ''}"
            )
        return loss

    def training_step(self, batch: NewsBatch, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["candidates"]))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Freed memory goes back to the OS in at most 1 % of the time (:func:`~newsrec.utils.release_freed_memory`)."""
        release_freed_memory(max_share=0.01)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The model's class path and the data signature (plain values: ``weights_only`` loads)."""
        checkpoint["newsrec_model"] = f"{type(self).__module__}.{type(self).__qualname__}"
        if self._inputs is not None and self._inputs.signature is not None:
            checkpoint["newsrec_data"] = self._inputs.signature()
