"""Everything from files on disk to batches."""

from newsrec.core.cache import ArrayCache, cache_key
from newsrec.data.adressa import convert_adressa
from newsrec.data.batching import ResumableLoader
from newsrec.data.behaviors import Behaviors, TrainingSamples, ragged_to_padded
from newsrec.data.corpus import CorpusConfig, NewsCorpus
from newsrec.data.datamodule import MINDDataModule
from newsrec.data.download import (
    ADRESSA_URLS,
    EBNERD_URLS,
    MIND_URLS,
    download_adressa,
    download_ebnerd,
    download_mind,
    safe_extract_zip,
)
from newsrec.data.ebnerd import convert_ebnerd
from newsrec.data.mind import iter_behaviors, read_behaviors, read_news
from newsrec.data.synthetic import SyntheticConfig, generate_mind
from newsrec.data.text import Vocabulary, load_entity_vectors, load_word_vectors, read_vectors, tokenize

__all__ = [
    "ADRESSA_URLS",
    "ArrayCache",
    "Behaviors",
    "CorpusConfig",
    "EBNERD_URLS",
    "MIND_URLS",
    "MINDDataModule",
    "NewsCorpus",
    "ResumableLoader",
    "SyntheticConfig",
    "TrainingSamples",
    "Vocabulary",
    "cache_key",
    "convert_adressa",
    "convert_ebnerd",
    "download_adressa",
    "download_ebnerd",
    "download_mind",
    "generate_mind",
    "iter_behaviors",
    "load_entity_vectors",
    "load_word_vectors",
    "ragged_to_padded",
    "read_behaviors",
    "read_news",
    "read_vectors",
    "safe_extract_zip",
    "tokenize",
]
