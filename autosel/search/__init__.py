"""The search: spaces, the screening sweep, the activation cache and the SQL store."""

from autosel.search.cache import ActivationCache, CacheKey, default_cache_dir, parse_bytes
from autosel.search.space import SearchSpace, load_space
from autosel.search.store import StorageError, SweepStore, default_storage
from autosel.search.sweep import SweepResult, run_sweep, select_candidates

__all__ = [
    "ActivationCache",
    "CacheKey",
    "SearchSpace",
    "StorageError",
    "SweepResult",
    "SweepStore",
    "default_cache_dir",
    "default_storage",
    "load_space",
    "parse_bytes",
    "run_sweep",
    "select_candidates",
]
