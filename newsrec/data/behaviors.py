"""User histories and impressions as flat arrays; training samples and evaluation impressions."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from newsrec.data.mind import iter_behaviors
from newsrec.errors import MissingNewsError

__all__ = ["Behaviors", "TrainingSamples", "ragged_to_padded", "user_vocabulary_index", "MISSING_POLICIES"]

#: What to do with news ids of a behaviors file that the corpus does not know:
#: ``"error"`` (default) raises :class:`MissingNewsError` listing the first ids;
#: ``"drop"`` removes them from histories and candidates (an impression left with no
#: candidate is dropped), counts them and warns.
MISSING_POLICIES = ("error", "drop")


def ragged_to_padded(
    values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, length: int, *, keep: str = "last"
) -> tuple[np.ndarray, np.ndarray]:
    """Gather ragged rows into a padded ``[len(rows), length]`` matrix (pad value 0).

    ``keep="last"`` keeps the last ``length`` items of each row (the most recent clicks),
    ``"first"`` the first ones. Items stay in their original order, left-aligned.

    Returns:
        ``(matrix, lengths)``: int64 ``[R, length]`` and int64 ``[R]``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    start = offsets[rows].astype(np.int64)
    end = offsets[rows + 1].astype(np.int64)
    n = np.minimum(end - start, length)
    if keep == "last":
        start = end - n
    pos = np.arange(length, dtype=np.int64)[None, :]
    mask = pos < n[:, None]
    idx = np.where(mask, start[:, None] + pos, 0)
    out = np.where(mask, values[idx] if len(values) else 0, 0).astype(np.int64)
    return out, n


@dataclass
class Behaviors:
    """The impressions of one split as flat arrays (``I`` impressions).

    Attributes:
        impression_ids: int64 ``[I]``, the file's impression ids.
        users: int32 ``[I]``, index into ``user_ids``.
        user_ids: the distinct user id strings, in first-seen order.
        times: int64 ``[I]``, seconds since the epoch.
        history, history_offsets: corpus rows of each impression's click history, oldest first
            (``history[history_offsets[i]:history_offsets[i+1]]``); full length, truncated only
            when batches are built.
        candidates, candidate_offsets: corpus rows of each impression's candidates, file order.
        labels: int8 ``[total candidates]``; ``-1`` everywhere in an unlabelled (test) file.
        num_missing: news ids the corpus did not know (dropped under the ``"drop"`` policy).
    """

    impression_ids: np.ndarray
    users: np.ndarray
    user_ids: list[str]
    times: np.ndarray
    history: np.ndarray
    history_offsets: np.ndarray
    candidates: np.ndarray
    candidate_offsets: np.ndarray
    labels: np.ndarray
    num_missing: int = 0
    num_dropped_impressions: int = 0

    def __len__(self) -> int:
        return len(self.impression_ids)

    @property
    def has_labels(self) -> bool:
        return len(self.labels) == 0 or bool((self.labels >= 0).all())

    @property
    def num_candidates(self) -> np.ndarray:
        return np.diff(self.candidate_offsets)

    @property
    def history_lengths(self) -> np.ndarray:
        return np.diff(self.history_offsets)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        news_lookup,
        *,
        missing: str = "error",
        block_size: int = 1 << 26,
        show_progress: bool = False,
    ) -> Behaviors:
        """Read ``behaviors.tsv`` block by block (bounded memory) and map news ids to rows.

        Args:
            path: the behaviors file.
            news_lookup: a callable mapping a pyarrow string array of news ids to int32 rows
                (``-1`` = unknown), e.g. :meth:`NewsCorpus.lookup`.
            missing: policy for unknown news ids (:data:`MISSING_POLICIES`).
        """
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("imp", "user", "time", "hist", "hlen", "cand", "clen", "lab")
        }
        user_index: dict[str, int] = {}
        user_ids: list[str] = []
        missing_examples: list[str] = []
        num_missing = 0
        dropped = 0
        for table in iter_behaviors(path, block_size=block_size, show_progress=show_progress):
            hist_ids = pc.list_flatten(table.column("history"))
            cand_ids = pc.list_flatten(table.column("candidates"))
            hist = news_lookup(hist_ids)
            cand = news_lookup(cand_ids)
            hlen = pc.list_value_length(table.column("history")).to_numpy(zero_copy_only=False).astype(np.int64)
            clen = pc.list_value_length(table.column("candidates")).to_numpy(zero_copy_only=False).astype(np.int64)
            labels_col = table.column("labels")
            if labels_col.null_count == len(labels_col):
                lab = np.full(len(cand), -1, dtype=np.int8)
            else:
                lab = pc.list_flatten(labels_col).to_numpy(zero_copy_only=False).astype(np.int8)
            bad_h, bad_c = hist < 0, cand < 0
            if bad_h.any() or bad_c.any():
                n_bad = int(bad_h.sum() + bad_c.sum())
                num_missing += n_bad
                if len(missing_examples) < 5:
                    ex = (
                        pc.filter(hist_ids, pa.array(bad_h)).to_pylist()
                        + pc.filter(cand_ids, pa.array(bad_c)).to_pylist()
                    )
                    missing_examples += [e for e in dict.fromkeys(ex) if e not in missing_examples][
                        : 5 - len(missing_examples)
                    ]
                if missing == "error":
                    continue  # keep counting through the file, raise at the end
                hrow = np.repeat(np.arange(len(hlen)), hlen)
                crow = np.repeat(np.arange(len(clen)), clen)
                hist, hlen = hist[~bad_h], np.bincount(hrow[~bad_h], minlength=len(hlen)).astype(np.int64)
                cand, lab, clen = (
                    cand[~bad_c],
                    lab[~bad_c],
                    np.bincount(crow[~bad_c], minlength=len(clen)).astype(np.int64),
                )
            keep = clen > 0
            users_col = table.column("user_id").to_pylist()
            uidx = np.empty(len(users_col), dtype=np.int32)
            for i, u in enumerate(users_col):
                j = user_index.get(u)
                if j is None:
                    j = user_index[u] = len(user_ids)
                    user_ids.append(u)
                uidx[i] = j
            imp = table.column("impression_id").to_numpy()
            tim = table.column("time").cast(pa.int64()).to_numpy()
            if not keep.all():
                dropped += int((~keep).sum())
                hkeep = np.repeat(keep, hlen)
                hist, hlen = hist[hkeep], hlen[keep]
                clen = clen[keep]
                imp, uidx, tim = imp[keep], uidx[keep], tim[keep]
            parts["imp"].append(imp)
            parts["user"].append(uidx)
            parts["time"].append(tim)
            parts["hist"].append(hist)
            parts["hlen"].append(hlen)
            parts["cand"].append(cand)
            parts["clen"].append(clen)
            parts["lab"].append(lab)
        if num_missing and missing == "error":
            raise MissingNewsError(
                path,
                None,
                f"{num_missing} news id occurrences are not in the news files, e.g. {missing_examples}"
                " (to drop them: --data.missing drop on the command line, missing='drop' in Python)",
            )
        if num_missing:
            warnings.warn(
                f"{path}: dropped {num_missing} unknown news id occurrences (e.g. {missing_examples}) "
                f"and {dropped} impressions left without candidates",
                stacklevel=2,
            )

        def cat(key: str, dtype) -> np.ndarray:
            # release each block list as soon as it is joined: peak memory is one array's copy
            blocks = parts.pop(key)
            return np.concatenate(blocks).astype(dtype, copy=False) if blocks else np.zeros(0, dtype)

        hlen, clen = cat("hlen", np.int64), cat("clen", np.int64)
        return cls(
            impression_ids=cat("imp", np.int64),
            users=cat("user", np.int32),
            user_ids=user_ids,
            times=cat("time", np.int64),
            history=cat("hist", np.int32),
            history_offsets=np.concatenate([[0], np.cumsum(hlen)]).astype(np.int64),
            candidates=cat("cand", np.int32),
            candidate_offsets=np.concatenate([[0], np.cumsum(clen)]).astype(np.int64),
            labels=cat("lab", np.int8),
            num_missing=num_missing,
            num_dropped_impressions=dropped,
        )

    # -- views --------------------------------------------------------------------------------
    def histories(self, rows: np.ndarray, length: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """The most recent ``length`` clicks of impressions ``rows``: padded int64 ``[R, length]``
        (oldest first, pad 0 at the end) and lengths ``[R]``."""
        return ragged_to_padded(self.history, self.history_offsets, rows, length, keep="last")

    def impressions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Whole impressions ``rows``: candidates int64 ``[R, C_max]``, labels int64 ``[R, C_max]``
        (``-1`` = unlabelled), mask bool ``[R, C_max]``; ``C_max`` = the largest of these rows."""
        rows = np.asarray(rows, dtype=np.int64)
        n = (self.candidate_offsets[rows + 1] - self.candidate_offsets[rows]).astype(np.int64)
        width = int(n.max()) if len(n) else 0
        cand, _ = ragged_to_padded(self.candidates, self.candidate_offsets, rows, width, keep="first")
        lab, _ = ragged_to_padded(self.labels.astype(np.int64) + 2, self.candidate_offsets, rows, width, keep="first")
        mask = np.arange(width)[None, :] < n[:, None]
        return cand, np.where(mask, lab - 2, 0), mask

    def user_sequences(self, return_users: bool = False):
        """One click sequence per user — the longest history among the user's impressions, as
        (values, offsets). This is what the global news graph is built from by default.

        With ``return_users=True`` also returns int64 ``[S]``: the user index of each sequence
        (sorted; every user with an impression)."""
        order = np.lexsort((self.history_lengths, self.users))
        last = np.ones(len(order), dtype=bool)
        last[:-1] = self.users[order][1:] != self.users[order][:-1]
        rows = order[last]
        lengths = self.history_lengths[rows]
        starts = self.history_offsets[rows]
        total = int(lengths.sum())
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        values = self.history[np.repeat(starts, lengths) + within] if total else np.zeros(0, np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if return_users:
            return values.astype(np.int64), offsets, self.users[rows].astype(np.int64)
        return values.astype(np.int64), offsets

    def users_in(self, vocabulary: Sequence[str]) -> np.ndarray:
        """int64 ``[I]``: each impression's user as an index of ``vocabulary`` (the training
        split's ``user_ids``) plus one; 0 for a user the vocabulary lacks (a new user)."""
        return user_vocabulary_index(vocabulary, self.user_ids)[self.users]

    def click_counts(self, num_news: int) -> np.ndarray:
        """int64 ``[num_news]``: clicks of every news in this split's impressions plus its
        occurrences in the histories (what popularity counts)."""
        clicks = np.bincount(self.candidates[self.labels == 1], minlength=num_news)
        return clicks + np.bincount(self.history, minlength=num_news)

    # -- persistence ---------------------------------------------------------------------------
    def to_cache(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {
            k: getattr(self, k)
            for k in (
                "impression_ids",
                "users",
                "times",
                "history",
                "history_offsets",
                "candidates",
                "candidate_offsets",
                "labels",
            )
        }
        meta = {
            "user_ids": self.user_ids,
            "num_missing": self.num_missing,
            "num_dropped_impressions": self.num_dropped_impressions,
        }
        return arrays, meta

    @classmethod
    def from_cache(cls, arrays: dict[str, np.ndarray], meta: dict) -> Behaviors:
        return cls(**{k: np.asarray(v) for k, v in arrays.items()}, **meta)


class TrainingSamples:
    """Training samples of a split: one per clicked candidate, with ``K`` non-clicked candidates
    of the same impression drawn afresh every epoch.

    Negatives are drawn without replacement when the impression has at least ``K`` non-clicked
    candidates, with replacement when it has fewer, and a clicked candidate of an impression with
    no non-clicked candidate forms no sample (counted in :attr:`num_skipped`). The draw for an
    epoch depends only on ``(seed, epoch)``.

    Attributes:
        rows: int64 ``[P]``, the impression row of each sample.
        positives: int64 ``[P]``, the clicked news (corpus row) of each sample.
    """

    def __init__(self, behaviors: Behaviors, num_negatives: int = 4, seed: int = 0) -> None:
        if not behaviors.has_labels:
            raise ValueError("training samples need a labelled behaviors file")
        if num_negatives < 1:
            raise ValueError("num_negatives must be at least 1")
        self.k = num_negatives
        self.seed = seed
        b = behaviors
        n = b.num_candidates
        row_of = np.repeat(np.arange(len(b), dtype=np.int64), n)
        neg = b.labels == 0
        pos = b.labels == 1
        self.neg_counts = np.bincount(row_of[neg], minlength=len(b)).astype(np.int64)
        self.neg_offsets = np.concatenate([[0], np.cumsum(self.neg_counts)]).astype(np.int64)
        self.neg_news = b.candidates[neg].astype(np.int64)  # grouped by row, file order
        usable = pos & (self.neg_counts[row_of] > 0)
        self.num_skipped = int(pos.sum() - usable.sum())
        self.rows = row_of[usable]
        self.positives = b.candidates[usable].astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def negatives(self, epoch: int) -> np.ndarray:
        """The ``[P, K]`` negatives (corpus rows) of every sample for ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        k = self.k
        n = self.neg_counts[self.rows]
        start = self.neg_offsets[self.rows]
        choice = np.empty((len(self.rows), k), dtype=np.int64)
        few = n < k  # with replacement
        if few.any():
            choice[few] = (rng.random((few.sum(), k)) * n[few, None]).astype(np.int64)
        mid = (n >= k) & (n <= 4 * k)  # a random permutation prefix
        if mid.any():
            width = int(n[mid].max())
            keys = rng.random((mid.sum(), width))
            keys[np.arange(width)[None, :] >= n[mid, None]] = np.inf
            choice[mid] = np.argsort(keys, axis=1)[:, :k]
        many = n > 4 * k  # rejection: redraw rows with a repeated index
        todo = np.flatnonzero(many)
        while len(todo):
            draw = (rng.random((len(todo), k)) * n[todo, None]).astype(np.int64)
            s = np.sort(draw, axis=1)
            distinct = (s[:, 1:] != s[:, :-1]).all(axis=1)
            choice[todo[distinct]] = draw[distinct]
            todo = todo[~distinct]
        return self.neg_news[start[:, None] + choice]

    def candidates(self, epoch: int) -> torch.Tensor:
        """int64 ``[P, 1 + K]``: the clicked news in column 0, then the ``K`` negatives."""
        return torch.from_numpy(np.concatenate([self.positives[:, None], self.negatives(epoch)], axis=1))


def user_vocabulary_index(vocabulary: Sequence[str], user_ids: Sequence[str]) -> np.ndarray:
    """int64 ``[len(user_ids)]``: the position of each of ``user_ids`` in ``vocabulary`` plus one
    (row 0 of a user-ID table is the unknown user), 0 where ``vocabulary`` lacks it. Vectorised
    (a sort and a binary search), for the million users of MIND-large."""
    known = np.asarray(list(vocabulary), dtype=str)
    asked = np.asarray(list(user_ids), dtype=str)
    if not len(known) or not len(asked):
        return np.zeros(len(asked), np.int64)
    order = np.argsort(known, kind="stable")
    at = np.searchsorted(known[order], asked).clip(0, len(known) - 1)
    found = known[order][at] == asked
    return np.where(found, order[at] + 1, 0).astype(np.int64)
