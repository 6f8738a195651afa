"""``autosel presets`` and ``env``: what the package ships, and what it runs on (for bug reports)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from autosel.cli.app import app
from autosel.cli.options import FormatOpt
from autosel.output import OutputFormat, print_records

LIBRARIES = ("torch", "diffusers", "transformers", "optuna", "optuna-dashboard", "ray", "numpy")
"""The packages ``autosel env`` reports (their installed distributions' versions)."""


@app.command("presets")
def presets_command(output_format: FormatOpt = OutputFormat.table) -> None:
    """List the shipped literature presets: name, model, activations and source. Any --config
    takes a preset's name instead of a file.

    Example: autosel evaluate --config meng-practical-sd15 --dataset spair:~/SPair-71k:test
    """
    records = preset_records()
    columns = [("name", "name"), ("model", "model"), ("activations", "activations"), ("source", "source")]
    print_records(records, output_format, columns, title=f"{len(records)} presets (use the name with --config)")


def preset_records() -> list[dict[str, object]]:
    """One record per shipped preset: name, model, number of activations, source and file."""
    from autosel.config import FeatureConfig
    from autosel.resources import preset_names, presets_folder

    records = []
    for name in preset_names():
        config = FeatureConfig.from_yaml(presets_folder() / f"{name}.yaml")
        source = config.provenance.source if config.provenance else None
        records.append({"name": name, "model": config.model.name, "activations": len(config.activations),
                        "source": " ".join(str(source or "–").split()), "file": str(presets_folder() / f"{name}.yaml")})
    return records


@app.command("env")
def env_command(output_format: FormatOpt = OutputFormat.table) -> None:
    """Print the versions a bug report needs: autosel, Python, platform, torch, diffusers,
    transformers, optuna, ray, and CUDA (torch's build, the driver's devices).

    Example: autosel env --format yaml
    """
    records = [{"name": name, "version": version} for name, version in environment().items()]
    if output_format is OutputFormat.table:
        print_records(records, output_format, [("name", "name"), ("version", "version")], title="autosel environment")
    else:
        print_records(records, output_format, [])


def environment() -> dict[str, str]:
    """Name → version of autosel, Python, the platform, the main libraries and CUDA."""
    from autosel import __version__

    versions = {"autosel": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    import torch

    versions["cuda (torch build)"] = torch.version.cuda or "none (CPU build)"
    available = torch.cuda.is_available()
    versions["cuda devices"] = (", ".join(torch.cuda.get_device_name(n) for n in range(torch.cuda.device_count()))
                                if available else "none")
    return versions
