"""The ``wsevents`` command: export the AsyncAPI document or the docs page, run an app.

::

    wsevents asyncapi examples.chat.app:app --output schemas/chat.asyncapi.json
    wsevents asyncapi examples.chat.app:app --check schemas/chat.asyncapi.json
    wsevents docs examples.chat.app:app --output chat.html
    wsevents client examples.chat.app:app --lang typescript --output chat.ts
    wsevents run examples.chat.app:app --port 8000

``MODULE:APP`` names an ``EventApp``, or a Starlette or FastAPI app that
mounts one (its mount path becomes the channels' prefix).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._app import EventApp

__all__ = ["find_event_app", "load_app", "main", "run_defaults"]


class CommandError(Exception):
    """A problem to report in one line, exiting with status 2."""


def load_app(target: str) -> Any:
    """Import ``MODULE:ATTRIBUTE`` (the attribute may be dotted) from the current directory."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CommandError(f"expected MODULE:APP, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import module {module_name!r}: {exc}") from exc
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return value


def find_event_app(app: Any, prefix: str = "") -> tuple[EventApp, str]:
    """Return the ``EventApp`` that ``app`` is or mounts, and its mount path.

    Raises:
        CommandError: ``app`` mounts no ``EventApp``, or several.
    """
    found = _mounted(app, prefix)
    if not found:
        raise CommandError(f"{type(app).__name__} object is not an EventApp and mounts none")
    if len(found) > 1:
        paths = ", ".join(repr(path or "/") for _, path in found)
        raise CommandError(f"several EventApps are mounted (at {paths}): name one")
    return found[0]


def _mounted(app: Any, prefix: str) -> list[tuple[EventApp, str]]:
    if isinstance(app, EventApp):
        return [(app, prefix)]
    found: list[tuple[EventApp, str]] = []
    for route in getattr(app, "routes", None) or ():
        inner = getattr(route, "app", None)
        path = getattr(route, "path", None)
        if inner is not None and isinstance(path, str) and "{" not in path:
            found += _mounted(inner, prefix + path.rstrip("/"))
    return found


def render_document(document: dict[str, Any], *, as_yaml: bool) -> str:
    """Serialize a document the way the command writes it."""
    if as_yaml:
        import yaml

        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _asyncapi(args: argparse.Namespace) -> int:
    events, mount = find_event_app(load_app(args.app))
    root_path = mount if args.root_path is None else args.root_path
    document = events.asyncapi(root_path=root_path, server=_server(args.server))
    if args.check:
        path = Path(args.check)
        text = render_document(document, as_yaml=args.yaml or path.suffix in (".yaml", ".yml"))
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{path}: cannot read it ({exc.strerror})", file=sys.stderr)
            return 1
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=str(path),
            tofile=f"{args.app} (now)",
        )
        sys.stdout.writelines(diff)
        print(f"{path} is stale: regenerate it with --output", file=sys.stderr)
        return 1
    text = render_document(document, as_yaml=args.yaml)
    _write(text, args.output)
    return 0


def _docs(args: argparse.Namespace) -> int:
    from .asyncapi import render_docs_page

    events, mount = find_event_app(load_app(args.app))
    root_path = mount if args.root_path is None else args.root_path
    document = events.asyncapi(root_path=root_path, server=_server(args.server))
    _write(render_docs_page(document), args.output)
    return 0


def _client(args: argparse.Namespace) -> int:
    from .asyncapi import generate_client

    events, mount = find_event_app(load_app(args.app))
    root_path = mount if args.root_path is None else args.root_path
    command = f"wsevents client {args.app} --lang {args.lang}"
    _write(generate_client(events, args.lang, root_path=root_path, command=command), args.output)
    return 0


def _server(url: str | None) -> str | None:
    from .asyncapi import server_object

    if url is not None:
        try:
            server_object(url)
        except ValueError as exc:
            raise CommandError(f"--server: {exc}") from None
    return url


GRACEFUL_SHUTDOWN = 3.0  # seconds uvicorn waits for connections at exit, then cancels them


def run_defaults(events: EventApp, rest: Sequence[str]) -> list[str]:
    """uvicorn's flags that ``wsevents run`` adds where the command line does not set them.

    ``--ws-max-size`` is ``Limits.max_message_bytes``, so uvicorn refuses a
    larger frame (1009) before reading all of it (its own default is 16 MiB);
    ``--timeout-graceful-shutdown`` bounds the exit, which otherwise waits
    forever on a client that stopped reading with data still unsent.
    """
    added: list[str] = []
    if not any(flag.startswith("--ws-max-size") for flag in rest):
        added += ["--ws-max-size", str(events.limits.max_message_bytes)]
    if not any(flag.startswith("--timeout-graceful-shutdown") for flag in rest):
        added += ["--timeout-graceful-shutdown", f"{GRACEFUL_SHUTDOWN:g}"]
    return added


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    import uvicorn.main

    # Fail here, with our message, before uvicorn starts.
    events, _ = find_event_app(load_app(args.app))
    flags = [*run_defaults(events, rest), *rest]
    uvicorn.main.main(args=[args.app, *flags], prog_name="wsevents run")  # exits
    return 0  # pragma: no cover


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")


SERVER_HELP = "the server's ws:// or wss:// URL (default: ws://localhost:8000)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsevents", description="WebSocket event routing for ASGI, with AsyncAPI docs."
    )
    parser.add_argument("--version", action="version", version=f"wsevents {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    asyncapi = commands.add_parser("asyncapi", help="print or check the AsyncAPI document")
    asyncapi.add_argument("app", metavar="MODULE:APP")
    asyncapi.add_argument("--yaml", action="store_true", help="YAML instead of JSON")
    asyncapi.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    asyncapi.add_argument("--check", metavar="FILE", help="exit 1 with a diff if FILE is stale")
    asyncapi.add_argument("--root-path", metavar="P", help="channel prefix (default: the mount)")
    asyncapi.add_argument("--server", metavar="URL", help=SERVER_HELP)
    docs = commands.add_parser("docs", help="write the self-contained docs page")
    docs.add_argument("app", metavar="MODULE:APP")
    docs.add_argument("--output", "-o", metavar="FILE", required=True)
    docs.add_argument("--root-path", metavar="P", help="channel prefix (default: the mount)")
    docs.add_argument("--server", metavar="URL", help=SERVER_HELP)
    client = commands.add_parser("client", help="write a typed client for the app")
    client.add_argument("app", metavar="MODULE:APP")
    client.add_argument(
        "--lang",
        required=True,
        choices=["typescript", "python"],
        help="typescript: types and event maps for /wsevents.js; python: on wsevents.client",
    )
    client.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    client.add_argument("--root-path", metavar="P", help="channel prefix (default: the mount)")
    run = commands.add_parser(
        "run", help="serve the app with uvicorn (uvicorn's flags follow)", add_help=False
    )
    run.add_argument("app", metavar="MODULE:APP", nargs="?")
    return parser


RUN_HELP = f"""usage: wsevents run MODULE:APP [uvicorn's options]

Serve the app with uvicorn. wsevents adds --ws-max-size (the app's
Limits.max_message_bytes) and --timeout-graceful-shutdown {GRACEFUL_SHUTDOWN:g} unless given.
"""


def _run_help() -> int:
    import uvicorn.main

    print(RUN_HELP)
    print("uvicorn's options:")
    uvicorn.main.main(args=["--help"], prog_name="wsevents run", standalone_mode=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "asyncapi":
            return _asyncapi(args)
        if args.command == "docs":
            return _docs(args)
        if args.command == "client":
            return _client(args)
        if {"-h", "--help"} & set(rest):
            return _run_help()
        if args.app is None:
            parser.error("the following arguments are required: MODULE:APP")
        return _run(args, rest)
    except CommandError as exc:
        print(f"wsevents: error: {exc}", file=sys.stderr)
        return 2
