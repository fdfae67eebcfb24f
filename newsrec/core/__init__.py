"""The contract layer: what models and data agree on, imported by ``data``, ``graphs`` and
``models`` and importing none of them.

- :class:`DataRequirements` (model → data) and :class:`ModelInputs` (data → model): the handshake;
- :class:`NewsBatch`: the typed batch every model consumes;
- :class:`ArrayCache`: the on-disk cache of preprocessed arrays (``.npy`` + checksummed manifest);
- :func:`atomic_write` / :func:`atomic_path`: files that appear only once fully written.
"""

from newsrec.core.batch import NewsBatch, as_batch
from newsrec.core.cache import ArrayCache, CacheCorruptWarning, cache_key, file_fingerprint
from newsrec.core.files import atomic_path, atomic_write
from newsrec.core.requirements import (
    DATA_SIZE_ARGUMENTS,
    DataRequirements,
    ModelInputs,
    NewsGraphBuild,
    NewsGraphSampling,
)

__all__ = [
    "DATA_SIZE_ARGUMENTS",
    "ArrayCache",
    "CacheCorruptWarning",
    "DataRequirements",
    "ModelInputs",
    "NewsBatch",
    "NewsGraphBuild",
    "NewsGraphSampling",
    "as_batch",
    "atomic_path",
    "atomic_write",
    "cache_key",
    "file_fingerprint",
]
