"""Checks that run before any expensive stage, so a search fails in its first second, not after
the screen: every name validated, the model's files found, and each folder and the store
created and written to. A failure raises one :class:`~autosel.errors.AutoselError` line and
leaves nothing behind (probe files are removed; the caller drops a study it just created).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from autosel.data.specs import _SPAIR_ROLE_SPLIT, DatasetSpec, shared_split
from autosel.denoiser import check_device
from autosel.errors import DatasetError, InvalidInputError, WeightsUnavailableError
from autosel.models import ModelSpec, load_architecture
from autosel.models.loading import check_model_files
from autosel.tasks import get_task


class FolderNotWritableError(InvalidInputError):
    """A folder autosel must write (output, cache) cannot be created or written."""


def probe_folder(path: str | Path, what: str, option: str) -> Path:
    """Create ``path`` (with parents) and write, then delete, a small probe file in it.

    Raises:
        FolderNotWritableError: naming ``what``, the path, the reason and the ``option`` to change.
    """
    folder = Path(path).expanduser()
    probe = folder / f".autosel-probe-{uuid.uuid4().hex[:8]}"
    try:
        if folder.exists() and not folder.is_dir():
            raise FolderNotWritableError(f"{what} {folder} is a file, not a folder: choose another with {option}")
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"autosel probe\n")
        probe.unlink()
    except OSError as error:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)  # a probe written to a full disk
        reason = "no space left on the device" if error.errno == errno.ENOSPC else (error.strerror or str(error)).lower()
        raise FolderNotWritableError(f"cannot write the {what} {folder}: {reason}; choose another with {option}") from None
    return folder


def probe_output_file(path: str | Path, option: str = "--out") -> Path:
    """Check that a file can be written at ``path``: not an existing folder, its folder writable.

    Raises:
        FolderNotWritableError: ``path`` is a folder, or its folder cannot be written.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise FolderNotWritableError(f"{option} {target} is a folder: give a file name, e.g. {target / 'features.safetensors'}")
    probe_folder(target.parent if str(target.parent) else Path("."), "folder of", option)
    return target


def check_dataset_names(task: str, dataset: str) -> None:
    """The task is registered and the dataset spec parses and names an existing path.

    Raises:
        InvalidInputError: an unknown task (with the close match); DatasetError: a bad dataset spec.
    """
    get_task(task)
    spec = DatasetSpec.parse(dataset)
    if spec.path is not None and not spec.path.exists():
        raise DatasetError(f"dataset {dataset}: {spec.path} does not exist")


def check_distinct_roles(dataset: str) -> None:
    """Refuse a dataset spec that pins one split for both the search and the held-out role.

    Raises:
        DatasetError: naming the split, the default splits and ``--allow-same-split``.
    """
    split = shared_split(dataset)
    if split is not None:
        raise DatasetError(
            f"dataset {dataset} pins split '{split}' for both the search and the held-out role, so the "
            f"held-out scores would be measured on the search pairs: drop ':{split}' (search reads "
            f"{_SPAIR_ROLE_SPLIT['search']}, held-out {_SPAIR_ROLE_SPLIT['heldout']}) or pass --allow-same-split "
            "to have every such score labelled 'not held-out'"
        )


def preflight(
    *,
    model: str,
    task: str,
    dataset: str,
    device: str | None,
    out: str | Path,
    cache_dir: str | Path | None = None,
    strategy: str | None = None,
    both_roles: bool = False,
    allow_same_split: bool = False,
) -> None:
    """Everything a sweep or search checks before loading a model or touching the store
    (``both_roles``: the run scores the held-out role too, see :func:`check_distinct_roles`).

    Raises:
        AutoselError: the first problem found, as one line.
    """
    if strategy is not None:
        # lazy: only searches name a strategy, and the strategies module loads Optuna (extract does not)
        from autosel.optimise.strategies import check_strategy

        check_strategy(strategy)
    check_dataset_names(task, dataset)
    if both_roles and not allow_same_split:
        check_distinct_roles(dataset)
    check_device(device)
    spec = check_model_files(model)
    check_onboardable(spec)
    # folders last: a run refused for any reason above leaves no folder behind
    probe_folder(out, "output folder", "--out")
    if cache_dir is not None:
        probe_folder(cache_dir, "activation cache folder", "--cache-dir or AUTOSEL_CACHE_DIR")


def check_onboardable(spec: ModelSpec) -> None:
    """The model's architecture can be read and its activation points found (for the generic
    path: its blocks, image tokens and patch size measured), reading no weights.

    Raises:
        UnsupportedModelError: one line naming what failed (e.g. no repeated transformer blocks).
    """
    try:
        architecture = load_architecture(spec)
    except WeightsUnavailableError:
        if os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0"):
            return  # online, no offline config: the files download with the weights, and loading says what fails
        raise
    architecture.pixel_step  # noqa: B018 - measures the layout where the family records it (the generic path)

