"""Interop with the seed codebase, generic-diffusion-feature (gdf).

gdf selects activations with a JSON dict ``{"<id>": true}`` and extracts them at one
timestep ``t`` from square images of ``img_size`` with a fixed prompt. What it cannot express
(several timesteps in one call, weights, post-processing, aggregation, ensembles, seeds,
non-square sizes) and what it does differently (float16, a VAE sample, PIL bicubic resize,
unseeded noise, no L2 normalisation) is reported by :func:`export_gdf`, never silently
dropped; its ``t`` is the one that lands on the config's timestep on gdf's scheduler grid
(:mod:`autosel.gdf_timestep`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autosel.catalog import list_activations
from autosel.config import FeatureConfig
from autosel.errors import AutoselError
from autosel.gdf_timestep import gdf_runs_at, gdf_timestep, shipped_scheduler
from autosel.models import resolve_model
from autosel.prompts import is_template

GDF_VERSIONS = {
    "sd15": "1-5", "sd21": "2-1", "sdxl": "xl", "pgv2": "pgv2",
    "pixart-alpha": "pixart-alpha", "pixart-sigma": "pixart-sigma", "if-i-l": "if",
}
"""autosel registry names → gdf ``version`` strings, as its ``feature/components/models.py``
loads them (gdf has no SDXL-Turbo, SD 1.4/2.0, SD3 or released FLUX/Hunyuan loader)."""

FOLDER_VERSIONS = {"sd": "1-5", "sdxl": "xl", "pixart": "pixart-alpha", "if": "if"}
"""The gdf ``version`` whose loader reads a local folder of each family (``--offline_lora
FOLDER``): ``1-5`` loads any SD-layout folder with the folder's own scheduler (``2-1`` would
swap in Euler); ``xl``, ``pixart-alpha`` and ``if`` ask for ``variant="fp16"`` files."""


class GdfError(AutoselError, ValueError):
    """A gdf layer file cannot be read or does not fit the model."""


@dataclass(frozen=True)
class GdfExport:
    """What :func:`export_gdf` wrote and what gdf could not express."""

    files: list[Path]
    notes: list[str]


def export_gdf(config: FeatureConfig, out_dir: str | Path) -> GdfExport:
    """Write ``config`` as gdf layer JSON(s), ``args.json`` and a README into ``out_dir``.

    One timestep → ``layers.json``; several → ``layers-t{T}.json`` each (gdf extracts one
    timestep per call). Everything gdf cannot express is listed in ``notes`` and the README.
    """
    for index, activation in enumerate(config.activations):
        if activation.sigma is not None:
            raise GdfError(
                f"activations[{index}] ({activation.id}) gives sigma {activation.sigma:g}: gdf takes integer "
                "timesteps only; give timestep: (0…999) to export it"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extraction, aggregation = config.extraction, config.aggregation
    notes: list[str] = []
    spec = resolve_model(config.model.name)
    folder = spec.path if spec.source == "folder" else None
    version = GDF_VERSIONS.get(config.model.name) or (FOLDER_VERSIONS.get(spec.family or "") if folder else None)
    if version is None:
        notes.append(f"gdf has no version for model '{config.model.name}' (it knows {', '.join(GDF_VERSIONS)}, "
                     "and local folders of the sd, sdxl, pixart and if families)")
    elif folder is not None and version != "1-5":
        notes.append(f"gdf's '{version}' loader asks for variant='fp16' weight files: save the folder with them")
    image_size = extraction.image_size
    if isinstance(image_size, (list, tuple)) and image_size[0] != image_size[1]:
        notes.append(f"gdf resizes to squares: image_size {image_size[0]}x{image_size[1]} becomes {max(image_size)}")
    img_size = max(image_size) if isinstance(image_size, (list, tuple)) else image_size
    timesteps = config.timesteps
    gdf_t = _gdf_timesteps(config, version, notes)
    if len(timesteps) > 1:
        notes.append(f"gdf extracts one timestep per call: one layer file per timestep {timesteps}")
    for activation in config.activations:
        if activation.weight != 1.0:
            notes.append(f"weight {activation.weight} of {activation.id} is not expressible (gdf has no weights)")
        if activation.post != "none":
            notes.append(f"post-processing '{activation.post}' of {activation.id} is not expressible")
        if activation.id.endswith("-norm-in"):
            notes.append(f"{activation.id} is an autosel extra (AdaLN-modulated input): gdf does not gather it")
    if extraction.ensemble > 1:
        notes.append(f"ensemble {extraction.ensemble} is not expressible (gdf draws one noise per call)")
    if extraction.resize != "stretch":
        notes.append(f"resize '{extraction.resize}' is not expressible (gdf stretches to a square)")
    notes.append(f"noise seed {extraction.noise_seed} is not expressible (gdf's noise is unseeded)")
    sample = "a sample per ensemble member, seeded from noise_seed" if extraction.vae_posterior == "sample" else "its mean"
    notes.append(f"VAE posterior: gdf encodes an unseeded sample of it (img2img's prepare_latents); this config takes {sample}")
    if extraction.resize_filter != "bicubic":
        notes.append(f"resize: gdf resizes with PIL's bicubic filter on 8-bit pixels; this config resizes "
                     f"{extraction.resize_filter} (resize_filter: bicubic matches gdf)")
    notes.append("float16: gdf's extract_feature.py runs in float16 unless given --dtype (the call above passes the "
                 "config's); stored in float16, gdf's features differed from autosel's by 2e-4, kept in float32 by 1e-5 "
                 "(results/peers.md)")
    if is_template(extraction.prompt):
        notes.append(f"prompt {extraction.prompt!r} names {{category}}: gdf takes one prompt per call, so run one call "
                     "per category with it filled in")
    if aggregation.pca_dim or aggregation.combine != "concat" or aggregation.resolution is not None:
        notes.append("aggregation (resolution, combine, PCA) is not expressible: gdf returns each activation as is")
    if aggregation.l2_normalize:
        notes.append("per-activation L2 normalisation (aggregation.l2_normalize) is not applied by gdf: its nn mode "
                     "concatenates the raw activations, so normalise each one over channels yourself to match autosel's scores")
    if any(a.id.endswith("-map") for a in config.activations):
        notes.append("-map ids: autosel's is the head-averaged attention map (channels = key positions); gdf keeps "
                     "one map per head, so its feature_len and values differ")

    channels = _channels(config, img_size)
    files: list[Path] = []
    for timestep in timesteps:
        suffix = "" if len(timesteps) == 1 else f"-t{timestep}"
        selection = {a.id: True for a in config.activations if a.timestep == timestep}
        (out / f"layers{suffix}.json").write_text(json.dumps(selection, indent=4) + "\n")
        task = {"feature_len": sum(channels[name] for name in selection), "layer": f"layers{suffix}.json",
                "version": version, "attention": None, "img_size": img_size, "t": gdf_t[timestep]}
        (out / f"correspondence{suffix}.json").write_text(json.dumps(task, indent=4) + "\n")
        files += [out / f"layers{suffix}.json", out / f"correspondence{suffix}.json"]
    args = {"version": version, "img_size": img_size,
            "t": gdf_t[timesteps[0]] if len(timesteps) == 1 else [gdf_t[t] for t in timesteps],
            "timestep": timesteps[0] if len(timesteps) == 1 else timesteps,
            "prompt": extraction.prompt, "model": config.model.name, "dtype": config.model.dtype,
            **({"offline_lora": str(folder)} if folder is not None else {})}
    (out / "args.json").write_text(json.dumps(args, indent=4) + "\n")
    (out / "prompt.txt").write_text(extraction.prompt)  # extract_feature.py reads its prompt from --prompt_file
    files += [out / "args.json", out / "prompt.txt"]
    (out / "README.md").write_text(_readme(config, files, args, notes))
    files.append(out / "README.md")
    return GdfExport(files=files, notes=notes)


def import_gdf(
    layers_file: str | Path,
    model: str | None = None,
    timestep: int | None = None,
    image_size: int | None = None,
    prompt: str | None = None,
) -> FeatureConfig:
    """A feature config from a gdf layer JSON (``{"<id>": true, ...}``; false entries are off).

    Settings not given are read from an ``args.json`` beside the file (as :func:`export_gdf`
    writes it), else default to gdf's t=50, the native image size and the empty prompt. A
    gdf ``t`` becomes the timestep gdf runs at on the model's scheduler grid (t=50 on SD 1.5's
    PNDM: 51); ``timestep`` and an exported ``args.json``'s ``timestep`` are taken as they are.

    Raises:
        GdfError: the file is missing, not JSON, or not an id → bool dict; no model known.
        ConfigError: the resulting config is not valid (e.g. timestep out of range).
    """
    path = Path(layers_file)
    selection = _read_json(path)
    if not isinstance(selection, dict) or not all(isinstance(v, bool) for v in selection.values()):
        raise GdfError(f'{path}: expected a JSON object of activation ids to true/false, like {{"up-level1-repeat0-vit-out": true}}')
    ids = [name for name, chosen in selection.items() if chosen]
    if not ids:
        raise GdfError(f"{path}: no activation is set to true")
    args_file = path.with_name("args.json")
    args = _read_json(args_file) if args_file.is_file() else {}
    model = model or args.get("model") or {v: k for k, v in GDF_VERSIONS.items()}.get(args.get("version"))
    if not model:
        raise GdfError(f"{path}: no model given and no args.json beside it names one: pass --model")
    if timestep is None and "timestep" in args:
        timestep = args["timestep"] if isinstance(args["timestep"], int) else None
    elif timestep is None:
        t = args.get("t", 50)
        scheduler = shipped_scheduler(model) if isinstance(t, int) else None
        timestep = t if scheduler is None or not isinstance(t, int) else gdf_runs_at(t, scheduler, args.get("version"))
        timestep = timestep if isinstance(timestep, int) else None
    if timestep is None:
        raise GdfError(f"{args_file}: several timesteps are listed: pass --timestep for this layer file")
    image_size = image_size or args.get("img_size")
    prompt = prompt if prompt is not None else args.get("prompt", "")
    data = {
        "model": {"name": model},
        "extraction": {"prompt": prompt, **({"image_size": image_size} if image_size else {})},
        "activations": [{"id": name, "timestep": timestep} for name in ids],
        "provenance": {"source": f"imported from gdf layer file {path.name}"},
    }
    return FeatureConfig.from_dict(data, source=str(path))


GDF_CORRESPONDENCE_KEYS = {"feature_len": int, "layer": str, "version": str, "attention": type(None), "img_size": int, "t": int}
"""What gdf's correspondence task reads from each ``--configs`` JSON, with the types it uses
(``correspondence/correspondence/aggregation_network.py``: ``c['feature_len']`` line 20,
``config['t']`` line 35, ``config['layer']``, ``['version']``, ``['attention']``, ``['img_size']``
lines 37–41, passed to gdf's ``FeatureExtractor``)."""


def _channels(config: FeatureConfig, img_size: int) -> dict[str, int]:
    """Channels of each id at ``img_size`` (gdf's ``feature_len`` is their sum), from the offline catalogue."""
    catalogue = {point.id: point.channels for point in list_activations(config.model.name, img_size)}
    return {a.id: catalogue[a.id] for a in config.activations}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GdfError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise GdfError(f"{path}: not valid JSON: {error}") from None


def _gdf_timesteps(config: FeatureConfig, version: str | None, notes: list[str]) -> dict[int, int]:
    """Each config timestep → the ``t`` gdf needs to run at it; a ``t`` that differs, or one
    that cannot be checked, is noted."""
    scheduler = shipped_scheduler(config.model.name)
    found: dict[int, int] = {}
    for timestep in config.timesteps:
        t = None if scheduler is None else gdf_timestep(timestep, scheduler, version)
        found[timestep] = timestep if t is None else t
        if scheduler is None:
            notes.append(f"t={timestep} is written as is: the model's scheduler config is not readable here, so gdf's "
                         "timestep grid (it takes t from 1000 inference steps) could not be checked")
        elif t is None:
            notes.append(f"timestep {timestep} is not on gdf's grid for this scheduler ({scheduler.get('_class_name')}): "
                         f"t={timestep} is written, and gdf runs at {gdf_runs_at(timestep, scheduler, version)}")
        elif t != timestep:
            notes.append(f"t={t} for timestep {timestep}: gdf takes t from its scheduler's 1000-step grid "
                         f"({scheduler.get('_class_name')}{', swapped for Euler by gdf' if version == '2-1' else ''}), "
                         f"where t={timestep} runs at {gdf_runs_at(timestep, scheduler, version)}")
    return found


def _readme(config: FeatureConfig, files: list[Path], args: dict, notes: list[str]) -> str:
    layer_files = [f.name for f in files if f.name.startswith("layers")]
    version, folder = args["version"], args.get("offline_lora")
    t = args["t"] if isinstance(args["t"], int) else args["t"][0]
    lines = [f"# gdf export of an autosel feature config ({config.model.name})", ""]
    if version is None:
        lines += ["gdf has no loader for this model (see below), so there is no gdf call for it.", ""]
    else:
        loader = f", offline_lora={folder!r}" if folder else ""
        lines += [
            "Use with generic-diffusion-feature (run from its `feature/` folder, as its",
            "`correspondence/task-corres.py` does):",
            "",
            "```python",
            "from PIL import Image",
            "from diffusion_feature import FeatureExtractor",
            "",
            f"extractor = FeatureExtractor(layer='{layer_files[0]}', version='{version}', device='cuda',",
            f"                             dtype='{args['dtype']}', img_size={args['img_size']}, attention=None{loader})",
            f"prompt = extractor.encode_prompt({args['prompt']!r})  # the embeddings tuple extract() expects",
            f"features = extractor.extract(prompt, batch_size=1, image=[Image.open('image.jpg')], t={t})",
            "```",
            "",
            "or from gdf's top folder, for a folder of images:",
            "",
            "```",
            f"python extract_feature.py --layer {layer_files[0]} --version {version} --dtype {args['dtype']} "
            f"--img_size {args['img_size']} --t {t}" + (f" --offline_lora {folder}" if folder else "")
            + " --prompt_file prompt.txt --input_dir 'images/*.jpg' --output_dir features/",
            "```",
            "",
        ]
        if folder:
            lines += [f"gdf loads the local folder `{folder}` through `--offline_lora FOLDER` (its `models.py` loads "
                      f"`offline_lora` as the model when no `--offline_lora_filename` is given), with the '{version}' loader.", ""]
        lines += [
            "For gdf's correspondence task (`python task-corres.py --configs correspondence.json ...`), "
            "`correspondence*.json` carries the keys it reads: feature_len, layer, version, attention, img_size, t.",
            "",
            f"`t` is gdf's: the value that makes gdf run at the config's timestep {config.timesteps} on the model's "
            "scheduler grid (args.json keeps both: `t` for gdf, `timestep` for autosel).",
            "",
        ]
    if len(layer_files) > 1:
        lines += ["One call per layer file, with its t:", ""]
        ts = args["t"] if isinstance(args["t"], list) else [args["t"]]
        lines += [f"- `{name}`: t={value}" for name, value in zip(layer_files, ts)]
        lines.append("")
    lines += ["Differences from autosel's extraction that remain (autosel's extractor applies the config as written):", ""]
    lines += [f"- {note}" for note in notes] or ["- nothing"]
    return "\n".join(lines) + "\n"
