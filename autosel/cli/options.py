"""Options and argument parsers shared by the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autosel.output import OutputFormat

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (see `autosel models`), hub id (owner/name) or local diffusers pipeline folder.",
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
ImageSizeOpt = Annotated[
    Optional[str],
    typer.Option("--image-size", help="Image size in pixels: N (square) or HxW, e.g. 768x512. Default: native."),
]
DtypeOpt = Annotated[
    Optional[str],
    typer.Option("--dtype", help="Denoiser dtype: float32, float16 or bfloat16. Default: bfloat16 (float16) on CUDA, float32 on a CPU."),
]
SpaceModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m",
        help="Registry name, hub id or local pipeline folder; default: the --space file's model, else tiny.",
    ),
]
PairsOpt = Annotated[Optional[int], typer.Option("--pairs", min=1, help="Correspondence proxy: pairs (overrides the space).")]
PairsPerCategoryOpt = Annotated[
    Optional[int], typer.Option("--pairs-per-category", min=1, help="Correspondence proxy: balanced subset, N per category.")
]
TrainImagesOpt = Annotated[Optional[int], typer.Option("--train-images", min=1, help="Segmentation proxy: labelled images.")]
TestImagesOpt = Annotated[Optional[int], typer.Option("--test-images", min=1, help="Segmentation proxy: scored images.")]


StorageOpt = Annotated[
    Optional[str], typer.Option("--storage", help="SQLAlchemy URL of the store; default sqlite:///runs/autosel.db.")
]

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (forwards, memory, time from one warm-up forward) and stop: writes nothing.")
]


CacheDirOpt = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache folder; default $AUTOSEL_CACHE_DIR or ~/.cache/autosel/activations."),
]



def peak_memory_text() -> str:
    from autosel.runtime.plan import format_bytes, peak_resident_bytes

    return f"{format_bytes(peak_resident_bytes())} (peak RSS of this process)"


def check_dtype(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
        raise typer.BadParameter(f"'{dtype}' is not one of float32, float16, bfloat16", param_hint="--dtype")
    return dtype


def with_dtype(config, dtype: str | None):
    """``config`` with its model's dtype replaced by ``--dtype`` (when given)."""
    if check_dtype(dtype) is None:
        return config
    return config.replace(model={**config.model.model_dump(), "dtype": dtype})


def with_overrides(space, image_size, dtype, pairs, pairs_per_category, train_images, test_images):
    """``space`` with the command line's size, dtype and proxy options (given ones only)."""
    check_dtype(dtype)
    proxy = {"pairs": pairs, "pairs_per_category": pairs_per_category, "train_images": train_images, "test_images": test_images}
    proxy = {key: value for key, value in proxy.items() if value is not None}
    return space.replace(
        image_size=parse_image_size(image_size), dtype=dtype,
        proxy={**space.proxy.model_dump(), **proxy} if proxy else None,
    )


def parse_timesteps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        values = []
    if not values:
        raise typer.BadParameter(f"'{text}' is not a comma-separated list of integers", param_hint="--timesteps")
    return values


def parse_image_size(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        sides = [int(part) for part in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise typer.BadParameter(f"'{text}' is not N or HxW (positive integers)", param_hint="--image-size")
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])



NoProgressOpt = Annotated[
    bool,
    typer.Option("--no-progress", help="No progress bars (results and stage messages still print; `autosel --quiet CMD` prints only errors)."),
]


DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1…; default: CUDA if available.")]
SpaceTaskOpt = Annotated[Optional[str], typer.Option("--task", "-t", help="Proxy task; default: the space file's.")]
SpaceDatasetOpt = Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset spec; default: the space file's.")]
SpaceFileOpt = Annotated[
    Optional[Path], typer.Option("--space", help="Search space YAML; default ./search_spaces/MODEL.yaml, else the shipped one.")
]
OutFolderOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (default runs/, which a checkout ignores).")]
