"""The house rules, checked on the source: imports point one way (workers → catalog →
similarity), no import cycles inside the catalog, every setting declared once."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("similarity", "catalog", "workers", "config")


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


def _catalog_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in _sources("catalog")}
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


def test_no_import_cycle_inside_the_catalog():
    assert _cycle(_catalog_graph()) is None


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
