"""Files the package ships: the search spaces and the literature presets.

The sources are the checkout's top-level ``search_spaces/`` and ``results/presets/``; in the
package they are ``autosel/shipped/search_spaces`` and ``autosel/shipped/presets`` (links in a
checkout, copies inside a built wheel), so an installed autosel finds them without a checkout.
"""

from __future__ import annotations

from pathlib import Path

from autosel.errors import did_you_mean
from autosel.schema import ConfigError

SHIPPED = Path(__file__).resolve().parent / "shipped"


def spaces_folder() -> Path:
    """The shipped search spaces (``<model>.yaml`` each)."""
    return SHIPPED / "search_spaces"


def presets_folder() -> Path:
    """The shipped literature presets (feature configs with their published scores)."""
    return SHIPPED / "presets"


def preset_names() -> list[str]:
    """The names of the shipped presets (``autosel presets`` lists them)."""
    return sorted(path.stem for path in presets_folder().glob("*.yaml"))


def config_path(reference: str | Path) -> Path:
    """The file a ``--config`` names: an existing file as given, else the shipped preset of that
    name (``meng-practical-sdxl``, with or without ``.yaml``), else ``reference`` unchanged
    (reading it then fails naming the file)."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    if path.parent == Path(".") or path.parent == Path("results/presets"):  # a bare name, or the README's old spelling
        shipped = presets_folder() / f"{name}.yaml"
        if shipped.is_file():
            return shipped
        if path.suffix == "" and not path.exists():  # a name that is neither a file nor a preset
            raise ConfigError(f"{reference}: no such feature config file, nor a shipped preset of that name."
                              f"{did_you_mean(name, preset_names())} Presets: {', '.join(preset_names())} (`autosel presets`)")
    return path
