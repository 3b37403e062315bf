"""The tree's own rules: the README's layout section matches ``ls include/modelwatch``, and no function
runs over 60 lines unless a ``# long: <reason>`` comment right above its ``def`` says why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "include" / "modelwatch"
MAX_LINES = 60


def _layout_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def _listed_entries() -> set[str]:
    """The names the layout section gives under ``include/modelwatch/`` (``core/``, ``cli.py`` ...)."""
    return set(re.findall(r"^  ([a-z_]+/|[a-z_]+\.py)", _layout_block(), flags=re.MULTILINE))


def test_the_readme_layout_lists_exactly_what_ls_shows() -> None:
    on_disk = {
        f"{p.name}/" if p.is_dir() else p.name
        for p in PACKAGE.iterdir()
        if not p.name.startswith(("_", ".")) and (p.is_dir() or p.suffix == ".py")
    }
    assert _listed_entries() == on_disk


def test_every_module_the_layout_names_exists() -> None:
    block = _layout_block()
    for package, names in re.findall(r"^  ([a-z_]+)/ +(.*)$", block, flags=re.MULTILINE):
        for name in re.findall(r"\b([a-z_]+(?:\.py|/))", names):
            assert (PACKAGE / package / name.rstrip("/")).exists(), f"README names {package}/{name}, not on disk"


def _long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            reason = lines[first - 2].strip() if first >= 2 else ""
            if length > MAX_LINES and not reason.startswith("# long: "):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_runs_over_60_lines_without_a_stated_reason() -> None:
    assert _long_functions() == []
