"""The plan printed before a sweep or search does any work (and all that ``--dry-run`` does).

Everything here is computed without weights: the catalogue from the model's configs on the
meta device, the proxy data from the task loaders, the weights from the components' configs.
Only :func:`measure_forward` runs the model (one warm-up forward, then one timed forward at
batch 1), for the time estimate.

Peak memory per worker is estimated as

    baseline (this process's RSS before the model loads: Python, torch, diffusers)
  + weights (denoiser in its dtype; VAE in float32; text encoders in the dtype, on the CPU)
  + the larger of
      load: while a checkpoint stored in another dtype is cast, its stored tensors (the
            denoiser's weight files' size, read from a folder's safetensors headers), and
      work: encoded split (latents and noise of every search image, float32: 2 × N·C·h·w·4 B)
  + one batch of captures (B × Σ over the screened ids of C·H·W × (4 + dtype bytes): the
    model-dtype value and its float32 copy)
  + scorer buffers (per candidate, its held maps: min(16 MB, N·C·H·W·2 B) in float16)
  + the forward's own working set (≈ 2 × B × the largest activation × dtype bytes)
  + the screen's captures kept for the cache, when they fit the cache's memory budget
    (:func:`keeps_screen`: Σ over candidates × T of N·min(C, cache_dim)·min(H, r)·min(W, r)·2 B)

and forwards per stage: screen ⌈N/B⌉ × T, exact; cache 0 when the screen keeps its captures,
else ⌈N/B⌉ × min(T, top_m × timesteps_per_candidate), and confirm ⌈N_heldout/B⌉ × the distinct
timesteps of all confirmed configs (they share their forwards: at most T, with the presets'
timesteps added; once per worker group with several workers), as upper bounds
(``Plan.upper_bounds``): which timesteps the best candidates use is known only after the screen.
A search's plan then counts what its store and activation cache already hold
(:meth:`autosel.pipeline.Search.count_reuse`): a stored screen costs nothing and makes the cache
count exact; a finished study's rerun counts exactly what it will confirm (usually 0).

``batch_size=None`` (``--batch-size auto``) picks the largest batch whose peak fits
:data:`MEMORY_MARGIN` of the device's free memory (:func:`free_device_memory`), at most
:data:`AUTO_BATCH_MAX` and the number of search images; when even batch 1 does not fit, batch
1 with a note of what would (a lower ``--image-size``, ``--dtype``, fewer candidates).
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from autosel import variants
from autosel.cache.activations import DEFAULT_MEMORY_BUDGET
from autosel.cache.fill import cached_shape, kept_bytes
from autosel.candidates import SpaceCatalogue
from autosel.catalog import ActivationPoint, measure_catalogue
from autosel.denoiser import DTYPES, DenoiserRun, resolve_dtype
from autosel.encoding import model_run
from autosel.errors import WeightsUnavailableError
from autosel.limits import check_image_memory
from autosel.models import resolve_model
from autosel.models.architecture import Architecture, load_architecture
from autosel.models.tiny import build_tiny_pipeline
from autosel.space import SPACES_FOLDER, SearchSpace, space_file
from autosel.tasks import make_task

AUTO_BATCH_MAX = 64
"""The largest batch ``--batch-size auto`` picks: beyond it forwards are few and batching gains little."""

MEMORY_MARGIN = 0.8
"""The share of the device's free memory ``--batch-size auto`` plans to use (the rest: fragmentation, estimate error)."""

SCORER_HELD_BYTES = 16 * 2**20
"""A correspondence scorer closes a batch at 16 MB of held maps (autosel.tasks.correspondence)."""


@dataclass
class Plan:
    """What a sweep or search will do, and what it will cost (see the module docstring)."""

    model: str
    family: str
    dtype: str
    device: str
    workers: str
    image_size: tuple[int, int]
    task: str
    dataset: str
    search_images: int
    heldout_images: int
    candidates: int
    timesteps: list[int]
    batch_size: int
    forwards: dict[str, int]
    cache_bytes: int
    memory: dict[str, int]
    space_source: str
    seconds_per_image_forward: float | None = None
    notes: list[str] = field(default_factory=list)
    upper_bounds: list[str] = field(default_factory=list)
    """Stages whose forward count is an upper bound (the run may do fewer), not the exact count."""

    @property
    def total_forwards(self) -> int:
        return sum(self.forwards.values())

    @property
    def estimated_seconds(self) -> float | None:
        """Forwards × batch × the measured seconds per image (measured on a batch of up to 4;
        an upper bound for small models, whose larger batches run faster per image)."""
        if self.seconds_per_image_forward is None:
            return None
        return self.total_forwards * self.batch_size * self.seconds_per_image_forward

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(total_forwards=self.total_forwards, estimated_seconds=self.estimated_seconds,
                    peak_bytes=self.memory.get("total"))
        return data

    def text(self) -> str:
        """The plan for people, one fact a line."""
        height, width = self.image_size
        forwards = ", ".join(f"{stage} {'≤ ' * (stage in self.upper_bounds)}{count:,}" for stage, count in self.forwards.items())
        total = f"{'≤ ' * bool(self.upper_bounds)}{self.total_forwards:,}"
        memory = " + ".join(f"{name} {format_bytes(value)}" for name, value in self.memory.items() if name != "total")
        held_out = f", {self.heldout_images} held-out images" if self.heldout_images else ""
        lines = [
            f"plan: {self.model} ({self.family}), {self.dtype} on {self.device}, {self.workers}",
            f"  space: {self.space_source}",
            f"  images: {height}x{width} px; {self.task} on {self.dataset}: {self.search_images} search images{held_out}",
            f"  screen: {self.candidates} candidates x {len(self.timesteps)} timesteps {self.timesteps}",
            f"  denoiser forwards (batch {self.batch_size}): {forwards}; total {total}",
        ]
        if self.upper_bounds:
            verb = "uses" if len(self.upper_bounds) == 1 else "use"
            lines.append(f"  (≤: at most; {' and '.join(self.upper_bounds)} {verb} the timesteps the screen finds best)")
        if self.cache_bytes:
            lines.append(f"  activation cache: at most {format_bytes(self.cache_bytes)}")
        lines.append(f"  peak memory per worker ≈ {format_bytes(self.memory['total'])} ({memory})")
        if self.estimated_seconds is not None:
            lines.append("  " + self.time_text())
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def time_text(self) -> str:
        """The time estimate (after :func:`measure_forward`), or why there is none."""
        if self.estimated_seconds is None:
            missing = [note for note in self.notes if note.startswith("time: not estimated")]
            return missing[0] if missing else "time: not measured (no warm-up forward)"
        return (f"time ≈ {_duration(self.estimated_seconds)} of denoiser forwards "
                f"({self.seconds_per_image_forward:.3f} s per image, measured on a warm-up batch)")


def space_source(model: str, path: str | Path | None, space: SearchSpace) -> str:
    """Where a space came from, or which defaults were chosen (and where no file was found)."""
    if path is not None:
        return str(path)
    found = space_file(model)
    if found is not None:
        return str(found)
    size = f"{space.image_size} px" if space.image_size else "the model's native size"
    proxy = space.task_options()
    amount = proxy.get("pairs") or proxy.get("test_images") or "the loader's default"
    return (f"no {SPACES_FOLDER}/{Path(model).name}.yaml (looked in ./{SPACES_FOLDER} and in the shipped spaces), so "
            f"the family's defaults with the command line's options: candidates {space.candidates.include} minus {space.candidates.exclude} "
            f"(post {space.candidates.post}), {size}, {space.task} on {space.dataset} ({amount}), t in {space.timesteps}")


def make_plan(
    space: SearchSpace,
    source: str,
    stage: str = "search",
    device: str | None = None,
    batch_size: int | None = 16,
    workers: int | None = None,
    presets: Sequence[Any] = (),
    free_memory: int | None = None,
    cache_memory: int | None = None,
) -> Plan:
    """The plan of a ``stage`` (``sweep`` or ``search``) of ``space``, without loading weights;
    ``batch_size=None``: the largest that fits ``free_memory`` (default: the device's free
    memory, see the module docstring); ``cache_memory``: the workers' activation-cache budget
    (default :data:`~autosel.cache.activations.DEFAULT_MEMORY_BUDGET`), which decides whether
    the screen keeps its captures for the cache (:func:`keeps_screen`)."""
    spec = resolve_model(space.model)
    architecture = load_architecture(spec)
    dtype = resolve_dtype(space.dtype, device)
    target = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = space.image_size or architecture.native_resolution
    check_image_memory(size, str(target))  # before the catalogue is measured at that size
    image_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    catalogue = measure_catalogue(architecture, image_size)
    chosen = SpaceCatalogue.of(space, catalogue)
    screened, candidates = chosen.screened, chosen.candidates
    search_images = len(make_task(space.task, space.dataset, "search", **space.task_options()).images)
    heldout_images = len(make_task(space.task, space.dataset, "heldout", **space.task_options()).images) if stage == "search" else 0
    bytes_per = DTYPES[dtype].itemsize
    notes: list[str] = []
    per_image = {"captures": sum(_elements(p) for p in screened) * (4 + bytes_per),
                 "forward": 2 * max(_elements(p) for p in catalogue) * bytes_per}
    fixed = {
        "encoded": 2 * search_images * _latent_elements(architecture, image_size) * 4,
        "scorers": sum(min(SCORER_HELD_BYTES, search_images * _elements(p) * 2) for p in candidates),
    }
    budget = DEFAULT_MEMORY_BUDGET if cache_memory is None else cache_memory
    kept = screen_keep_bytes(space, catalogue, search_images)
    keeps = stage == "search" and kept <= budget  # keeps_screen's rule, its bytes needed for the note too
    if keeps:
        fixed["kept for the cache"] = kept
    elif stage == "search":
        notes.append(f"cache: the screen's captures ({format_bytes(kept)}) exceed --cache-memory ({format_bytes(budget)}), so the "
                     f"cache stage runs its own forwards; with a larger budget the screen keeps them and it runs none")
    memory = {"baseline": peak_resident_bytes(), "weights": _weight_bytes(spec, architecture, bytes_per, notes)}
    load = _cast_bytes(spec, architecture, dtype)
    if batch_size is None:
        free = free_device_memory(target) if free_memory is None else free_memory
        if target.type != "cuda" and stage == "search":  # CPU workers share the machine's memory
            free //= max(1, worker_count(workers))
        batch_size = auto_batch_size(sum(memory.values()) + max(load, sum(fixed.values())), sum(per_image.values()),
                                     free, max(1, min(AUTO_BATCH_MAX, search_images)))
        if batch_size == 0:
            batch_size = 1
            notes.append(f"batch 1 does not fit {format_bytes(int(free * MEMORY_MARGIN))} of free {target.type} memory: "
                         f"try a lower --image-size (now {image_size[0]}x{image_size[1]}), --dtype bfloat16 or float16 "
                         f"(now {dtype}), or fewer candidates (--include/--exclude; now {len(candidates)})")
        else:
            notes.append(f"batch {batch_size}: the largest that fits {format_bytes(int(free * MEMORY_MARGIN))} of free "
                         f"{target.type} memory (--batch-size auto)")
    work = {**fixed, **{name: batch_size * value for name, value in per_image.items()}}
    work = {name: work[name] for name in ("encoded", "captures", "scorers", "kept for the cache", "forward") if name in work}
    if load > sum(work.values()):
        memory["load (cast)"] = load
    else:
        memory.update(work)
    memory["total"] = sum(memory.values())
    forwards = planned_forwards(space, stage, batch_size, search_images, heldout_images, presets, worker_count(workers))
    if keeps:  # the screen's own captures fill the cache
        forwards["cache"] = 0
    cache_bytes = 0
    if stage == "search":
        search = space.search
        sizes = sorted((math.prod(cached_shape(p, 1, search.cache_resolution, search.cache_dim)) for p in candidates), reverse=True)
        cache_bytes = search.timesteps_per_candidate * search_images * 2 * sum(sizes[: search.top_m])
    if stage == "search":
        count = worker_count(workers)
        worker_text = "in this process" if count == 0 else f"{count} Ray worker{'s' * (count != 1)}"
    else:
        worker_text = "in this process"
    return Plan(
        model=space.model, family=architecture.family, dtype=dtype, device=str(target), workers=worker_text,
        image_size=image_size, task=space.task, dataset=space.dataset, search_images=search_images,
        heldout_images=heldout_images, candidates=len(candidates), timesteps=list(space.timesteps),
        batch_size=batch_size, forwards=forwards, cache_bytes=cache_bytes, memory=memory, space_source=source,
        notes=notes, upper_bounds=[name for name in ("cache", "confirm") if name in forwards and not (name == "cache" and keeps)],
    )


def keeps_screen(space: SearchSpace, catalogue: Iterable[ActivationPoint], images: int, budget: int) -> bool:
    """Whether a search's screen keeps the cache form of every (candidate, timestep) it captures
    (:class:`~autosel.cache.fill.ScreenedFeatures`), so that the cache stage runs no forward: when
    they fit ``budget`` bytes (the activation cache's memory budget, unused while the screen runs)."""
    return screen_keep_bytes(space, catalogue, images) <= budget


def screen_keep_bytes(space: SearchSpace, catalogue: Iterable[ActivationPoint], images: int) -> int:
    """Bytes the cache form of a whole screen of ``space`` on ``images`` images takes (see :func:`keeps_screen`)."""
    search = space.search
    candidates = SpaceCatalogue.of(space, catalogue).candidates
    return kept_bytes(candidates, len(space.timesteps), images, search.cache_resolution, search.cache_dim)


def worker_count(workers: int | None) -> int:
    """Model replicas a search starts: as asked (0: the driver itself), else one per GPU, one on a CPU box."""
    return workers if workers is not None else (max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1)


def planned_forwards(space: SearchSpace, stage: str, batch_size: int, search_images: int, heldout_images: int,
                     presets: Sequence[Any] = (), workers: int = 1) -> dict[str, int]:
    """Denoiser forwards per stage, before reuse: the screen's exact, the cache's and the
    confirmation's upper bounds (see the module docstring)."""
    steps = len(space.timesteps)
    forwards = {"screen": math.ceil(search_images / batch_size) * steps}
    if stage == "search":
        search = space.search
        forwards["cache"] = math.ceil(search_images / batch_size) * min(steps, search.top_m * search.timesteps_per_candidate)
        confirmed = set(space.timesteps) | {a.level for preset in presets for a in preset.activations}
        groups = max(1, min(workers, search.confirm_top + 1 + len(presets)))  # each worker's group runs its own forwards
        forwards["confirm"] = math.ceil(heldout_images / batch_size) * len(confirmed) * groups
    return forwards


def auto_batch_size(fixed: int, per_image: int, free: int, largest: int) -> int:
    """The largest batch (at most ``largest``) whose ``fixed + batch × per_image`` bytes fit
    :data:`MEMORY_MARGIN` of ``free``; 0 when not even one image does."""
    room = int(free * MEMORY_MARGIN) - fixed
    return max(0, min(largest, room // max(per_image, 1)))


def free_device_memory(device: torch.device) -> int:
    """Bytes free on ``device``: CUDA's own count, else the memory the system can still give
    (``MemAvailable`` on Linux; the physical memory elsewhere)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def time_plan(plan: Plan, space: SearchSpace, device: str | None = None) -> None:
    """Load the space's model and time one forward for the plan's estimate
    (:func:`measure_forward`); without the weights, a note says the estimate is missing."""
    try:
        run = model_run(space, device=device, batch_size=plan.batch_size)
    except WeightsUnavailableError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        plan.notes.append(f"time: not estimated, the weights are not at hand ({reason})")
        return
    ids = [p.id for p in SpaceCatalogue.of(space, run.catalogue.values()).screened]
    plan.seconds_per_image_forward = measure_forward(run, ids, space.timesteps[0])


WARM_UP_IMAGES = 4
"""Images of the timed batch: enough for batching to show, few enough to take seconds."""


def measure_forward(run: DenoiserRun, ids: Sequence[str], timestep: int) -> float:
    """Seconds per image of a denoiser forward capturing ``ids``, timed on a batch of
    ``min(batch size, 4)`` random images after one warm-up forward of that batch."""
    count = min(run.batch_size, WARM_UP_IMAGES)
    pixels = torch.rand(count, 3, *run.image_size, generator=torch.Generator().manual_seed(0))
    latents, noise = run.latents_and_noise(pixels)
    names = variants.base_ids(ids)
    categories = ["object"] * count  # a stand-in category: a {category} prompt times the same
    run.capture_at(latents, noise, timestep, names, categories)
    started = time.perf_counter()
    run.capture_at(latents, noise, timestep, names, categories)
    return (time.perf_counter() - started) / count


def _elements(point: ActivationPoint) -> int:
    return point.channels * point.height * point.width


def _latent_elements(architecture: Architecture, image_size: tuple[int, int]) -> int:
    height, width = architecture.latent_size(image_size)
    return architecture.latent_channels * height * width


def peak_resident_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _weight_bytes(spec: Any, architecture: Architecture, bytes_per: int, notes: list[str]) -> int:
    """Denoiser (built on the meta device) in the dtype, VAE in float32, text encoders in the
    dtype when their configs are at hand (a folder); else left out, with a note."""
    total = _parameters(architecture.build_denoiser("meta")) * bytes_per
    folder = Path(spec.path) if spec.source == "folder" and spec.path else None
    if spec.source == "builtin":
        pipeline = build_tiny_pipeline(spec.name)
        for name, component in pipeline.components.items():
            if isinstance(component, torch.nn.Module) and name != architecture.component:
                total += _parameters(component) * (4 if name == "vae" else bytes_per)
        return total
    if folder is None:
        notes.append("weights count the denoiser only (its VAE and text encoders' configs are not at hand here)")
        return total
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()):
        if sub.name == "vae":
            total += _parameters(_meta_module(sub, diffusers=True)) * 4
        elif sub.name.startswith("text_encoder"):
            total += _parameters(_meta_module(sub, diffusers=False)) * bytes_per
    return total


def _cast_bytes(spec: Any, architecture: Architecture, dtype: str) -> int:
    """Bytes of the denoiser's stored tensors when they are in another dtype than ``dtype``
    (loading then holds them while the cast copy is made); 0 when unknown or not cast."""
    if spec.source != "folder" or not spec.path:
        return 0
    from safetensors import safe_open

    files = sorted((Path(spec.path) / architecture.component).glob("*.safetensors"))
    if not files:
        return 0
    try:
        with safe_open(str(files[0]), "pt") as handle:
            keys = list(handle.keys())
            stored = str(handle.get_slice(keys[0]).get_dtype()) if keys else ""
    except Exception:  # noqa: BLE001 - safetensors' own error type: an unreadable file is the loader's to report
        return 0
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    if names.get(stored, dtype) == dtype:
        return 0
    return sum(f.stat().st_size for f in files)


def _meta_module(folder: Path, diffusers: bool) -> torch.nn.Module:
    import json

    config = json.loads((folder / "config.json").read_text())
    with torch.device("meta"):
        if diffusers:
            import diffusers as library

            return getattr(library, config.get("_class_name", "AutoencoderKL")).from_config(config)
        from transformers import AutoConfig, AutoModel

        return AutoModel.from_config(AutoConfig.from_pretrained(str(folder)))


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def format_bytes(value: int) -> str:
    """``value`` bytes as GiB (from 0.25 GiB) or MiB."""
    return f"{value / 2**30:.2f} GiB" if value >= 2**28 else f"{value / 2**20:.0f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
