"""The README against the code: its configuration table names every setting and no other, and
every relative link or image in the README and in docs/ points to a file that exists.

A *setting* is an environment variable read in ``config/settings/*.py`` (``os.environ.get("X")``,
``os.environ["X"]``, ``os.getenv("X")``, a helper defined in ``base.py`` that reads the variable
named by its first argument, such as ``env_bool("X")``, and ``dj_database_url.config(env="X")``),
plus every ``LOOKALIKE_*`` name assigned at module level in ``config/settings/base.py``. The
configuration table is the first table under the README's ``## Configuration`` heading; its
first column names one setting per row, in backticks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETTINGS = REPO / "config" / "settings"
README = REPO / "README.md"


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` (or a bare ``environ``)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id == "environ"


def _first_str(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _reads_environ(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and _is_environ(func.value):
        return True
    return isinstance(func, ast.Attribute) and func.attr == "getenv"


def _env_helpers(tree: ast.Module) -> set[str]:
    """Functions whose first parameter names the variable they read from the environment."""
    helpers: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.args.args:
            param = node.args.args[0].arg
            for inner in ast.walk(node):
                if (isinstance(inner, ast.Call) and _reads_environ(inner) and inner.args
                        and isinstance(inner.args[0], ast.Name) and inner.args[0].id == param):
                    helpers.add(node.name)
    return helpers


def _database_url_env(call: ast.Call) -> str | None:
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "config"
            and isinstance(func.value, ast.Name) and func.value.id == "dj_database_url"):
        return None
    for keyword in call.keywords:
        if keyword.arg == "env" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return "DATABASE_URL"  # dj_database_url's own default


def _call_reads(call: ast.Call, helpers: set[str]) -> str | None:
    if _reads_environ(call):
        return _first_str(call)
    if isinstance(call.func, ast.Name) and call.func.id in helpers:
        return _first_str(call)
    return _database_url_env(call)


def _subscript_reads(node: ast.Subscript) -> str | None:
    key = node.slice
    if _is_environ(node.value) and isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key.value
    return None


def environment_reads(source: str, helpers: set[str]) -> set[str]:
    """The environment variables a settings module reads (f-strings included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Call):
            name = _call_reads(node, helpers)
        elif isinstance(node, ast.Subscript):
            name = _subscript_reads(node)
        if name:
            found.add(name)
    return found


def assigned_lookalike_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names.update(t.id for t in targets
                     if isinstance(t, ast.Name) and t.id.startswith("LOOKALIKE_"))
    return names


def declared_settings(settings_dir: Path = SETTINGS) -> set[str]:
    base = (settings_dir / "base.py").read_text()
    helpers = _env_helpers(ast.parse(base))
    names = assigned_lookalike_names(base)
    for path in sorted(settings_dir.glob("*.py")):
        names |= environment_reads(path.read_text(), helpers)
    return names


def configuration_table(readme: str) -> list[str]:
    """First-column names of the first table under ``## Configuration``."""
    section = re.split(r"^## Configuration[ \t]*$", readme, maxsplit=1, flags=re.M)
    if len(section) < 2:
        return []
    body = re.split(r"^## ", section[1], maxsplit=1, flags=re.M)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    names = []
    for row in rows[2:]:  # header and separator
        first = row.strip("|").split("|")[0]
        names += re.findall(r"`([A-Z][A-Z0-9_]*)`", first)
    return names


def table_mismatch(readme: str, declared: set[str]) -> tuple[set[str], set[str]]:
    """(settings missing from the table, names in the table that are no setting)."""
    documented = set(configuration_table(readme))
    return declared - documented, documented - declared


def test_the_configuration_table_names_every_setting_and_no_other() -> None:
    missing, extra = table_mismatch(README.read_text(), declared_settings())
    assert (sorted(missing), sorted(extra)) == ([], [])


def test_the_configuration_table_names_each_setting_once() -> None:
    names = configuration_table(README.read_text())
    assert sorted({n for n in names if names.count(n) > 1}) == []


SAMPLE_SETTINGS = '''
import os
def env_flag(name, default):
    value = os.environ.get(name)
    return default if value is None else value == "1"
DATABASES = {"default": dj_database_url.config(env="DB_URL", default="sqlite://")}
DEBUG = env_flag("APP_DEBUG", False)
KEY = os.environ["APP_KEY"]
LOOKALIKE_SIZE = int(os.environ.get("LOOKALIKE_SIZE", 3))
LOOKALIKE_DERIVED = LOOKALIKE_SIZE * 2
LOCK = f"redis://x/{os.environ.get('APP_DB', '9')}"
'''

SAMPLE_README = """# X

## Configuration

| variable | default | meaning |
|---|---|---|
| `APP_DEBUG` | off | debug |
| `APP_KEY` | — | the key |
| `DB_URL` | sqlite | the database |
| `LOOKALIKE_SIZE` | 3 | a size |
| `LOOKALIKE_DERIVED` | 6 | derived |
| `APP_DB` | 9 | a database number |

## Next

| `NOT_A_SETTING` | in another section |
"""


def test_the_checker_reads_every_kind_of_setting(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text(SAMPLE_SETTINGS)
    assert declared_settings(tmp_path) == {
        "APP_DEBUG", "APP_KEY", "DB_URL", "LOOKALIKE_SIZE", "LOOKALIKE_DERIVED", "APP_DB"}


def test_the_checker_catches_a_missing_and_an_extra_row(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text(SAMPLE_SETTINGS)
    declared = declared_settings(tmp_path)
    assert table_mismatch(SAMPLE_README, declared) == (set(), set())
    without_key = SAMPLE_README.replace("| `APP_KEY` | — | the key |\n", "")
    assert table_mismatch(without_key, declared) == ({"APP_KEY"}, set())
    with_ghost = SAMPLE_README.replace("| `APP_DB` |", "| `APP_GHOST` | x | y |\n| `APP_DB` |")
    assert table_mismatch(with_ghost, declared) == (set(), {"APP_GHOST"})


# --- links ----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


def broken_links(path: Path) -> list[str]:
    text = path.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{path.name}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
            broken.append(f"{path.name}: {target} (no such heading)")
    return broken


def test_every_relative_link_and_image_points_to_something_that_exists() -> None:
    documents = [README, *sorted((REPO / "docs").glob("*.md"))]
    assert [b for doc in documents for b in broken_links(doc)] == []


def test_the_link_checker_sees_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    doc = tmp_path / "doc.md"
    doc.write_text("# Top\n\n## Two words\n\n![a](a.png) [b](#two-words) [c](b.png) [d](#none)"
                   " [e](https://example.com/x.png)\n")
    assert broken_links(doc) == ["doc.md: b.png (no such file)", "doc.md: #none (no such heading)"]
