"""``autosel extract`` and ``evaluate``: features of a config, and their score."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autosel.cli.app import app
from autosel.cli.options import DeviceOpt, DtypeOpt, FormatOpt, NoProgressOpt, with_dtype
from autosel.output import OutputFormat, print_records


@app.command("extract")
def extract_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Feature config YAML, or a shipped preset's name (see `autosel presets`).")],
    images: Annotated[
        list[str], typer.Option("--images", "-i", help="Image file or folder (searched recursively); repeatable.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors file.")],
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="Write one aggregated map per image instead of one tensor per id.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser batch.")] = 8,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    category: Annotated[
        Optional[str],
        typer.Option("--category", help="Fills a {category} prompt for every image (default: each image's folder name)."),
    ] = None,
) -> None:
    """Extract the features a config names from images into a safetensors file.

    Keys are IMAGE/ID (C×H×W) or, with --aggregate, IMAGE; the config is stored in the
    file's metadata. Unreadable images are listed in a warning and skipped. A prompt with
    {category} (as DIFT's "a photo of a {category}") takes each image's parent folder name
    (ImageFolder layout: DIR/cat/1.jpg) or --category.

    Example: autosel extract --config meng-practical-sd15 --images photos/ --out feats.safetensors
    """
    from autosel.denoiser import check_device
    from autosel.extract import FeatureExtractor
    from autosel.runtime.preflight import probe_output_file
    from autosel.writer import extract_to_file

    feature_config = load_feature_config(config)
    check_device(device)
    probe_output_file(out)
    extractor = FeatureExtractor(with_dtype(feature_config, dtype), device=device, batch_size=batch_size)
    report = extract_to_file(extractor, images, out, aggregate=aggregate, category=category)
    for name, reason in report.skipped:
        typer.echo(f"warning: skipped {name}: {reason}", err=True)
    typer.echo(f"wrote {report.tensors} tensors for {report.images} images to {out}")


@app.command("evaluate")
def evaluate_command(
    config: Annotated[list[Path], typer.Option("--config", "-c", metavar="PATH|PRESET", help="Feature config YAML, or a shipped preset's name (see `autosel presets`); repeat it to score several configs with shared denoiser forwards.")],
    task: Annotated[
        str, typer.Option("--task", "-t", help="Proxy task: correspondence, correspondence-trained (gdf's trained head) or segmentation.")
    ] = "correspondence",
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="shapes, spair:PATH[:trn|val|test] or folder:PATH.")
    ] = "shapes",
    role: Annotated[str, typer.Option("--role", help="Which part of the dataset: search or heldout.")] = "heldout",
    pairs: Annotated[Optional[int], typer.Option("--max-pairs", min=1, help="Correspondence: at most N pairs (shapes: 100).")] = None,
    pairs_per_category: Annotated[
        Optional[int], typer.Option("--pairs-per-category", min=1, help="Correspondence: balanced subset, N per category.")
    ] = None,
    soft_window: Annotated[
        Optional[int], typer.Option("--soft-window", min=0, help="Correspondence: soft-argmax window radius (0: argmax).")
    ] = None,
    train_images: Annotated[
        Optional[int], typer.Option("--train-images", min=1, help="Segmentation: labelled images to train on.")
    ] = None,
    test_images: Annotated[Optional[int], typer.Option("--test-images", min=1, help="Segmentation: at most N scored images.")] = None,
    train_pairs: Annotated[
        Optional[int], typer.Option("--train-pairs", min=1, help="correspondence-trained: training pairs (shapes: 200; SPair: all of trn).")
    ] = None,
    protocol: Annotated[
        str, typer.Option("--protocol", help="Correspondence convention: autosel (per-activation L2, bilinear query) or dift (raw, one normalisation, rounded-cell query).")
    ] = "autosel",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser batch.")] = 8,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    output_format: FormatOpt = OutputFormat.table,
    no_progress: NoProgressOpt = False,
) -> None:
    """Score a feature config on a proxy task: every PCK variant, or mIoU with per-class IoU.

    Correspondence scores carry their protocol: `autosel` (default; each activation L2-normalised,
    bilinear query) or `dift` (raw activations, one normalisation, the query at the keypoint's
    rounded cell, as DIFT and gdf compute it).

    `--task correspondence-trained` is the seed codebase's protocol: a 3×3 convolution head trained
    on another split's pairs (shapes train, SPair trn) with gdf's loss and defaults, then nearest
    neighbours on its output.

    Examples:

    * `autosel evaluate --config meng-practical-sd15 --dataset spair:~/SPair-71k:test`
    * `autosel evaluate --config best.yaml --task segmentation --dataset folder:horse21/ --train-images 30`
    * `autosel evaluate --config best.yaml --config legacy-tiny --max-pairs 50` (one forward per image batch and timestep for both)
    """
    from autosel.api import evaluate_many
    from autosel.output import print_document
    from autosel.protocols import get_protocol
    from autosel.run_config import Resources
    from autosel.tasks import get_task

    feature_configs = [load_feature_config(path) for path in config]
    size = feature_configs[0].extraction.image_size
    chosen = get_protocol(protocol)
    results = evaluate_many(
        [with_dtype(c, dtype) for c in feature_configs], task=task, dataset=dataset, role=role, protocol=protocol,
        resources=Resources(device=device, batch_size=batch_size), progress=not no_progress,
        pairs=pairs, pairs_per_category=pairs_per_category, soft_window=soft_window, train_images=train_images,
        test_images=test_images, train_pairs=train_pairs, shapes_size=size if isinstance(size, int) else 64,
    )
    described = {"protocol": protocol, "protocol_description": chosen.description} if get_task(task).kind == "correspondence" else {}
    if output_format is not OutputFormat.table:
        documents = [{"config": str(path), **result.to_dict(), **described} for path, result in zip(config, results)]
        print_document(documents[0] if len(documents) == 1 else documents, output_format)
        return
    for path, result in zip(config, results):
        records = [
            {"metric": name, "value": f"{100 * value:.1f}", "meaning": result.descriptions.get(name, "")}
            for name, value in result.metrics.items()
        ]
        title = f"{task} on {dataset} ({role}): {result.n_items} {result.unit}; primary {result.primary} = {100 * result.value:.1f}"
        if get_task(task).kind == "correspondence":
            title += f"; protocol {protocol}"
        if len(config) > 1:
            title = f"{path}: {title}"
        print_records(records, output_format, [("metric", "metric"), ("value", "%"), ("meaning", "meaning")], title=title)


def load_feature_config(path: Path):
    """The feature config at ``path``, its ids checked against the model's offline catalogue
    before any weights load (an unknown id names the file, the closest ids and the listing)."""
    from autosel.catalog import list_activations
    from autosel.config import FeatureConfig
    from autosel.errors import UnknownActivationError

    config = FeatureConfig.from_yaml(path)
    try:
        config.check_ids(point.id for point in list_activations(config.model.name, config.extraction.image_size))
    except UnknownActivationError as error:
        raise UnknownActivationError(f"{path}: {error}") from None
    return config


