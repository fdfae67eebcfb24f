"""NewsRecModel: the one base LightningModule that owns loss, evaluation and prediction."""

from __future__ import annotations

import math
import os
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from newsrec.data.batching import DataRequirements
from newsrec.metrics import BEYOND_ACCURACY_NAMES, BeyondAccuracyMetrics, ImpressionMetrics

__all__ = ["NewsRecModel", "gather_rows"]


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
    - ``data_requirements() -> DataRequirements``.

    The base class turns that into training (softmax cross-entropy over 1 clicked + K
    non-clicked candidates), evaluation (every news encoded once per evaluation, identical
    histories once per batch, whole impressions scored; ``val/auc``, ``val/mrr``,
    ``val/ndcg@5``, ``val/ndcg@10`` and ``test/…``), prediction (per-impression scores) and the
    optimiser (Adam, linear warm-up then linear decay). Nothing a user's scores depend on
    comes from another row of the batch.

    Args:
        lr: Adam learning rate.
        warmup_fraction: fraction of the training steps with linear warm-up (then linear decay
            to zero); ``0`` and ``lr_schedule="constant"`` give a constant rate.
        lr_schedule: ``"linear"`` (warm-up + decay, as GLORY) or ``"constant"``.
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
    """

    #: True when ``encode_history_news`` equals ``encode_news`` (computed once per batch).
    history_is_candidate: bool = True
    #: re-seed torch's generator at every epoch start from (PL_GLOBAL_SEED, epoch), so that runs
    #: resumed from an epoch-end checkpoint are exact (set False to keep one stream)
    reseed_every_epoch: bool = True
    #: vocabulary sizes every model accepts (the CLI links them from the datamodule; a model
    #: ignores those it does not use)
    data_size_arguments = ("num_words", "num_entity_ids", "num_categories", "num_subcategories")

    def __init__(
        self,
        lr: float = 1e-4,
        warmup_fraction: float = 0.1,
        lr_schedule: str = "linear",
        weight_decay: float = 0.0,
        gradient_check: bool = True,
        news_batch_size: int = 1024,
        beyond_accuracy: str = "test",
        beyond_accuracy_k: int = 10,
    ) -> None:
        super().__init__()
        if beyond_accuracy not in ("test", "all", "off"):
            raise ValueError(f"beyond_accuracy must be 'test', 'all' or 'off', got {beyond_accuracy!r}")
        if beyond_accuracy_k < 1:
            raise ValueError(f"beyond_accuracy_k must be >= 1, got {beyond_accuracy_k}")
        self.beyond_accuracy, self.beyond_accuracy_k = beyond_accuracy, beyond_accuracy_k
        self._beyond: BeyondAccuracyMetrics | None = None
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

    # -- pretrained vectors -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Initialise embeddings from the datamodule's pretrained vectors (fit only; a restored
        checkpoint overwrites them afterwards)."""
        if stage != "fit" or self.trainer is None or getattr(self.trainer, "datamodule", None) is None:
            return
        dm = self.trainer.datamodule
        for attr, getter, flag in (
            ("word_embedding", "word_vectors", "pretrained_words"),
            ("entity_embedding", "entity_vectors", "pretrained_entities"),
        ):
            emb = getattr(self, attr, None)
            if emb is None or not getattr(self, flag, False) or not hasattr(dm, getter):
                continue
            vectors = getattr(dm, getter)()
            if vectors is None:
                continue
            if tuple(vectors.shape) != tuple(emb.weight.shape):
                raise ValueError(
                    f"pretrained {getter} have shape {tuple(vectors.shape)} but the model's {attr} is "
                    f"{tuple(emb.weight.shape)}: set the model's dimension to {vectors.shape[1]} "
                    f"(or disable {flag})"
                )
            with torch.no_grad():
                emb.weight.copy_(torch.as_tensor(vectors))
                if emb.padding_idx is not None:
                    emb.weight[emb.padding_idx].zero_()

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> Tensor:
        """Scores ``[B, C]`` of a batch (padded candidates get scores too; mask them)."""
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
                    "configure the data with the model's requirements (dm.configure(model.data_requirements()))"
                )
            scores = scores + self.transition_scorer(batch["transition_features"], batch["transition_mask"]).to(
                scores.dtype
            )
        return scores

    # -- training -------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
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
        self.log("train/loss", loss, prog_bar=True, batch_size=len(scores))
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

    def _build_cache(self) -> None:
        self._cache = None
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "news_dataloader"):
            was_training = self.training
            self.eval()
            self._cache = self.encode_all_news(dm.news_dataloader(self.news_batch_size))
            self.train(was_training)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """At an epoch's first batch, re-seed torch's generator from ``(seed, epoch)`` when
        ``reseed_every_epoch``: the epoch's dropout then depends only on the seed and the epoch
        number (not on what ran before it, e.g. creating the data iterator), so a run resumed
        from an epoch-end checkpoint reproduces the uninterrupted run exactly."""
        if self.reseed_every_epoch and batch_idx == 0:
            seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
            torch.manual_seed((seed * 1_000_003 + self.current_epoch) % (2**63))

    def _build_beyond(self, stage: str) -> None:
        """The beyond-accuracy metric for this evaluation, when ``beyond_accuracy`` asks for it
        and the datamodule can describe its news (``beyond_accuracy_inputs``)."""
        self._beyond = None
        wanted = self.beyond_accuracy == "all" or (self.beyond_accuracy == "test" and stage == "test")
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if wanted and dm is not None and hasattr(dm, "beyond_accuracy_inputs"):
            metric = BeyondAccuracyMetrics(self.beyond_accuracy_k, **dm.beyond_accuracy_inputs()).to(self.device)
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
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant":
            return optimizer
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        if not math.isfinite(total) or total <= 0:
            warnings.warn("unknown number of training steps: using a constant learning rate", stacklevel=2)
            return optimizer
        total = int(total)
        warm = max(int(round(self.warmup_fraction * total)), 0)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(total - warm, 1))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
