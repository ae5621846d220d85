"""The `wsevents` command, and the generated files in schemas/ kept fresh."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.routing import Mount

from examples.chat.app import events as chat_events
from wsevents import Channel, EventApp
from wsevents.cli import CommandError, find_event_app, main

from .test_examples import _free_port

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


@pytest.fixture(autouse=True)
def in_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_asyncapi_prints_json_with_the_mount_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asyncapi", "examples.chat.app:app"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == chat_events.asyncapi(root_path="/ws")


def test_asyncapi_yaml_root_path_and_output(tmp_path: Path) -> None:
    out = tmp_path / "chat.yaml"
    assert main(["asyncapi", "examples.chat.app:events", "--yaml", "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == chat_events.asyncapi()
    assert main(["asyncapi", "examples.chat.app:app", "--root-path", "/api", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["channels"]["chat_room"]["address"] == "/api/chat/{room}"


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("examples.chat.app:app", "chat"),
        ("examples.fastapi_app:app", "fastapi_app"),
        ("examples.orders.app:app", "orders"),
        ("examples.accounts.app:app", "accounts"),
    ],
)
def test_schemas_in_the_repository_are_fresh(
    target: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = SCHEMAS / f"{name}.asyncapi.json"
    status = main(["asyncapi", target, "--check", str(path)])
    assert status == 0, f"{path} is stale: run `make schemas`\n{capsys.readouterr().out}"


def test_check_fails_with_a_diff_after_a_model_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "chat.asyncapi.json"
    document = json.loads((SCHEMAS / "chat.asyncapi.json").read_text())
    document["components"]["schemas"]["Say"]["properties"]["text"]["maxLength"] = 400
    stale.write_text(json.dumps(document, indent=2) + "\n")
    assert main(["asyncapi", "examples.chat.app:app", "--check", str(stale)]) == 1
    captured = capsys.readouterr()
    assert re.search(r'^-\s+"maxLength": 400,$', captured.out, re.MULTILINE)
    assert re.search(r'^\+\s+"maxLength": 500,$', captured.out, re.MULTILINE)
    assert "is stale" in captured.err
    assert main(["asyncapi", "examples.chat.app:app", "--check", str(tmp_path / "none")]) == 1


def test_check_from_a_fresh_process_exits_0_then_1_after_a_change(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "wsevents", "asyncapi", "examples.chat.app:app"]
    fresh = subprocess.run(
        [*command, "--check", "schemas/chat.asyncapi.json"], cwd=ROOT, check=False
    )
    assert fresh.returncode == 0
    module = tmp_path / "changed_chat.py"
    source = (ROOT / "examples" / "chat" / "app.py").read_text()
    module.write_text(source.replace("max_length=500", "max_length=499"))
    (tmp_path / "index.html").write_text("")
    changed = subprocess.run(
        [*command[:4], "changed_chat:app", "--check", str(SCHEMAS / "chat.asyncapi.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert changed.returncode == 1, changed.stderr
    assert re.search(r'^\+\s+"maxLength": 499,$', changed.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope.nothing:app", "cannot import module 'nope.nothing'"),
        ("examples.chat.app:missing", "has no attribute 'missing'"),
        ("examples.chat.app", "expected MODULE:APP"),
        ("examples.chat.app:PAGE", "str object is not an EventApp and mounts none"),
    ],
)
def test_clear_errors_for_what_is_not_there(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asyncapi", target]) == 2
    assert message in capsys.readouterr().err


def test_several_mounted_event_apps_must_be_named() -> None:
    one = EventApp([Channel("/a")], title="a", version="1")
    two = EventApp([Channel("/b")], title="b", version="1")
    host = Starlette(routes=[Mount("/one", app=one), Mount("/two", app=two)])
    with pytest.raises(CommandError, match="several EventApps are mounted"):
        find_event_app(host)
    nested = Starlette(routes=[Mount("/api", app=Starlette(routes=[Mount("/ws", app=one)]))])
    assert find_event_app(nested) == (one, "/api/ws")


def test_docs_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "docs.html"
    assert main(["docs", "examples.chat.app:app", "--output", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert '"address": "/ws/chat/{room}"' in page


def test_unknown_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["asyncapi", "examples.chat.app:app", "--frobnicate"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_run_serves_the_app_with_uvicorn_flags() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wsevents", "run", "examples.chat.app:app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/ws/asyncapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "wsevents run exited"
                assert time.monotonic() < deadline, "wsevents run did not serve"
                time.sleep(0.1)
        assert response.json()["info"]["title"] == "Chat"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=20)


def test_run_reports_a_missing_app_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "examples.chat.app:nothing"]) == 2
    assert "has no attribute 'nothing'" in capsys.readouterr().err


def test_version_says_the_packages_version(capsys: pytest.CaptureFixture[str]) -> None:
    import wsevents

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"wsevents {wsevents.__version__}\n"


def test_run_help_lists_uvicorns_options_and_what_wsevents_adds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: wsevents run MODULE:APP [uvicorn's options]")
    assert "--ws-max-size (the app's" in out
    assert "--port INTEGER" in out  # uvicorn's own, as uvicorn documents them
    assert "--proxy-headers" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    assert "required: MODULE:APP" in capsys.readouterr().err
