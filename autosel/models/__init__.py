"""Models: the registry of short names, offline architectures, loading, built-in tiny models."""

from autosel.models.architecture import Architecture, load_architecture, shipped_architecture
from autosel.models.loading import load_pipeline
from autosel.models.registry import REGISTRY, ModelSpec, resolve_model

__all__ = [
    "REGISTRY",
    "Architecture",
    "ModelSpec",
    "load_architecture",
    "load_pipeline",
    "resolve_model",
    "shipped_architecture",
]
