"""autosel: find the diffusion-model activations and timesteps that make the best features."""

from autosel.catalog import ActivationPoint, list_activations, select_activations
from autosel.config import FeatureConfig
from autosel.errors import AutoselError
from autosel.extract import FeatureExtractor

__version__ = "0.1.0"

__all__ = [
    "ActivationPoint",
    "AutoselError",
    "FeatureConfig",
    "FeatureExtractor",
    "list_activations",
    "select_activations",
    "__version__",
]
