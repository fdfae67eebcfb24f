"""Cached evaluation and prediction of every newsrec model (a part of :class:`NewsRecModel`).

Per evaluation (``validate``, ``test``, ``predict``) every news is encoded once
(:meth:`NewsRecModel.cached_news`), the batches are scored by the model's one scoring path
(``forward``), and :class:`~newsrec.metrics.ImpressionMetrics` (and, when asked,
:class:`~newsrec.metrics.BeyondAccuracyMetrics`) are updated and logged.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from newsrec.metrics import BEYOND_ACCURACY_NAMES, METRIC_NAMES, BeyondAccuracyMetrics, ImpressionMetrics

__all__ = ["BEYOND_ACCURACY_WHEN", "EvaluationMixin", "NewsCache"]

#: when beyond-accuracy metrics are computed
BEYOND_ACCURACY_WHEN = ("test", "all", "off")


@dataclass
class NewsCache:
    """Every news encoded once: candidate-side ``[N, d]`` and history-side ``[N, d_h]`` vectors,
    indexed by corpus row (serving: by its index row)."""

    candidate: Tensor
    history: Tensor


class EvaluationMixin:
    """Lightning's evaluation and prediction hooks over the model's ``forward``; the news cache
    lives for one evaluation. Metrics: ``{val,test}/auc``, ``mrr``, ``ndcg@5``, ``ndcg@10``,
    ``impressions`` and, with ``beyond_accuracy``, ``ild@k``, ``category_diversity@k``,
    ``personalisation@k``, ``novelty@k``, ``serendipity@k``, ``coverage@k``, ``gini@k`` and
    ``ild_excluded@k`` (lists of ≤ 1 item, left out of ``ild``), measured in the datamodule's
    model-independent space (:meth:`MINDDataModule.beyond_accuracy_inputs`)."""

    def _init_evaluation(self, beyond_accuracy: str, beyond_accuracy_k: int) -> None:
        if beyond_accuracy not in BEYOND_ACCURACY_WHEN:
            raise ValueError(f"beyond_accuracy must be one of {BEYOND_ACCURACY_WHEN}, got {beyond_accuracy!r}")
        if beyond_accuracy_k < 1:
            raise ValueError(f"beyond_accuracy_k must be >= 1, got {beyond_accuracy_k}")
        self.beyond_accuracy, self.beyond_accuracy_k = beyond_accuracy, beyond_accuracy_k
        self.val_metrics = ImpressionMetrics()
        self.test_metrics = ImpressionMetrics()
        #: the beyond-accuracy metric of the running evaluation (a submodule only while it runs)
        self.beyond_metrics: BeyondAccuracyMetrics | None = None
        self._news_cache: NewsCache | None = None

    @torch.inference_mode()
    def encode_all_news(self, loader) -> NewsCache:
        """Candidate-side and history-side vectors of every news of ``loader``'s chunks, in eval
        mode (the mode is restored after)."""
        was_training = self.training
        self.eval()
        cands, hists = [], []
        for chunk in loader:
            news = {k: v.to(self.device, non_blocking=True) for k, v in chunk["news"].items()}
            h = self.encode_history_news(news)
            cands.append(h if self.history_is_candidate else self.encode_news(news, h))
            hists.append(h)
        self.train(was_training)
        return NewsCache(torch.cat(cands), torch.cat(hists))

    def news_chunks(self):
        """The attached data's chunks of the whole corpus, or ``None`` (no handshake)."""
        return None if self._inputs is None else self._inputs.news_chunks(self.news_batch_size)

    @contextmanager
    def cached_news(self, cache: NewsCache | None = None):
        """Inside the block, :meth:`batch_news` reads every news vector from ``cache`` (default:
        every news of the attached data, encoded once now). A non-:attr:`cacheable` model, or one
        without attached data and no ``cache``, runs the plain forward instead (same scores)."""
        previous, self._news_cache = self._news_cache, (cache or self._corpus_cache()) if self.cacheable else None
        try:
            yield self._news_cache
        finally:
            self._news_cache = previous

    def _corpus_cache(self) -> NewsCache | None:
        """Every news of the attached data encoded once, for a cacheable model (else ``None``)."""
        return self.encode_all_news(self.news_chunks()) if self.cacheable and self._inputs is not None else None

    def _start_evaluation(self, stage: str) -> None:
        self._news_cache = self._corpus_cache()
        self.beyond_metrics = None
        wanted = self.beyond_accuracy == "all" or (self.beyond_accuracy == "test" and stage == "test")
        source = None if self._inputs is None else self._inputs.beyond_accuracy
        if wanted and source is not None:
            self.beyond_metrics = BeyondAccuracyMetrics(self.beyond_accuracy_k, **source()).to(self.device)

    def _end_evaluation(self, metrics: ImpressionMetrics | None, prefix: str) -> None:
        if metrics is not None:
            values = metrics.compute()
            for name in METRIC_NAMES:
                self.log(f"{prefix}/{name}", values[name].float(), prog_bar=name == "auc", sync_dist=False)
            self.log(f"{prefix}/impressions", values["impressions"].float())
            metrics.reset()
        if self.beyond_metrics is not None:
            beyond = self.beyond_metrics.compute()
            for name in (*BEYOND_ACCURACY_NAMES, "ild_excluded"):
                self.log(f"{prefix}/{name}@{self.beyond_accuracy_k}", beyond[name].float(), sync_dist=False)
            self.beyond_metrics = None
        self._news_cache = None

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("validate")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def on_predict_epoch_start(self) -> None:
        self._start_evaluation("predict")

    def on_validation_epoch_end(self) -> None:
        self._end_evaluation(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._end_evaluation(self.test_metrics, "test")

    def on_predict_epoch_end(self) -> None:
        self._end_evaluation(None, "predict")

    def _eval_step(self, batch: dict, metrics: ImpressionMetrics) -> Tensor:
        scores = self(batch)
        labels = batch["labels"]
        mask = batch["candidate_mask"] & (labels >= 0)
        metrics.update(scores.double(), labels.clamp_min(0), mask=mask)
        if self.beyond_metrics is not None:  # on corpus rows: lists of the candidates, histories of the users
            rows = batch["news_rows"]
            history = batch["history"].index_select(0, batch["user_index"])
            hmask = batch["history_mask"].index_select(0, batch["user_index"])
            self.beyond_metrics.update(scores, batch["candidate_mask"], rows[batch["candidates"]], rows[history], hmask)
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
