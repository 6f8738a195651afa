"""Feature extraction: images in, ``{activation id: B×C×H×W}`` out, as a feature config says.

A thin layer over the denoiser engine (:mod:`autosel.denoiser`): the config's model is
loaded as a :class:`~autosel.denoiser.Denoiser` of its family, its extraction section fixes
image size, prompt, seed and ensemble, and this module adds the config's per-activation
post-processing and aggregation. For each image: latent (VAE, float32; pixels in pixel space)
→ seeded noise at timestep t with the family's own training process → one denoiser forward
per distinct timestep, with hooks capturing exactly the requested activations and the forward
stopped right after the deepest one. The same config and seed give bitwise identical features
on a CPU, whatever the batch composition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from autosel import adaln
from autosel.aggregation import aggregate
from autosel.config import ConfigError, FeatureConfig
from autosel.denoiser import DTYPES, Denoiser, DenoiserRun
from autosel.images import ImageInput
from autosel.postprocess import post_process
from autosel.schema import Level

__all__ = ["DTYPES", "FeatureExtractor", "combine_features", "post_process", "reduce_pca"]


class FeatureExtractor(DenoiserRun):
    """Extract the activations named by a :class:`FeatureConfig` from images.

    Args:
        config: the feature config.
        pipeline: an already loaded diffusers pipeline; by default the config's model is
            loaded (weights through the Hugging Face cache, or a local folder).
        device: ``cpu``, ``cuda``, ``cuda:1``…; default: CUDA when available.
        batch_size: denoiser batch (images × ensemble draws) per forward.
        stop_early: end each forward right after the deepest requested activation.
        denoiser: an already loaded :class:`Denoiser` (shared with other runs); overrides
            ``pipeline``.

    Raises:
        UnknownActivationError: an id of the config is not in the model's catalogue.
        WeightsUnavailableError: the model's weights cannot be had here.

    Example:
        >>> extractor = FeatureExtractor.from_yaml("results/presets/meng-practical-sd15.yaml")
        >>> features = extractor(["cat.jpg", "dog.jpg"])
        >>> {name: tuple(value.shape) for name, value in features.items()}
        {'up-level1-repeat1-vit-block0-cross-q': (2, 1280, 16, 16), ...}
    """

    def __init__(
        self,
        config: FeatureConfig,
        pipeline: Any | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 8,
        stop_early: bool = True,
        denoiser: Denoiser | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        dtype = DTYPES[config.model.dtype]
        if denoiser is None:
            if pipeline is None:
                denoiser = Denoiser.load(config.model.name, dtype=dtype, device=device, revision=config.model.revision)
            else:
                denoiser = Denoiser(pipeline, device=device, dtype=dtype, name=config.model.name, revision=config.model.revision)
        super().__init__(denoiser, config.extraction, batch_size=batch_size, stop_early=stop_early)
        config.check_ids(self.catalogue)
        self.config = config
        self.dtype = denoiser.dtype
        self._discarded = {a.id for a in config.activations if a.discard_channels}
        for name in self._discarded:  # DiTF's channel discard: the norm's input and modulation instead
            adaln.norm_module(self.unet, self.catalogue[name])  # refuses norms without an AdaLN modulation
            self.catalogue.update(adaln.discard_points(self.catalogue[name]))

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> FeatureExtractor:
        """Build from a feature-config YAML file (see :class:`FeatureConfig`)."""
        return cls(FeatureConfig.from_yaml(path), **kwargs)

    @property
    def unet(self) -> torch.nn.Module:
        """The denoiser module (a UNet or a transformer, whatever the family)."""
        return self.denoiser.module

    @property
    def vae(self) -> torch.nn.Module | None:
        return self.denoiser.vae

    def __call__(
        self, images: ImageInput | Sequence[ImageInput], categories: Sequence[str | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Extract features of ``images`` (paths, PIL images, 3×H×W or B×3×H×W tensors in [0, 1]);
        ``categories`` (one per image) fill a ``{category}`` prompt.

        Returns:
            ``{key: float32 tensor B×C×H×W}`` in the config's order, on ``device``, each
            post-processed as its activation's ``post`` says; the key is the activation id, or
            ``id@t`` for an id taken at several timesteps (see :attr:`FeatureConfig.keys`).
        """
        return self.assemble(self.extract_timesteps(images, self.requests(), categories))

    def requests(self) -> dict[Level, list[str]]:
        """The catalogue ids to capture at each timestep (or σ): the config's, with a channel
        discard's norm input and modulation in place of its id."""
        by_level: dict[Level, list[str]] = {}
        for activation in self.config.activations:
            names = by_level.setdefault(activation.level, [])
            if activation.discard_channels:
                names += [activation.id + adaln.INPUT_SUFFIX, activation.id + adaln.MODULATION_SUFFIX]
            else:
                names.append(activation.id)
        return by_level

    def assemble(self, by_level: Mapping[Level, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The config's features (keyed as :attr:`FeatureConfig.keys`, post-processed) from raw
        captures ``{level: {id: B×C×H×W}}`` holding at least :meth:`requests`."""
        features: dict[str, torch.Tensor] = {}
        for key, activation in zip(self.config.keys, self.config.activations):
            captured = by_level[activation.level]
            if activation.discard_channels:
                norm = adaln.norm_module(self.unet, self.catalogue[activation.id])
                value = adaln.discard_and_modulate(
                    norm, captured[activation.id + adaln.INPUT_SUFFIX], captured[activation.id + adaln.MODULATION_SUFFIX],
                    activation.discard_channels,
                )
            else:
                value = captured[activation.id]
            features[key] = post_process(value, activation.post)
        return features

    def combine(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Resize, normalise, weight and combine the activations into one B×C×H×W map (no PCA)."""
        return combine_features(self.config, features)

    def aggregate(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`combine`, then PCA to ``aggregation.pca_dim`` channels fitted on this batch."""
        combined = self.combine(features)
        pca_dim = self.config.aggregation.pca_dim
        return reduce_pca(combined, pca_dim) if pca_dim else combined


def combine_features(config: FeatureConfig, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The config's aggregation of ``{id: B×C×H×W}`` (see :func:`autosel.aggregation.aggregate`)."""
    activations = config.activations
    return aggregate([features[key] for key in config.keys], [a.weight for a in activations], config.aggregation)


def reduce_pca(maps: torch.Tensor, dim: int) -> torch.Tensor:
    """Project B×C×H×W maps on their top ``dim`` principal components (exact, deterministic).

    The components are fitted on all pixels of ``maps``; each component's sign is fixed so
    that its largest coefficient is positive.
    """
    batch, channels, height, width = maps.shape
    if dim > channels:
        raise ConfigError(f"aggregation.pca_dim: {dim} is more than the {channels} channels to reduce")
    pixels = maps.permute(0, 2, 3, 1).reshape(-1, channels).double()
    centred = pixels - pixels.mean(dim=0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    components = vectors[:, -dim:].flip(-1)
    signs = torch.sign(components.gather(0, components.abs().argmax(dim=0, keepdim=True)))
    projected = centred @ (components * signs)
    return projected.float().reshape(batch, height, width, dim).permute(0, 3, 1, 2)
