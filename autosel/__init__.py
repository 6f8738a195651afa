"""autosel: find the diffusion-model activations and timesteps that make the best features.

The main jobs: :func:`search` (screen → cache → optimise → confirm → best.yaml), :func:`sweep`
(screening alone) and :func:`evaluate` (score a feature config); :class:`FeatureExtractor`
turns a feature config into features.
"""

from typing import Any

from autosel.log import quiet_libraries

quiet_libraries()  # before diffusers/transformers load: their warnings are not for autosel's users

from autosel.catalog import ActivationPoint, list_activations, select_activations
from autosel.config import FeatureConfig
from autosel.errors import AutoselError
from autosel.extract import FeatureExtractor
from autosel.run_config import Resources, RunConfig
from autosel.space import SearchSpace, load_space

__version__ = "0.1.0"

_LAZY = {"search": "autosel.api", "sweep": "autosel.api", "evaluate": "autosel.api", "evaluate_many": "autosel.api",
         "Search": "autosel.pipeline", "SearchOutcome": "autosel.pipeline"}


def __getattr__(name: str) -> Any:
    """The search API is imported on first use: ``import autosel`` (and every CLI command) does
    not pay for Optuna, pandas and Ray."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autosel' has no attribute '{name}'")

__all__ = [
    "ActivationPoint",
    "AutoselError",
    "FeatureConfig",
    "FeatureExtractor",
    "Resources",
    "RunConfig",
    "Search",
    "SearchOutcome",
    "SearchSpace",
    "evaluate",
    "evaluate_many",
    "list_activations",
    "load_space",
    "search",
    "select_activations",
    "sweep",
    "__version__",
]
