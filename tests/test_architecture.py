"""The house as docs/architecture.md draws it: every module in a part, who imports whom, sizes.

The page's table is the rule: this test reads it, then checks every import
of every module (type-only and lazy ones included) against it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "wsevents"
PAGE = ROOT / "docs" / "architecture.md"
EVENT_LOOP = ("asyncio", "anyio", "starlette.types", "uvicorn")


@dataclass(frozen=True)
class Part:
    name: str
    modules: tuple[str, ...]
    imports: frozenset[str]  # parts it may import at any time
    lazily: frozenset[str]  # parts it may import inside a function only
    awaits: str  # "yes", "no", or the modules that do


def parts() -> dict[str, Part]:
    """The table under "## The parts" of docs/architecture.md."""
    text = PAGE.read_text()
    section = text[text.index("## The parts") :]
    found: dict[str, Part] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("part", "---"):
            continue
        name, modules, may_import, _, awaits = cells
        imports, lazily = set(), set()
        for entry in may_import.split(","):
            entry = entry.strip()
            if entry.endswith("(lazily)"):
                lazily.add(entry.removesuffix("(lazily)").strip())
            elif entry and entry != "nothing":
                imports.add(entry)
        found[name] = Part(
            name,
            tuple(re.findall(r"`([^`]+)`", modules)),
            frozenset(imports),
            frozenset(lazily),
            awaits,
        )
    return found


def module_names() -> list[str]:
    """Every module of the package, as the page names them: ``_app``, ``backplane/redis``."""
    return sorted(str(path.relative_to(PACKAGE).with_suffix("")) for path in PACKAGE.rglob("*.py"))


def owner() -> dict[str, str]:
    return {module: part.name for part in parts().values() for module in part.modules}


@dataclass(frozen=True)
class Import:
    target: str  # a module of the package, as the page names it
    lazy: bool  # inside a function
    line: int


def resolve(module: str, level: int, name: str | None) -> str:
    """The package module that ``from <level dots><name> import ...`` in ``module`` means."""
    package = module.split("/")[:-1]
    base = package[: len(package) - (level - 1)] if level else []
    parts_ = [*base, *(name.split(".") if name else [])]
    if parts_ and parts_[0] == "wsevents":
        parts_ = parts_[1:]
    path = "/".join(parts_)
    return path if (PACKAGE / f"{path}.py").exists() else f"{path}/__init__".lstrip("/")


def wsevents_imports(module: str) -> list[Import]:
    """Every import of another package module in ``module``, at any depth."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                relative = child.level > 0 or (child.module or "").startswith("wsevents")
                if relative:
                    target = resolve(module, child.level, child.module)
                    found.append(Import(target, inner, child.lineno))
                    for alias in child.names:  # `from . import _scripts`: a module
                        candidate = f"{target.removesuffix('__init__')}{alias.name}"
                        if (PACKAGE / f"{candidate}.py").exists():
                            found.append(Import(candidate, inner, child.lineno))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("wsevents"):
                        found.append(Import(resolve(module, 0, alias.name), inner, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


def outside_imports(module: str) -> set[str]:
    """Every module outside the package that ``module`` imports, type-only ones included."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_page_names_every_module_once_and_no_module_that_is_not_there() -> None:
    named = [module for part in parts().values() for module in part.modules]
    assert len(named) == len(set(named)), sorted(m for m in named if named.count(m) > 1)
    assert sorted(named) == module_names()


def test_every_part_the_page_allows_is_a_part() -> None:
    table = parts()
    for part in table.values():
        assert part.imports | part.lazily <= set(table), part.name


@pytest.mark.parametrize("module", module_names())
def test_a_module_imports_only_the_parts_its_part_may_import(module: str) -> None:
    table, owners = parts(), owner()
    part = table[owners[module]]
    for found in wsevents_imports(module):
        target = owners[found.target]
        if target == part.name or target in part.imports:
            continue
        allowed = found.lazy and target in part.lazily
        assert allowed, (
            f"{module} (part {part.name}) imports {found.target} (part {target}) "
            f"at line {found.line}"
        )


@pytest.mark.parametrize("module", module_names())
def test_a_module_of_a_part_that_does_not_await_imports_no_event_loop(module: str) -> None:
    part = parts()[owner()[module]]
    awaits = part.awaits == "yes" or f"`{module}`" in part.awaits
    if not awaits:
        found = outside_imports(module)
        assert not {name for name in found if name.startswith(EVENT_LOOP)}, (module, found)


def test_the_checker_finds_type_only_lazy_and_package_imports() -> None:
    found = {(i.target, i.lazy) for i in wsevents_imports("_app")}
    assert ("_runtime", False) in found
    assert ("asyncapi/__init__", True) in found  # EventApp.asyncapi loads the builder
    redis = {i.target for i in wsevents_imports("backplane/redis")}
    assert {"_history", "backplane/_redis_store", "backplane/_pipeline"} <= redis
    session = {i.target for i in wsevents_imports("_session")}
    assert "_registry" in session  # under TYPE_CHECKING


def test_a_module_over_300_lines_says_why_at_its_top_and_none_is_over_500() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        lines = text.count("\n")
        assert lines <= 500, (path.name, lines)
        if lines > 300:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "Over 300 lines:" in docstring, path.name


def test_the_connection_core_is_the_only_module_that_changes_a_connection_state() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name != "_protocol.py":
            assert ".state = " not in path.read_text().replace("self._state = ", ""), path.name


def test_no_module_reads_another_library_s_private_names() -> None:
    for path in PACKAGE.rglob("*.py"):
        for name in outside_imports(str(path.relative_to(PACKAGE).with_suffix(""))):
            top = name.split(".")
            assert not any(level.startswith("_") for level in top[1:]), (path.name, name)


def test_registration_knows_no_codec_and_codecs_know_no_routing() -> None:
    assert "codecs" not in {i.target for i in wsevents_imports("_routing")}
    assert "codecs" not in {i.target for i in wsevents_imports("_binding")}
    for module in ("codecs", "_onepass"):
        targets = {i.target for i in wsevents_imports(module)}
        assert not targets & {"_routing", "_binding", "_dispatch", "_registry"}, module
