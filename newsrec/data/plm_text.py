"""News texts tokenised for a pre-trained language model, cached with the corpus.

A model with ``news_encoder: plm`` asks for the news fields ``plm_title`` (and FUM
``plm_abstract``) and names its tokenizer in :attr:`DataRequirements.text_tokenizer
<newsrec.core.DataRequirements>`. The data side then tokenises every news text once with the
fast (Rust) tokenizer in batches and caches the ids under ``root/processed/`` as ``.npy`` files
with a manifest, keyed by the tokenizer's identity (a hash of its full definition, not its
name), the maximum length and the news files: changing any of them rebuilds the cache, and
nothing is pickled.

Stored ids are **the tokenizer's ids + 1, with 0 = padding**, newsrec's convention for every
token field, so that the batch code, the padding news (row 0: all zeros) and
:class:`~newsrec.nn.PretrainedTextEncoder` treat them like word ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from newsrec.core.cache import ArrayCache, cache_key, file_fingerprint
from newsrec.core.pretrained import PretrainedModelError, hub_hint, require_transformers, resolve_pretrained
from newsrec.data.corpus import NewsCorpus
from newsrec.data.mind import read_news
from newsrec.data.prepare import split_files
from newsrec.utils import progress

__all__ = [
    "PLM_FIELD_PREFIX",
    "PLM_TEXT_FIELDS",
    "load_tokenizer",
    "tokenizer_identity",
    "tokenize_texts",
    "corpus_texts",
    "load_plm_tokens",
    "plm_token_arrays",
]

#: a news field ``plm_<text>`` holds ``<text>`` tokenised for the model's PLM
PLM_FIELD_PREFIX = "plm_"
#: the texts that can be tokenised for a PLM
PLM_TEXT_FIELDS = ("title", "abstract")

_TOKENIZERS: dict[str, object] = {}


def load_tokenizer(spec: str | os.PathLike):
    """The fast tokenizer of a PLM (a folder, ``package:NAME/SUB`` or a hub name; see
    :func:`newsrec.core.pretrained.resolve_pretrained`), loaded once per process."""
    path = resolve_pretrained(spec)
    if path not in _TOKENIZERS:
        transformers = require_transformers("PLM tokenisation")
        try:
            tok = transformers.AutoTokenizer.from_pretrained(path, use_fast=True)
        except (OSError, ValueError) as e:
            hint = "" if os.path.exists(path) else " " + hub_hint(path)
            raise PretrainedModelError(f"could not load the tokenizer of {os.fspath(spec)!r}: {e}.{hint}") from None
        _TOKENIZERS[path] = tok
    return _TOKENIZERS[path]


def tokenizer_identity(tokenizer) -> dict:
    """What the cached ids depend on: the tokenizer's class and a SHA-256 of its whole
    definition (the fast tokenizer's JSON: vocabulary, normaliser, pre-tokeniser, special
    tokens; not the padding and truncation state, which each call sets), so that two tokenizers
    with one name but other vocabularies never share a cache."""
    if getattr(tokenizer, "is_fast", False):
        definition = json.loads(tokenizer.backend_tokenizer.to_str())
        # the padding and truncation state changes with every call's arguments: not the identity
        definition.pop("padding", None)
        definition.pop("truncation", None)
        blob = json.dumps(definition, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary and special tokens
        blob = json.dumps([sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens])
    return {"class": type(tokenizer).__name__, "sha256": hashlib.sha256(blob.encode()).hexdigest()}


def tokenize_texts(
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    *,
    batch_size: int = 4096,
    show_progress: bool = False,
) -> np.ndarray:
    """``[len(texts), max_length]`` int32: each text's ids (special tokens included, truncated
    to ``max_length``) **plus one**, 0 = padding. ``None`` texts count as empty (an empty text
    still gets its special tokens, e.g. ``[CLS] [SEP]``)."""
    if max_length < 2:
        raise ValueError(f"plm_max_length must be >= 2 (room for the special tokens), got {max_length}")
    out = np.zeros((len(texts), max_length), dtype=np.int32)
    starts = range(0, len(texts), batch_size)
    for start in progress(starts, desc="tokenising", disable=not show_progress or len(texts) <= batch_size):
        chunk = [t or "" for t in texts[start : start + batch_size]]
        enc = tokenizer(
            chunk,
            max_length=max_length,
            truncation=True,
            padding="max_length",
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="np",
        )
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        mask = np.asarray(enc["attention_mask"], dtype=bool)
        out[start : start + len(chunk)] = np.where(mask, ids + 1, 0)
    return out


def corpus_texts(root: str | os.PathLike, corpus: NewsCorpus, field: str) -> list[str]:
    """The raw ``field`` text of every corpus row (row 0, the padding news, is ``""``), read
    again from the root's ``news.tsv`` files in the corpus's order (a news that several splits
    hold takes its first split's text, as the corpus does)."""
    if field not in PLM_TEXT_FIELDS:
        raise ValueError(f"PLM text field must be one of {PLM_TEXT_FIELDS}, got {field!r}")
    texts = np.full(len(corpus), "", dtype=object)
    done = np.zeros(len(corpus), dtype=bool)
    done[0] = True
    for split_dir in split_files(root).values():
        table = read_news(split_dir / "news.tsv")
        rows = corpus.lookup(table.column("news_id"))
        column = np.asarray(table.column(field).to_numpy(zero_copy_only=False), dtype=object)
        known = rows >= 0
        fresh = np.zeros(len(rows), dtype=bool)
        fresh[known] = ~done[rows[known]]
        texts[rows[fresh]] = column[fresh]
        done[rows[fresh]] = True
    return [t if isinstance(t, str) else "" for t in texts.tolist()]


def load_plm_tokens(
    root: str | os.PathLike,
    corpus: NewsCorpus,
    tokenizer_spec: str | os.PathLike,
    max_length: int,
    fields: Sequence[str],
    *,
    show_progress: bool = True,
) -> dict[str, np.ndarray]:
    """``{"plm_<field>": [N, max_length] int32}`` for every corpus row, built once and cached
    under ``root/processed/plm-<field>-<key>`` (see the module docstring for the key)."""
    root = Path(root)
    tokenizer = load_tokenizer(tokenizer_spec)
    identity = tokenizer_identity(tokenizer)
    news_files = [file_fingerprint(d / "news.tsv") for d in split_files(root).values()]
    cache = ArrayCache(root / "processed")
    out = {}
    for field in fields:
        key = cache_key("plm-tokens", field, identity, int(max_length), news_files, len(corpus))

        def build(field=field):
            ids = tokenize_texts(tokenizer, corpus_texts(root, corpus, field), max_length, show_progress=show_progress)
            ids[0] = 0  # the padding news has no text at all (not even special tokens)
            meta = {"field": field, "tokenizer": identity, "max_length": int(max_length)}
            return {"ids": ids}, {**meta, "tokenizer_path": os.fspath(tokenizer_spec)}

        arrays, _ = cache.load_or_build(f"plm-{field}-{key}", build)
        out[PLM_FIELD_PREFIX + field] = np.asarray(arrays["ids"])
    return out


def plm_token_arrays(root: str | os.PathLike, corpus: NewsCorpus, requirements) -> dict[str, np.ndarray]:
    """The ``plm_*`` news fields a model's :class:`~newsrec.core.DataRequirements` name,
    tokenised with its ``text_tokenizer`` (:func:`load_plm_tokens`, cached under
    ``root/processed/``); ``{}`` when it names none."""
    wanted = [f[len(PLM_FIELD_PREFIX) :] for f in requirements.news_fields if f.startswith(PLM_FIELD_PREFIX)]
    if not wanted:
        return {}
    bad = [f for f in wanted if f not in PLM_TEXT_FIELDS]
    if bad:
        known = [PLM_FIELD_PREFIX + f for f in PLM_TEXT_FIELDS]
        raise ValueError(f"unknown PLM text fields {bad}: choose from {known}")
    tok = requirements.text_tokenizer
    if not tok or "path" not in tok:
        raise ValueError(
            f"the news fields {[PLM_FIELD_PREFIX + f for f in wanted]} need DataRequirements.text_tokenizer "
            "({'path': ..., 'max_length': ...})"
        )
    return load_plm_tokens(root, corpus, tok["path"], int(tok.get("max_length", 32)), wanted)
