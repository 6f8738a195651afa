"""Files the package ships: the search spaces and the literature presets.

The sources are the checkout's top-level ``search_spaces/`` and ``results/presets/``; in the
package they are ``autosel/shipped/search_spaces`` and ``autosel/shipped/presets`` (links in a
checkout, copies inside a built wheel), so an installed autosel finds them without a checkout.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "shipped"


def spaces_folder() -> Path:
    """The shipped search spaces (``<model>.yaml`` each)."""
    return SHIPPED / "search_spaces"


def presets_folder() -> Path:
    """The shipped literature presets (feature configs with their published scores)."""
    return SHIPPED / "presets"
