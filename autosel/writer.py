"""Writing extracted features of many images to one safetensors file, batch by batch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from autosel import atomic
from autosel.errors import AutoselError, InvalidInputError
from autosel.extract import FeatureExtractor, reduce_pca
from autosel.images import batches, find_images, to_tensor
from autosel.progress import progress_bar
from autosel.prompts import is_template


@dataclass
class ExtractionReport:
    """What :func:`extract_to_file` wrote and skipped."""

    images: int = 0
    tensors: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def extract_to_file(
    extractor: FeatureExtractor,
    sources: Sequence[str | Path],
    out: str | Path,
    aggregate: bool = False,
    progress: bool = True,
    category: str | None = None,
) -> ExtractionReport:
    """Extract features of every image under ``sources`` into the safetensors file ``out``.

    Keys are ``IMAGE/ID`` (``IMAGE/ID@T`` for an id at several timesteps; C×H×W each) or,
    with ``aggregate``, ``IMAGE`` (the aggregated map; PCA, if configured, is fitted on all
    images together). IMAGE is the path relative to
    the folder given (or the file name). The metadata holds the config YAML (each activation's
    t and σ recorded), ``autosel.noise_levels`` (``{"id@level": {"t": …, "sigma": …}}``) and
    the image list. The file is written whole at the end, through a temporary name, so a failure never
    leaves a partial file behind.

    A ``{category}`` prompt takes ``category`` for every image, else each image's parent
    folder name (torchvision's ImageFolder layout: ``DIR/cat/1.jpg`` is a cat).

    Raises:
        AutoselError: no source exists, or no image could be read.
        InvalidInputError: a ``{category}`` prompt, no ``category`` and an image with no folder
            of its own under the folder given.
    """
    try:
        paths = find_images(sources)
    except FileNotFoundError as error:
        raise AutoselError(str(error)) from None
    names = _names(paths, sources)
    categories = dict(zip(paths, folder_categories(paths, sources, category, extractor.config.extraction.prompt)))
    report = ExtractionReport()
    tensors: dict[str, torch.Tensor] = {}
    combined: list[tuple[str, torch.Tensor]] = []
    written: list[str] = []
    with progress_bar("extracting", len(paths), progress) as advance:
        for batch in batches(list(zip(paths, names)), extractor.batch_size):
            loaded, loaded_names, loaded_categories = [], [], []
            for path, name in batch:
                try:
                    loaded.append(to_tensor(path))
                    loaded_names.append(name)
                    loaded_categories.append(categories[path])
                except (OSError, ValueError) as error:  # ImageReadError: unreadable, truncated, bomb
                    report.skipped.append((str(path), str(error).splitlines()[0].removeprefix(f"{path}: ")))
            if loaded:
                features = extractor(loaded, loaded_categories)
                if aggregate:
                    maps = extractor.combine(features).cpu()
                    combined.extend(zip(loaded_names, maps))
                else:
                    for index, name in enumerate(loaded_names):
                        for activation_id, value in features.items():
                            tensors[f"{name}/{activation_id}"] = value[index].cpu().contiguous()
                written.extend(loaded_names)
            advance(len(batch))
    report.images = len(written)
    if report.images == 0:
        raise AutoselError(f"no readable image among {len(paths)} file(s) under {', '.join(map(str, sources))}")
    if aggregate:
        stacked = torch.stack([value for _, value in combined])
        pca_dim = extractor.config.aggregation.pca_dim
        if pca_dim:
            stacked = reduce_pca(stacked, pca_dim)
        tensors = {name: value.contiguous() for (name, _), value in zip(combined, stacked)}
    recorded = extractor.recorded(extractor.config)  # t and σ of every activation
    metadata = {
        "autosel.config": recorded.to_yaml(),
        "autosel.noise_levels": json.dumps({a.label: a.noise_level.model_dump() for a in recorded.activations}),
        "autosel.images": json.dumps(written),
        "autosel.layout": "aggregated" if aggregate else "per-image",
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # whole or not at all, with the umask's permissions; a full disk is one line (DiskFullError)
    atomic.write_with(out, lambda temporary: save_file(tensors, str(temporary), metadata=metadata), option="--out")
    report.tensors = len(tensors)
    return report


def folder_categories(
    paths: Sequence[Path], sources: Sequence[str | Path], category: str | None, prompt: str
) -> list[str | None]:
    """Each image's category: ``category`` if given, else its parent folder's name (an image
    directly inside a folder given as a source has none); checked against ``prompt`` now, so a
    ``{category}`` prompt without one fails before any image is read.

    Raises:
        InvalidInputError: a ``{category}`` prompt and an image without a category.
    """
    if category is not None:
        return [category] * len(paths)
    roots = {Path(s).resolve() for s in sources if Path(s).is_dir()}
    categories = [None if path.parent.resolve() in roots else path.parent.name or None for path in paths]
    for path, found in zip(paths, categories):
        if found is None and is_template(prompt):
            raise InvalidInputError(
                f"{path}: extraction.prompt {prompt!r} names {{category}} but this image is not in a category folder "
                "(ImageFolder layout: DIR/CATEGORY/IMAGE); pass --category NAME, or use a prompt without {category}"
            )
    return categories


def _names(paths: list[Path], sources: Sequence[str | Path]) -> list[str]:
    folders = [Path(s) for s in sources if Path(s).is_dir()]
    names = []
    for path in paths:
        parent = next((folder for folder in folders if folder in path.parents), None)
        names.append(str(path.relative_to(parent)) if parent else path.name)
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique
