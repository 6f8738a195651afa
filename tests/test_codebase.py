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


def import_cycles(package: Path) -> list[set[str]]:
    """Groups of modules of ``package`` that import each other in a loop, counting every import
    (top-level, function-local and under ``TYPE_CHECKING``)."""
    def name_of(path: Path) -> str:
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(path): path for path in package.rglob("*.py")}
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges[module].add(target)

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reach = {module: reaches(module) for module in modules}
    groups = {frozenset({m} | {o for o in reach[m] if m in reach[o]}) for m in modules if m in reach[m]}
    return [set(group) for group in groups]


def test_autosel_has_no_import_cycle():
    assert import_cycles(ROOT / "autosel") == []


def test_the_cycle_rule_sees_a_function_local_import_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg.a import other\n")
    assert import_cycles(package) == [{"pkg.a", "pkg.b"}]


def family_branches(path: Path, names: set[str]) -> list[str]:
    """``file:line`` of every comparison with a family name and every collection of two or more
    family names in ``path`` (code that branches on a family)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Compare):
            values = [node.left, *node.comparators]
        elif isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            values = node.elts if sum(isinstance(v, ast.Constant) and v.value in names for v in node.elts) >= 2 else []
        else:
            continue
        found += [f"{path.name}:{node.lineno} {v.value!r}" for v in values if isinstance(v, ast.Constant) and v.value in names]
    return found


def test_no_module_outside_models_branches_on_a_model_family():
    from autosel.models.families import registered_families

    names = set(registered_families())
    offenders = [
        found for path in sorted((ROOT / "autosel").rglob("*.py"))
        if "models" not in path.relative_to(ROOT / "autosel").parts for found in family_branches(path, names)
    ]
    assert offenders == []


def test_the_family_rule_sees_a_branch_on_a_family_name(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('if arch.family == "pixart":\n    pass\nKNOWN = {"sd3", "flux"}\nNAMES = {"if-i-l": "if"}\n')
    assert family_branches(probe, {"pixart", "sd3", "flux", "if"}) == ["probe.py:1 'pixart'", "probe.py:3 'sd3'", "probe.py:3 'flux'"]


LOCAL_IMPORT_EXEMPT = ("cli/", "api.py", "__init__.py", "runtime/workers.py")
"""Where function-local imports are the design: the CLI and the API import on first use (each
command pays only for what it runs), and the Ray worker module imports inside the actor."""


def local_first_party_imports(package: Path) -> list[tuple[str, int, bool]]:
    """(file, line, has a reason) of every function-local ``autosel`` import in the library code of
    ``package``; the reason is a comment on the line above."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(LOCAL_IMPORT_EXEMPT) or relative.endswith(LOCAL_IMPORT_EXEMPT):
            continue
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                module = node.module if isinstance(node, ast.ImportFrom) else (node.names[0].name if isinstance(node, ast.Import) else None)
                if module and module.startswith(package.name):
                    found.append((relative, node.lineno, lines[node.lineno - 2].strip().startswith("#")))
    return found


def test_library_code_has_at_most_five_function_local_imports_each_with_a_reason():
    found = local_first_party_imports(ROOT / "autosel")
    assert len(found) <= 5, found
    assert [place for place in found if not place[2]] == []


def test_the_local_import_rule_sees_an_import_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    # lazy: heavy\n    from pkg.b import x\n\n\ndef g():\n    import pkg.c\n")
    assert local_first_party_imports(package) == [("a.py", 3, True), ("a.py", 7, False)]


STAGES = ("screen", "cache", "optimise", "runtime")


def package_imports(package: Path, first: str, second: str) -> bool:
    """True when a module of subpackage ``first`` imports one of ``second`` (any import)."""
    for path in (package / first).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(name == f"{package.name}.{second}" or name.startswith(f"{package.name}.{second}.") for name in names):
                return True
    return False


def test_no_two_stage_packages_import_each_other():
    package = ROOT / "autosel"
    both_ways = [(a, b) for n, a in enumerate(STAGES) for b in STAGES[n + 1:]
                 if package_imports(package, a, b) and package_imports(package, b, a)]
    assert both_ways == []


def class_names(package: Path) -> dict[str, list[str]]:
    """Class name → the modules of ``package`` defining a class of that name."""
    names: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                names.setdefault(node.name, []).append(path.relative_to(package).as_posix())
    return names


def test_no_two_classes_in_the_package_share_a_name():
    assert {name: where for name, where in class_names(ROOT / "autosel").items() if len(where) > 1} == {}


def test_no_worker_pool_call_names_its_method_as_a_string():
    calls = []
    for path in sorted((ROOT / "autosel").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                    and node.func.attr in {"imap", "map", "on_one", "broadcast", "_imap", "_map", "_on_one", "_broadcast"}:
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


def test_every_post_a_feature_config_accepts_is_a_registered_post_processor():
    import typing

    from autosel.config import Activation
    from autosel.postprocess import POST_PROCESSORS

    assert set(typing.get_args(Activation.model_fields["post"].annotation)) == set(POST_PROCESSORS)


def stage_submodule_imports(cli: Path, stages: tuple[str, ...] = ("screen", "cache", "optimise")) -> list[str]:
    """``file: module`` of every import in ``cli`` of a stage package's own module (not the package's
    public names, ``autosel.screen`` itself, nor the API)."""
    found = []
    for path in sorted(cli.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}: {name}" for name in names
                      if any(name.startswith(f"autosel.{stage}.") for stage in stages)]
    return found


def test_the_cli_reaches_screening_caching_and_optimising_only_through_public_names():
    assert stage_submodule_imports(ROOT / "autosel" / "cli") == []


def test_the_cli_rule_sees_an_import_of_a_stage_module(tmp_path):
    (tmp_path / "command.py").write_text("from autosel.screen.sweep import run_sweep\nfrom autosel.screen import run_sweep\n")
    assert stage_submodule_imports(tmp_path) == ["command.py: autosel.screen.sweep"]
