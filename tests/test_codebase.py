"""Rules about the code itself: tests and experiments use autosel's public names only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def private_imports(path: Path) -> list[str]:
    """``module.name`` of every import of an underscore name from autosel in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autosel"):
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("autosel") and
                      any(part.startswith("_") and not part.startswith("__") for part in alias.name.split("."))]
    return found


def test_no_test_or_experiment_imports_a_private_name_from_autosel():
    offenders = {str(path.relative_to(ROOT)): names for folder in ("tests", "experiments")
                 for path in sorted((ROOT / folder).rglob("*.py")) if (names := private_imports(path))}
    assert offenders == {}


def test_the_rule_sees_a_private_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from autosel.pipeline import _hidden, shown, __version__\nimport autosel._secret\nfrom os import _exit\n")
    assert private_imports(probe) == ["autosel.pipeline._hidden", "autosel._secret"]
