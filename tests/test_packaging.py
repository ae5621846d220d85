"""What a release carries: the sdist's file list, built the way `pip` builds it."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hatchling.builders.sdist import SdistBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_the_sdist_carries_the_sources_and_none_of_what_the_tests_leave(tmp_path: Path) -> None:
    # `make test` has run here: node_modules, .hypothesis and caches are in the tree.
    assert (ROOT / "tests" / "asyncapi" / "node_modules").is_dir()
    path = Path(next(SdistBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])))
    with tarfile.open(path) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    left = [n for n in names if any(p in n for p in ("node_modules", ".hypothesis", "__pycache__"))]
    assert left == []
    for needed in (
        "wsevents/py.typed",
        "wsevents/static/wsevents.js",
        "wsevents/static/wsevents.d.ts",
        "wsevents/asyncapi/docs.html",
        "tests/asyncapi/package-lock.json",
        "tests/types/typed_chat.ts",
        "examples/chat/index.html",
        "docs/asyncapi.md",
        "schemas/chat.asyncapi.json",
        "LICENSE",
        "pyproject.toml",
    ):
        assert needed in names, needed
    assert path.stat().st_size < 2_000_000  # it was 8.6 MB with node_modules


@pytest.mark.parametrize(
    ("missing", "code", "extra"),
    [
        (("httpx2", "httpx"), "import wsevents.testing", "testing"),
        (("redis",), "create_backplane('redis://127.0.0.1:1/0')", "redis"),
        (("redis",), "create_backplane('redis+sentinel://127.0.0.1:1/main')", "redis"),
        (("redis",), "create_backplane('redis+cluster://127.0.0.1:1')", "redis"),
    ],
)
def test_without_its_extra_a_feature_names_the_extra_to_install(
    missing: tuple[str, ...], code: str, extra: str
) -> None:
    program = (
        "import sys\n"
        f"for name in {missing!r}:\n"
        "    sys.modules[name] = None  # as if not installed\n"
        "from wsevents.backplane import create_backplane\n"
        "try:\n"
        f"    {code}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert f"pip install 'wsevents[{extra}]'" in shown
