"""MIND's entities beyond their ids: aligned with the title's words (DKN's word–entity input), and
their position, frequency and type in each news (KRED's context).

MIND gives each title entity its ``OccurrenceOffsets`` (character offsets into the title) and
``SurfaceForms`` (the text at each offset). :func:`align_title_entities` maps every occurrence to
the title's tokens (:func:`~newsrec.data.text.tokenize`, the tokens of the corpus's ``title``
array, in the same order and cut at the same length), so that word ``i`` of a title carries the
id of the entity it belongs to (0: none).

**Policy for an occurrence whose offset does not match its surface form** (a title edited after
annotation, offsets counted differently): the surface form is searched in the title (exactly,
then ignoring case) and its first occurrence used ("relocated"); an occurrence whose surface form
is not in the title at all is left out ("unaligned"), never an index error. Entities without an
id in the corpus's entity vocabulary (no vector) are left out. Where two entities cover one word,
the more confident one (MIND's ``Confidence``) keeps it. :class:`AlignmentReport` counts each
case; the data module warns once when some occurrences were unaligned.
"""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsrec.core.cache import ArrayCache, cache_key, file_fingerprint
from newsrec.core.requirements import TITLE_ENTITY_FIELD
from newsrec.data.text import _TOKEN_RE

__all__ = [
    "AlignmentReport",
    "ENTITY_CONTEXT_FIELDS",
    "MAX_ENTITY_COUNT",
    "MAX_ENTITY_TYPES",
    "TITLE_ENTITY_FIELD",
    "align_title_entities",
    "entity_context",
    "entity_context_arrays",
    "entity_type_id",
    "title_entity_words",
]

#: KRED's entity context fields (:func:`entity_context_arrays`)
ENTITY_CONTEXT_FIELDS = ("entity_positions", "entity_counts", "entity_types")
#: occurrence counts are clipped here
MAX_ENTITY_COUNT = 15
#: entity types numbered (0: none or beyond)
MAX_ENTITY_TYPES = 32


@dataclass
class AlignmentReport:
    """Entity occurrences ``aligned`` at their offset, ``relocated`` by their surface form,
    ``unaligned`` (surface form not in the title), ``no_id`` (entity without an id here)."""

    aligned: int = 0
    relocated: int = 0
    unaligned: int = 0
    no_id: int = 0

    def add(self, other: AlignmentReport) -> None:
        for k in ("aligned", "relocated", "unaligned", "no_id"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def _token_spans(title: str) -> list[tuple[int, int]]:
    """The ``[start, end)`` of every token of :func:`tokenize` (which lower-cases first), in
    offsets of ``title`` itself (lower-casing may change a character's length)."""
    lowered_at = np.concatenate([[0], np.cumsum([len(c.lower()) for c in title])]).astype(np.int64)
    original = np.searchsorted(lowered_at, np.arange(int(lowered_at[-1]) + 1), side="right") - 1
    return [(int(original[m.start()]), int(original[m.end() - 1]) + 1) for m in _TOKEN_RE.finditer(title.lower())]


def align_title_entities(
    title: str, entities_json: str, entity_id: Callable[[str], int | None], length: int
) -> tuple[list[int], AlignmentReport]:
    """Entity id per title token (``length`` of them, 0 = none) and what happened to each
    occurrence (module docstring). ``entity_id`` maps a WikidataId to its id (``None``: none)."""
    spans = _token_spans(title)[:length]
    out = [0] * length
    report = AlignmentReport()
    if not entities_json or entities_json == "[]":
        return out, report
    items = json.loads(entities_json)
    if not isinstance(items, list):
        raise ValueError("entity field is not a JSON list")
    ranked = sorted(
        (it for it in items if isinstance(it, dict)), key=lambda it: -float(it.get("Confidence", 0.0) or 0.0)
    )
    for it in ranked:
        offsets = [o for o in (it.get("OccurrenceOffsets") or []) if isinstance(o, int) and not isinstance(o, bool)]
        forms = [f for f in (it.get("SurfaceForms") or []) if isinstance(f, str) and f]
        if not forms and isinstance(it.get("Label"), str) and it["Label"]:
            forms = [it["Label"]]
        if not forms:
            report.unaligned += max(len(offsets), 1)
            continue
        eid = entity_id(it.get("WikidataId", ""))
        if eid is None:
            report.no_id += max(len(offsets), 1)
            continue
        for k, offset in enumerate(offsets or [None]):
            form = forms[min(k, len(forms) - 1)]
            if offset is not None and title[offset : offset + len(form)] == form:
                start = offset
                report.aligned += 1
            else:
                start = title.find(form)
                if start < 0:
                    start = title.lower().find(form.lower())
                if start < 0:
                    report.unaligned += 1
                    continue
                report.relocated += 1
            end = start + len(form)
            for i, (a, b) in enumerate(spans):
                if a < end and b > start and out[i] == 0:
                    out[i] = eid
    return out, report


def title_entity_words(
    root: str | Path, corpus, news_files: Sequence[Path], *, show_warning: bool = True
) -> np.ndarray:
    """int32 ``[N, title_length]``: :func:`align_title_entities` of every corpus news (row 0 and
    news without entities: zeros), read from the MIND ``news.tsv`` files (the training split's
    first, as the corpus was built) and cached under ``root/processed/`` without pickle."""
    from newsrec.data.mind import read_news

    length = corpus.config.title_length
    key = cache_key("title-entities", [file_fingerprint(p) for p in news_files], length, corpus.news_ids[:50])

    def build() -> tuple[dict, dict]:
        out = np.zeros((len(corpus), length), np.int32)
        done = np.zeros(len(corpus), bool)
        report = AlignmentReport()
        stoi = corpus.entity_vocab.stoi
        for path in news_files:
            table = read_news(path)
            rows = corpus.lookup(table.column("news_id"))
            titles, entities = table.column("title").to_pylist(), table.column("title_entities").to_pylist()
            for r, title, ents in zip(rows.tolist(), titles, entities):
                if r <= 0 or done[r]:
                    continue
                done[r] = True
                try:
                    ids, rep = align_title_entities(title or "", ents or "", stoi.get, length)
                except (ValueError, TypeError):
                    continue  # the corpus build has already refused malformed entity JSON
                out[r] = ids
                report.add(rep)
        return {"ids": out}, {"report": report.__dict__}

    arrays, meta = ArrayCache(Path(root) / "processed").load_or_build("title-entities-" + key, build)
    report = AlignmentReport(**meta["report"])
    if show_warning and report.unaligned:
        warnings.warn(
            f"{report.unaligned} title entity occurrences of {sum(meta['report'].values())} in {root} name a surface "
            "form their title does not contain: they are left out of the word-entity alignment",
            UserWarning,
            stacklevel=2,
        )
    return np.asarray(arrays["ids"])


def entity_type_id(kind: str) -> int:
    """MIND's entity ``Type`` as an id in ``[0, MAX_ENTITY_TYPES)``: a single letter ``A``–``Z``
    is 1–26, any other non-empty type 27–31 (by a stable hash), none 0. Stateless, so that news
    added in serving get the ids the corpus got."""
    if len(kind) == 1 and "A" <= kind <= "Z":
        return ord(kind) - ord("A") + 1
    return 27 + zlib.crc32(kind.encode()) % (MAX_ENTITY_TYPES - 27) if kind else 0


def entity_context(title_entities: str, abstract_entities: str, wikidata_ids: Sequence[str]) -> np.ndarray:
    """int32 ``[3, len(wikidata_ids)]``: the position bits (1 title, 2 abstract), the occurrence
    count (at most :data:`MAX_ENTITY_COUNT`) and the type id of each entity (0 for ``""``) in one
    news' MIND entity fields. Malformed JSON counts as no entities (the corpus build refuses it)."""
    found: dict[str, list] = {}
    for text, bit in ((title_entities, 1), (abstract_entities, 2)):
        try:
            items = json.loads(text) if text and text != "[]" else []
        except ValueError:
            items = []
        for it in items if isinstance(items, list) else ():
            if isinstance(it, dict) and isinstance(it.get("WikidataId"), str):
                got = found.setdefault(it["WikidataId"], [0, 0, str(it.get("Type") or "")])
                got[0] |= bit
                got[1] += len(it.get("OccurrenceOffsets") or [0])
    out = np.zeros((3, len(wikidata_ids)), np.int32)
    for j, wid in enumerate(wikidata_ids):
        if wid in found:
            bits, count, kind = found[wid]
            out[:, j] = (bits, min(count, MAX_ENTITY_COUNT), entity_type_id(kind))
    return out


def entity_context_arrays(root: str | Path, corpus, news_files: Sequence[Path]) -> dict[str, np.ndarray]:
    """KRED's context of every entity in the corpus's ``entities`` array (``[N, E]`` int32 each,
    0 where there is no entity; :func:`entity_context`): ``entity_positions``,
    ``entity_counts``, ``entity_types``. Read from the MIND ``news.tsv`` files (a news' first
    file) and cached under ``root/processed/`` without pickle."""
    from newsrec.data.mind import read_news

    ents = np.asarray(corpus.arrays["entities"])
    key = cache_key("entity-context", [file_fingerprint(p) for p in news_files], ents.shape, corpus.news_ids[:50])

    def build() -> tuple[dict, dict]:
        out = np.zeros((3, *ents.shape), np.int32)
        done = np.zeros(len(corpus), bool)
        itos = corpus.entity_vocab.itos
        for path in news_files:
            table = read_news(path)
            rows = corpus.lookup(table.column("news_id")).tolist()
            columns = zip(
                rows, table.column("title_entities").to_pylist(), table.column("abstract_entities").to_pylist()
            )
            for r, title, abstract in columns:
                if r > 0 and not done[r]:
                    done[r] = True
                    out[:, r] = entity_context(title or "", abstract or "", [itos[e] if e > 0 else "" for e in ents[r]])
        return dict(zip(ENTITY_CONTEXT_FIELDS, out)), {}

    arrays, _ = ArrayCache(Path(root) / "processed").load_or_build("entity-context-" + key, build)
    return {k: np.asarray(arrays[k]) for k in ENTITY_CONTEXT_FIELDS}
