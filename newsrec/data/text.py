"""Tokenizer, vocabulary and pretrained-vector loading."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsrec.core.files import atomic_write
from newsrec.data.mind import check_file
from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = [
    "PAD",
    "UNK",
    "tokenize",
    "Vocabulary",
    "load_word_vectors",
    "load_entity_vectors",
    "PretrainedCoverage",
]

PAD = 0
UNK = 1

# The word/punctuation pattern of the MIND baselines (Microsoft recommenders' newsrec).
_TOKEN_RE = re.compile(r"[\w]+|[.,!?;|]")


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and punctuation marks (``.,!?;|``)."""
    return _TOKEN_RE.findall(text.lower())


class Vocabulary:
    """A token → id map with ``<pad>`` = 0 and ``<unk>`` = 1.

    Build it from training text only (:meth:`build`), so that dev/test words never leak in.
    """

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self.itos: list[str] = ["<pad>", "<unk>"]
        self.stoi: dict[str, int] = {"<pad>": PAD, "<unk>": UNK}
        for t in tokens:
            self.add(t)

    def add(self, token: str) -> int:
        if token not in self.stoi:
            self.stoi[token] = len(self.itos)
            self.itos.append(token)
        return self.stoi[token]

    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str]],
        *,
        min_count: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Build from tokenised texts: tokens seen at least ``min_count`` times, the most frequent
        first (ties in first-seen order), at most ``max_size`` tokens besides pad and unk."""
        counts: Counter[str] = Counter()
        for tokens in texts:
            counts.update(tokens)
        ordered = [t for t, c in counts.most_common() if c >= min_count and t not in ("<pad>", "<unk>")]
        if max_size is not None:
            ordered = ordered[:max_size]
        return cls(ordered)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, UNK)

    def encode(self, tokens: Sequence[str], length: int | None = None) -> list[int]:
        """Map tokens to ids (unknown → 1); truncate/pad with 0 to ``length`` if given."""
        ids = [self.stoi.get(t, UNK) for t in tokens]
        if length is not None:
            ids = ids[:length] + [PAD] * max(0, length - len(ids))
        return ids

    def save(self, path: str | os.PathLike) -> None:
        with atomic_write(path, encoding="utf-8") as f:
            json.dump(self.itos, f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        itos = json.loads(Path(path).read_text(encoding="utf-8"))
        if itos[:2] != ["<pad>", "<unk>"]:
            raise ValueError(f"{path}: not a newsrec vocabulary file")
        return cls(itos[2:])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"


@dataclass
class PretrainedCoverage:
    """How much of a vocabulary a pretrained vector file covered."""

    found: int
    total: int

    @property
    def ratio(self) -> float:
        return self.found / max(self.total, 1)

    def __str__(self) -> str:
        return f"{self.found}/{self.total} ({100 * self.ratio:.1f}%)"


def _fill(
    keys: list[str],
    vectors: np.ndarray,
    index: dict[str, int],
    size: int,
    dim: int | None,
    seed: int,
    init_std: float,
) -> tuple[np.ndarray, PretrainedCoverage]:
    if dim is None:
        dim = vectors.shape[1] if vectors.size else 0
    if vectors.size and vectors.shape[1] != dim:
        raise ValueError(f"vectors have dimension {vectors.shape[1]}, expected {dim}")
    rng = np.random.default_rng(seed)
    matrix = (rng.standard_normal((size, dim)) * init_std).astype(np.float32)
    matrix[PAD] = 0.0
    filled = np.zeros(size, dtype=bool)
    for key, row in zip(keys, vectors):
        i = index.get(key)
        if i is not None and i > UNK and not filled[i]:
            matrix[i] = row
            filled[i] = True
    found = int(filled.sum())
    return matrix, PretrainedCoverage(found, max(size - 2, 0))


def load_word_vectors(
    vocab: Vocabulary,
    path: str | os.PathLike,
    *,
    dim: int | None = None,
    seed: int = 0,
    init_std: float = 0.1,
    show_progress: bool = False,
) -> tuple[np.ndarray, PretrainedCoverage]:
    """Fill a ``[len(vocab), dim]`` embedding matrix from a GloVe text file.

    Words missing from the file get small random vectors (``N(0, init_std²)``, seeded); the
    padding row is zero. Returns the matrix and the coverage (words found / vocabulary size,
    pad and unk excluded).
    """
    keys, vectors = read_vectors(path, keys=set(vocab.itos[2:]), show_progress=show_progress)
    return _fill(keys, vectors, vocab.stoi, len(vocab), dim, seed, init_std)


def load_entity_vectors(
    entity_index: dict[str, int],
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    dim: int | None = None,
) -> tuple[np.ndarray, PretrainedCoverage]:
    """Fill a ``[num_entities, dim]`` matrix from MIND TransE ``.vec`` files.

    ``entity_index`` maps WikidataId → row (rows 0 and 1 are pad and unknown and stay zero; so
    do entities that no file covers). Several files (train/dev/test) may be given; the first
    occurrence of an id wins.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    all_keys: list[str] = []
    all_vecs: list[np.ndarray] = []
    vec_paths: list[str | os.PathLike] = []
    wanted = set(entity_index)
    for p in paths:
        if not Path(p).exists():
            continue
        keys, vecs = read_vectors(p, keys=wanted)
        all_keys += keys
        if vecs.size:
            if all_vecs and vecs.shape[1] != all_vecs[0].shape[1]:
                raise DataFormatError(
                    p,
                    None,
                    f"vectors are {vecs.shape[1]} wide but {vec_paths[0]} has {all_vecs[0].shape[1]}: every "
                    "split's entity_embedding.vec must have one width",
                )
            vec_paths.append(p)
            all_vecs.append(vecs)
    size = max(entity_index.values(), default=UNK) + 1
    if dim is None:
        dim = all_vecs[0].shape[1] if all_vecs else 100
    vectors = np.concatenate(all_vecs) if all_vecs else np.zeros((0, dim), np.float32)
    matrix, coverage = _fill(all_keys, vectors, entity_index, size, dim, 0, 0.0)
    return matrix, coverage


def read_vectors(
    path: str | os.PathLike,
    *,
    keys: set[str] | None = None,
    show_progress: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Read pretrained vectors in GloVe text format (``word v1 v2 …``, space-separated) or
    MIND's ``.vec`` format (``Q42<TAB>v1<TAB>v2…<TAB>``).

    Args:
        path: the vector file.
        keys: if given, only rows whose key is in this set are parsed and returned (much faster
            for a large GloVe file and a small vocabulary).
        show_progress: show a progress bar.

    Returns:
        ``(keys, vectors)`` with ``vectors`` a float32 array of shape ``[len(keys), dim]``, in
        file order. A GloVe word that contains spaces keeps them (the last ``dim`` fields are the
        values). A key that occurs twice keeps its first row.

    Raises:
        DataFormatError: a non-numeric or non-finite value, or a row whose width differs from
            the first row's (the message names the line).
    """
    path = check_file(path)
    out_keys: list[str] = []
    rows: list[list[str]] = []
    first_rows: list[int] = []
    seen: set[str] = set()
    dim: int | None = None
    tab: bool | None = None
    size = path.stat().st_size
    with (
        open(path, "rb") as f,  # binary, decoded line by line: a UTF-8 error names its own line
        progress(
            total=size,
            desc=f"reading {path.name}",
            unit="B",
            unit_scale=True,
            disable=not show_progress,
        ) as bar,
    ):
        lineno = 0
        while True:
            raw = f.readline()
            if not raw:
                break
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(path, lineno, f"not valid UTF-8 ({e.reason})") from None
            if show_progress and lineno % 10000 == 0:
                bar.update(f.tell() - bar.n)
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            stripped = line.rstrip("\r\n")
            if not stripped.strip():
                continue
            if tab is None:
                tab = "\t" in stripped
            if tab:
                parts = [p for p in stripped.rstrip("\t ").split("\t")]
                key, values = parts[0], parts[1:]
            else:
                parts = stripped.split()
                if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec-style header "count dim"
                if dim is None:
                    key, values = parts[0], parts[1:]
                else:
                    n_key = len(parts) - dim
                    # a multi-word key (GloVe 840B has a few) may not contain numbers
                    if n_key < 1 or any(_is_float(p) for p in parts[1:n_key]):
                        raise DataFormatError(path, lineno, f"expected {dim} values, found {len(parts) - 1}")
                    key, values = " ".join(parts[:n_key]), parts[n_key:]
            if dim is None:
                dim = len(values)
                if dim == 0:
                    raise DataFormatError(path, lineno, "row has a key but no values")
            elif len(values) != dim:
                raise DataFormatError(path, lineno, f"expected {dim} values, found {len(values)}")
            if (keys is not None and key not in keys) or key in seen:
                continue
            seen.add(key)
            out_keys.append(key)
            rows.append(values)
            first_rows.append(lineno)
    if dim is None:
        return [], np.zeros((0, 0), dtype=np.float32)
    try:
        vectors = np.array(rows, dtype=np.float32).reshape(len(rows), dim)
    except ValueError:
        for key_line, values in zip(first_rows, rows):
            try:
                np.array(values, dtype=np.float32)
            except ValueError:
                bad = next(v for v in values if not _is_float(v))
                raise DataFormatError(path, key_line, f"non-numeric value {bad!r}") from None
        raise
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        k = int(np.argmin(finite))
        raise DataFormatError(path, first_rows[k], "non-finite value (NaN or inf)")
    return out_keys, vectors


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
