"""The house rules, checked on the source: imports point one way (workers → catalog →
similarity), the catalog reaches the engine only through its public surface, no import cycle
anywhere (function-level imports included), unique module names, modules and classes of a
readable size, and every setting declared once."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("similarity", "catalog", "workers", "config")
# Everything whose imports are checked for cycles: the product, its benchmarks and scripts.
ALL_PACKAGES = (*PACKAGES, "bench", "scripts")


def _sources(package: str) -> Iterator[Path]:
    for path in sorted((REPO / package).rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute module names the file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {name}"
        for path in _sources(package)
        for name in sorted(_imports(path))
        if name.split(".")[0] in forbidden
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("similarity", ("django", "celery", "kombu", "catalog", "workers", "config")),
        ("catalog", ("workers",)),
    ],
)
def test_dependencies_point_one_way(package, forbidden):
    assert _offenders(package, forbidden) == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from workers.app import app\n    return app\n")
    assert "workers.app" in _imports(bad)


def _graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module → the project's modules it imports (``from a import b`` counts as a.b when b is a
    module, else as a). Parent packages' ``__init__`` are not counted: importing a.b.c runs
    a/__init__, but that is Python's order, not a dependency of a.b.c's code."""
    modules = {_module_name(p): p for package in packages for p in _sources(package)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_anywhere():
    assert _cycle(_graph(ALL_PACKAGES)) is None


def test_the_graph_sees_function_level_imports():
    graph = _graph(ALL_PACKAGES)
    assert "similarity.model.convert" in graph["similarity.model.cache"]


@pytest.mark.parametrize("package", ["catalog", "workers", "config", "scripts"])
def test_the_engine_is_reached_only_through_its_public_surface(package):
    reached = [f"{path.relative_to(REPO)} imports {name}"
               for path in _sources(package) for name in sorted(_imports(path))
               if name.startswith("similarity.") and name.rpartition(".")[0] != "similarity"]
    assert reached == []


def test_the_engine_never_imports_its_own_surface():
    """Modules inside similarity import each other directly, so the surface can import them."""
    offenders = [str(path.relative_to(REPO)) for path in _sources("similarity")
                 if path.name != "__init__.py" and "similarity" in _imports(path)]
    assert offenders == []


def test_the_engine_reads_no_environment_variable():
    offenders = [str(path.relative_to(REPO)) for path in _sources("similarity")
                 if re.search(r"os\.environ\.get|os\.getenv|environ\[", path.read_text())]
    assert offenders == []


# Names Django or Python give a meaning to, expected once per app or package.
CONVENTIONAL = {"__init__", "__main__", "admin", "apps", "models", "urls", "views", "forms",
                "signals", "tasks", "base", "local", "production", "test", "wsgi", "conftest"}


def test_every_module_name_is_unique():
    seen: dict[str, list[str]] = {}
    for package in ALL_PACKAGES:
        for path in _sources(package):
            name = path.parent.name if path.stem == "__init__" else path.stem
            if name not in CONVENTIONAL and not name.startswith("_") and name != package:
                seen.setdefault(name, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
# A module or class may be longer when a comment in it says why: "# long-module: <why>" or,
# inside the class, "# long-class: <why>".
PRODUCT = ("similarity", "catalog", "workers", "config", "scripts")


def test_no_module_is_too_long_without_a_reason():
    long = [f"{path.relative_to(REPO)}: {n} lines"
            for package in PRODUCT for path in _sources(package)
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
            and "# long-module:" not in path.read_text()]
    assert long == []


def _long_classes(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            body = lines[node.lineno - 1 : node.end_lineno]
            if len(body) > MAX_CLASS_LINES and not any("# long-class:" in line for line in body):
                found.append(f"{path.name}: class {node.name} {len(body)} lines")
    return found


def test_no_class_is_too_long_without_a_reason():
    assert [c for package in PRODUCT for path in _sources(package) for c in _long_classes(path)] == []


def test_the_size_checker_sees_a_long_class(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("class A:\n" + "    x = 1\n" * (MAX_CLASS_LINES + 1))
    assert _long_classes(source) != []
    source.write_text("class A:\n    # long-class: one table\n" + "    x = 1\n" * (MAX_CLASS_LINES + 1))
    assert _long_classes(source) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _declared_settings() -> set[str]:
    text = (REPO / "config" / "settings" / "base.py").read_text()
    return set(re.findall(r"^(LOOKALIKE_[A-Z0-9_]+)\s*[:=]", text, re.M))


def test_every_lookalike_setting_is_declared_once_and_read_directly():
    declared = _declared_settings()
    used: set[str] = set()
    hidden_defaults: list[str] = []
    for package in ("catalog", "workers", "config"):
        for path in _sources(package):
            text = path.read_text()
            used.update(re.findall(r"settings\.(LOOKALIKE_[A-Z0-9_]+)", text))
            hidden_defaults += [f"{path.relative_to(REPO)}: {m}"
                                for m in re.findall(r"getattr\(settings,[^)]*\)", text)]
    assert hidden_defaults == []
    assert used - declared == set()
    base = (REPO / "config" / "settings" / "base.py").read_text()
    assert [n for n in declared if len(re.findall(rf"^{n}\s*[:=]", base, re.M)) != 1] == []


def test_the_task_names_are_spelled_in_one_module():
    spelled = []
    for package in PACKAGES:
        for path in _sources(package):
            if path.name != "task_names.py" and re.search(r"[\"']workers\.tasks\.\w+[\"']",
                                                          path.read_text()):
                spelled.append(str(path.relative_to(REPO)))
    assert spelled == []
