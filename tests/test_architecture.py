"""The house as docs/architecture.md draws it: who imports whom, and module sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "wsevents"
PURE = [
    "_envelope.py",
    "codecs.py",
    "_onepass.py",
    "exceptions.py",
    "_routing.py",
    "_dispatch.py",
    "_protocol.py",
    "_wildcards.py",
    "_limits.py",
    "_stats.py",
    "asyncapi/_build.py",
    "asyncapi/_schemas.py",
]


def imports(path: Path, *, runtime_only: bool = True) -> set[str]:
    """Modules ``path`` imports when it is imported (not under TYPE_CHECKING, not in functions)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if not runtime_only else [node]:
            if isinstance(inner, ast.Import):
                found |= {alias.name for alias in inner.names}
            elif isinstance(inner, ast.ImportFrom):
                found.add("." * inner.level + (inner.module or ""))
    return found


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_event_loop(name: str) -> None:
    found = imports(PACKAGE / name)
    assert not {"asyncio", "anyio"} & found, found
    assert not any(module.startswith(("starlette.types", "uvicorn")) for module in found)


def test_the_backplane_knows_neither_the_envelope_nor_the_topic_table() -> None:
    for path in (PACKAGE / "backplane").glob("*.py"):
        wsevents = {module for module in imports(path) if module.startswith("..")}
        assert wsevents <= {".._wildcards", ".._history"}, (path.name, wsevents)


def test_no_runtime_module_imports_the_asyncapi_builder_at_import_time() -> None:
    for path in PACKAGE.glob("*.py"):
        found = imports(path)
        assert not any("asyncapi" in module for module in found), (path.name, found)


def test_a_module_over_300_lines_says_why_at_its_top() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 300:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "Over 300 lines:" in docstring, path.name


def test_the_connection_core_is_the_only_module_that_changes_a_connection_state() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name != "_protocol.py":
            assert ".state = " not in path.read_text().replace("self._state = ", ""), path.name
