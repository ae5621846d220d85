"""The browser client's .d.ts, compiled by TypeScript against code that uses it as the docs do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tests" / "asyncapi"  # the Node tools `make test` installs with npm ci
TSC = TOOLS / "node_modules" / "typescript" / "bin" / "tsc"
OPTIONS = [
    "--strict", "--noEmit", "--target", "es2020", "--lib", "es2020,dom",
    "--module", "esnext", "--moduleResolution", "bundler",
]  # fmt: skip


def tsc(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is needed to run TypeScript"
    assert TSC.is_file(), "TypeScript is not installed: `make test` runs `npm ci` in tests/asyncapi"
    return subprocess.run(
        [node, str(TSC), *OPTIONS, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_documented_usage_compiles_against_the_types() -> None:
    result = tsc(ROOT / "tests" / "types" / "client_usage.ts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_types_catch_a_misuse(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.ts"
    module = ROOT / "wsevents" / "static" / "wsevents.js"
    wrong.write_text(
        f'import {{ connect }} from "{module}";\n'
        'const client = await connect("/ws", { codec: "xml" });\n'
        'client.request("ping", {}, { timeout: "soon" });\n'
    )
    result = tsc(wrong)
    assert result.returncode != 0
    assert "wrong.ts(2," in result.stdout  # codec "xml"
    assert "wrong.ts(3," in result.stdout  # timeout "soon"
