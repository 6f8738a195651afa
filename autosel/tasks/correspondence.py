"""Training-free semantic correspondence: nearest neighbours in feature space, scored by PCK.

As in DIFT, SD+DINO and the seed codebase's ``nn`` mode: both feature maps are bilinearly
upsampled to a working resolution and L2-normalised over channels; each source point takes
the target location of highest cosine similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def match_points(
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    source_points: torch.Tensor,
    source_size: tuple[int, int],
    target_size: tuple[int, int],
    working_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Predict where ``source_points`` land in the target image.

    Args:
        source_features, target_features: C×h×w feature maps (any resolution, same C).
        source_points: K×2 (x, y) pixel coordinates in the source image.
        source_size, target_size: (height, width) of the two images in pixels.
        working_size: (height, width) the maps are upsampled to; default: the target image size.

    Returns:
        K×2 (x, y) pixel coordinates in the target image (centres of the matched cells).
    """
    size = working_size or target_size
    return match_prepared(
        prepare_features(source_features, size), prepare_features(target_features, size),
        source_points, source_size, target_size,
    )


def prepare_features(features: torch.Tensor, working_size: tuple[int, int]) -> torch.Tensor:
    """Feature maps (C×h×w or B×C×h×w) upsampled to ``working_size`` and L2-normalised over
    channels: do it once per image when an image takes part in several pairs."""
    batch = features.float() if features.ndim == 4 else features.float()[None]
    if tuple(batch.shape[-2:]) != tuple(working_size):
        batch = F.interpolate(batch, size=working_size, mode="bilinear", align_corners=False)
    batch = F.normalize(batch, dim=1)
    return batch if features.ndim == 4 else batch[0]


def match_prepared(
    source: torch.Tensor,
    target: torch.Tensor,
    source_points: torch.Tensor,
    source_size: tuple[int, int],
    target_size: tuple[int, int],
) -> torch.Tensor:
    """:func:`match_points` on maps already passed through :func:`prepare_features`."""
    work_h, work_w = target.shape[-2:]
    # pixel centres → grid_sample's [-1, 1] coordinates (align_corners=False), any working size
    grid_xy = 2 * (source_points.float() + 0.5) / torch.tensor([source_size[1], source_size[0]]) - 1
    sampled = F.grid_sample(source[None], grid_xy.view(1, 1, -1, 2), mode="bilinear", align_corners=False)
    queries = F.normalize(sampled[0, :, 0].T, dim=1)  # K×C
    best = (queries @ target.reshape(target.shape[0], -1)).argmax(dim=1)  # over h·w
    rows, cols = best // work_w, best % work_w
    return torch.stack([(cols + 0.5) * target_size[1] / work_w - 0.5, (rows + 0.5) * target_size[0] / work_h - 0.5], dim=1)


def pck(
    predicted: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor, reference_length: float, alpha: float = 0.1
) -> tuple[int, int]:
    """Correct and scored counts of PCK@alpha: a visible point is correct when its error is at
    most ``alpha × reference_length`` (e.g. the target bbox's longer side, in the same pixels)."""
    errors = (predicted.float() - truth.float()).norm(dim=1)
    correct = (errors <= alpha * reference_length) & visible
    return int(correct.sum()), int(visible.sum())
