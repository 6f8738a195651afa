"""autosel: find the diffusion-model activations and timesteps that make the best features."""

from autosel.catalog import ActivationPoint, list_activations, select_activations
from autosel.errors import AutoselError

__version__ = "0.1.0"

__all__ = ["ActivationPoint", "AutoselError", "list_activations", "select_activations", "__version__"]
