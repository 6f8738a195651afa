"""The activation cache: search-split feature maps of the screened candidates, on disk."""

from autosel.cache.activations import ActivationCache, CacheKey, default_cache_dir, parse_bytes

__all__ = ["ActivationCache", "CacheKey", "default_cache_dir", "parse_bytes"]
