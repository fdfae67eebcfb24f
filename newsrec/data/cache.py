"""Compatibility alias: the disk cache now lives in the contract layer, :mod:`newsrec.core.cache`."""

from newsrec.core.cache import ArrayCache, CacheCorruptWarning, cache_key, file_fingerprint

__all__ = ["ArrayCache", "cache_key", "file_fingerprint", "CacheCorruptWarning"]
