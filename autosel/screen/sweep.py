"""The screening sweep: every candidate activation alone at every timestep, on the search split.

One denoiser forward per (image batch, timestep) captures all candidates at once; each
candidate's map goes straight into its own streaming task scorer, so memory stays bounded by
what the scorers still need. Scores land in the SQL store (one transaction per timestep, so an
interrupted sweep keeps what it finished) and a rerun scores only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from autosel import atomic, variants
from autosel.candidates import SpaceCatalogue
from autosel.catalog import ActivationPoint
from autosel.config import FeatureConfig
from autosel.denoiser import DenoiserRun, resolve_dtype
from autosel.encoding import Encoded, encode_images, model_run
from autosel.extract import combine_features
from autosel.images import images_digest
from autosel.log import event
from autosel.models import resolve_model
from autosel.models.architecture import load_architecture
from autosel.plots import sweep_heatmap
from autosel.progress import progress_bar
from autosel.space import SearchSpace, canonical_model
from autosel.store import SweepStore, default_storage
from autosel.tasks import Task, make_task


@dataclass
class SweepResult:
    """A finished sweep: its rows (every metric) and what it cost.

    Attributes:
        rows: tidy rows (model, revision, id, kind, stage, level, channels, timestep, metric,
            value, n_items, seconds, …) of every candidate × timestep × metric.
        metric: the task's primary metric.
        forwards: denoiser forwards run now (0 when everything was reused).
        computed, reused: (id, timestep) pairs scored now / found in the store.
        csv, heatmap: the files written.
        key: the sweep's key in the store (see :func:`sweep_key`).
    """

    rows: pd.DataFrame
    metric: str
    forwards: int
    computed: int
    reused: int
    csv: Path | None = None
    heatmap: Path | None = None
    key: str = ""

    @property
    def primary(self) -> pd.DataFrame:
        """Rows of the primary metric only."""
        return self.rows[self.rows["metric"] == self.metric].reset_index(drop=True)

    def top(self, count: int = 10) -> pd.DataFrame:
        """The ``count`` best (id, timestep) by the primary metric."""
        return self.primary.sort_values("value", ascending=False, kind="stable").head(count).reset_index(drop=True)


def base_config(space: SearchSpace, activation: str, timestep: int) -> FeatureConfig:
    """The single-activation feature config a sweep scores for one candidate (a catalogue id or
    a variant such as ``ID:drop-massive``)."""
    name, post = variants.split_variant(activation)
    return space.feature_config([{"id": name, "timestep": timestep, "post": post}])


def sweep_key(space: SearchSpace, task: Task, image_size: tuple[int, int], role: str = "search") -> str:
    """A digest of everything that changes sweep scores (not the candidate list or timesteps)."""
    model = space.model_section()
    parts: dict[str, Any] = {
        "model": canonical_model(model.name), "revision": model.revision, "dtype": model.dtype,
        "task": space.task, "dataset": space.dataset, "role": role, "options": stored_options(space.task_options()),
        "image_size": list(image_size), "extraction": space.extraction_section().identity(),
        "images": images_digest(task.images), "seed": space.seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def sweep_file_stem(space: SearchSpace, image_size: tuple[int, int], key: str) -> str:
    """``sweep-HxW-DTYPE-KEY``: the name of a sweep's CSV and heatmap, keyed by what changes its
    scores (size and dtype spelled out; dataset, proxy and the rest in the first 8 characters
    of the sweep key), so sweeps with other settings are kept side by side."""
    return f"sweep-{image_size[0]}x{image_size[1]}-{space.dtype}-{key[:8]}"


def stored_options(options: dict[str, Any]) -> dict[str, Any]:
    """Task options as sweep keys spell them: ``shapes_size`` keeps its earlier name
    ``image_size`` there, so the screens stores already hold are found again (a screen of a real
    model costs GPU hours)."""
    return {("image_size" if name == "shapes_size" else name): value for name, value in options.items()}


def run_sweep(
    space: SearchSpace,
    out: str | Path = "runs",
    storage: str | None = None,
    pipeline: Any | None = None,
    device: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    write_files: bool = True,
    compute: Callable[[dict[int, list[str]]], Iterable[tuple[list[dict[str, Any]], int]]] | None = None,
    run: DenoiserRun | None = None,
    noise_levels: Mapping[int, tuple[float, float]] | None = None,
) -> SweepResult:
    """Score every candidate of ``space`` alone at every timestep on the search split.

    Args:
        space: candidates, timesteps, task, dataset and proxy size.
        out: output folder; files go to ``OUT/<model>/<task>/sweep.{csv,png}``.
        storage: SQLAlchemy URL; default ``sqlite:///OUT/autosel.db``.
        pipeline: an already loaded pipeline (default: load ``space.model``).
        device, batch_size: where and how many images per denoiser forward.
        progress: show a progress bar.
        write_files: write the CSV and the heatmap.
        compute: run the screening elsewhere (e.g. sharded over Ray workers): called with
            ``{timestep: [ids]}`` still to score, it yields (rows, forwards run) pairs (rows
            as :func:`screen_rows` makes them); this process only stores them and loads no
            weights.
        run: the space's model already loaded (see :func:`model_run`); default: load it here.
        noise_levels: ``{timestep: (t, σ)}`` for the table's ``sigma`` column; default: from the
            loaded model (none with ``compute`` alone: the column is then left out).

    Raises:
        UnknownActivationError: a glob matches nothing.
        InvalidInputError: a timestep outside the scheduler's range.
        DatasetError, StorageError: bad proxy data or an unusable store.
    """
    out = Path(out)
    space = space.replace(dtype=resolve_dtype(space.dtype, device))
    store = SweepStore(storage or default_storage(out))
    extractor = None
    if compute is None:
        if run is None:
            event(f"loading {space.model} ({space.dtype})", model=space.model, dtype=space.dtype)
        extractor = run or model_run(space, pipeline, device, batch_size)
        if space.sigmas is not None:  # the store keys by integer t: the nearest one to each σ
            space = space.with_timesteps([extractor.timestep_for_sigma(sigma) for sigma in space.sigmas])
        catalogue, image_size = SpaceCatalogue.of(space, extractor.catalogue.values()), tuple(extractor.image_size)
        for timestep in space.timesteps:
            extractor.check_request(timestep, [])
    else:
        catalogue = SpaceCatalogue.of(space)  # timesteps: checked by the space
        image_size = _image_size(space)
    candidates = catalogue.candidates
    task = make_task(space.task, space.dataset, "search", **space.task_options())
    key = sweep_key(space, task, image_size)
    done = store.done(key)
    todo = {t: [p.id for p in candidates if (p.id, t) not in done] for t in space.timesteps}
    todo = {t: names for t, names in todo.items() if names}
    computed = sum(len(names) for names in todo.values())
    forwards = 0
    if computed:
        if compute is None:
            assert extractor is not None
            before = extractor.forward_count  # a loaded run may have run a warm-up forward already
            for records in screen_rows(space, task, extractor, todo, progress):
                store.add(key, records)
            forwards = extractor.forward_count - before
        else:
            for records, count in compute(todo):
                store.add(key, records)
                forwards += count
    if noise_levels is None and extractor is not None:
        noise_levels = {t: extractor.noise_level(t) for t in space.timesteps}
    rows = _space_rows(store, key, candidates, space.timesteps, noise_levels)
    wanted = len(candidates) * len(space.timesteps)
    result = SweepResult(rows, task.primary_metric, forwards, computed, wanted - computed, key=key)
    if write_files:
        folder = out / Path(space.model).name / space.task
        folder.mkdir(parents=True, exist_ok=True)
        result.csv = folder / f"{sweep_file_stem(space, image_size, key)}.csv"
        atomic.write_with(result.csv, lambda temporary: rows.to_csv(temporary, index=False))
        title = f"{space.model} · {space.task} on {space.dataset} (search) · {task.primary_metric}"
        result.heatmap = sweep_heatmap(result.primary, result.csv.with_suffix(".png"), title, f"{task.primary_metric} (%)")
    return result


def stored_screen(space: SearchSpace, storage: str, task: Task | None = None) -> tuple[dict[int, list[str]], SweepResult | None]:
    """What ``storage`` holds of the sweep of ``space`` (on ``task``, default the space's search
    task): ``{timestep: [ids]}`` still to score (all of it without a store; a sweep runs one
    forward per image batch for each of these timesteps) and, when nothing is left, the stored
    sweep. Loads no model, writes nothing (what a plan needs to count reuse)."""
    candidates = SpaceCatalogue.of(space).candidates
    task = task or make_task(space.task, space.dataset, "search", **space.task_options())
    key = sweep_key(space, task, _image_size(space))
    store = SweepStore.existing(storage)
    done = store.done(key) if store is not None else set()
    todo = {t: [p.id for p in candidates if (p.id, t) not in done] for t in space.timesteps}
    todo = {t: names for t, names in todo.items() if names}
    if todo or store is None:
        return todo, None
    rows = _space_rows(store, key, candidates, space.timesteps, None)
    return todo, SweepResult(rows, task.primary_metric, 0, 0, len(candidates) * len(space.timesteps), key=key)


def _space_rows(store: SweepStore, key: str, candidates: Sequence[ActivationPoint], timesteps: Iterable[int],
                noise_levels: Mapping[int, tuple[float, float]] | None) -> pd.DataFrame:
    """The stored rows of ``candidates`` × ``timesteps`` in catalogue order, with a ``sigma``
    column when ``noise_levels`` are known."""
    rows = store.rows(key)
    wanted = {(p.id, t) for p in candidates for t in timesteps}
    rows = rows[[(i, int(t)) in wanted for i, t in zip(rows["id"], rows["timestep"])]]
    order = {p.id: n for n, p in enumerate(candidates)}
    rows = rows.assign(_order=rows["id"].map(order)).sort_values(["_order", "timestep", "metric"], kind="stable")
    rows = rows.drop(columns=["_order", "row", "sweep_key", "created"]).reset_index(drop=True)
    if noise_levels:  # σ of each timestep at this size, beside t (rectified flow: after the scheduler's shift)
        rows.insert(rows.columns.get_loc("timestep") + 1, "sigma", [round(noise_levels[int(t)][1], 4) for t in rows["timestep"]])
    return rows


def _image_size(space: SearchSpace) -> tuple[int, int]:
    if space.image_size is not None:
        size = space.image_size
        return (size, size) if isinstance(size, int) else tuple(size)
    native = load_architecture(resolve_model(space.model)).native_resolution
    return (native, native) if isinstance(native, int) else tuple(native)


def screen_rows(
    space: SearchSpace,
    task: Task,
    extractor: DenoiserRun,
    todo: dict[int, list[str]],
    progress: bool = True,
    encoded: Encoded | None = None,
    keep: Callable[[str, int, list[int], torch.Tensor], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Score ``{timestep: [ids]}``, yielding each timestep's rows (every metric) when done.

    Images are encoded and noised once (or taken from ``encoded``); then one forward per image
    batch and timestep captures every id of that timestep, and each id's map goes straight to
    its own scorer (and to ``keep(id, timestep, image indices, maps)`` when given: see
    :class:`~autosel.cache.fill.ScreenedFeatures`).
    """
    encoded = encoded if encoded is not None else encode_images(task, extractor, progress)
    image_batches = [batch for batch, _, _ in encoded]
    prepared = [(latents, noise) for _, latents, noise in encoded]
    catalogue = variants.with_variants(extractor.catalogue, [name for names in todo.values() for name in names])
    with progress_bar("screening", len(image_batches) * len(todo), progress) as advance:
        for timestep, names in todo.items():
            event(f"screening t={timestep}: {len(names)} candidates, {len(image_batches)} forwards", timestep=timestep,
                  candidates=len(names), forwards=len(image_batches))
            configs = {name: base_config(space, name, timestep) for name in names}
            scorers = {name: task.scorer() for name in names}
            seconds = dict.fromkeys(names, 0.0)
            for batch, (latents, noise) in zip(image_batches, prepared):
                started = time.perf_counter()
                captured = extractor.capture_at(latents, noise, timestep, variants.base_ids(names), task.categories_of(batch))
                shared = (time.perf_counter() - started) / len(names)
                for name in names:
                    started = time.perf_counter()
                    base, _ = variants.split_variant(name)
                    value = variants.apply(captured[base], name)
                    if keep is not None:
                        keep(name, timestep, batch, value)
                    maps = combine_features(configs[name], {base: value}).cpu().to(torch.float16)
                    for index, value in zip(batch, maps):
                        scorers[name].add(index, value)
                    seconds[name] += shared + time.perf_counter() - started
                advance(1)
            records = []
            for name in names:
                point = catalogue[name]
                started = time.perf_counter()
                result = scorers[name].result()
                spent = seconds[name] + time.perf_counter() - started
                for metric, value in result.metrics.items():
                    records.append(_row(space, extractor, point, timestep, metric, value, result.n_items, spent))
            yield records


def _row(
    space: SearchSpace, extractor: DenoiserRun, point: ActivationPoint, timestep: int,
    metric: str, value: float, n_items: int, seconds: float,
) -> dict[str, Any]:
    return {
        "model": space.model, "revision": extractor.denoiser.revision, "task": space.task,
        "dataset": space.dataset, "role": "search", "id": point.id, "kind": point.kind, "stage": point.stage,
        "level": point.level, "channels": point.channels, "height": point.height, "width": point.width,
        "depth": point.depth, "timestep": timestep, "metric": metric, "value": float(value),
        "n_items": n_items, "seconds": seconds,
    }
