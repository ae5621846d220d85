"""The HTTP side of an app: the AsyncAPI document, the docs page, the client, the metrics.

:class:`HTTPRoutes` answers every HTTP request an ``EventApp`` gets: its
documents and files by path, the refusals the docs page's console asks
about, 426 on a channel's path, 404 elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ._handshake import RefusalLog
from ._registry import Registry
from ._runtime import route_path
from ._stats import render_prometheus

__all__ = ["HTTPRoutes", "types_url", "yaml_url"]

Build = Callable[..., dict[str, Any]]


class HTTPRoutes:
    """The HTTP routes of one app.

    Args:
        registry: the app's registry as it is now (channels answer 426).
        build: ``EventApp.asyncapi``: the document for a ``root_path``.
        stats: the app's counters, for the metrics.
        refusals: the handshakes refused that the console may ask about.
        docs_url, asyncapi_url, metrics_url, client_url: where each is served
            (``None``: not served).
    """

    def __init__(
        self,
        registry: Callable[[], Registry],
        build: Build,
        stats: Callable[[], dict[str, Any]],
        refusals: RefusalLog,
        *,
        docs_url: str | None,
        asyncapi_url: str | None,
        metrics_url: str | None,
        client_url: str | None,
    ) -> None:
        self._registry = registry
        self._build = build
        self._stats = stats
        self._refusals = refusals
        self._documents: dict[str, dict[str, Any]] = {}
        self._routes: dict[str, Callable[[Scope], Response]] = {}
        if asyncapi_url:
            self._routes[asyncapi_url] = self._asyncapi_json
            self._routes[yaml_url(asyncapi_url)] = self._asyncapi_yaml
        # Where the docs page's console reads why a handshake it made was refused.
        self._refusals_path = docs_url.rstrip("/") + "/refusals/" if docs_url else None
        if docs_url:
            self._routes[docs_url] = self._docs_page
        if metrics_url:
            self._routes[metrics_url] = self._metrics
        if client_url:
            self._routes[client_url] = _static("wsevents.js", "text/javascript")
            self._routes[types_url(client_url)] = _static("wsevents.d.ts", "application/typescript")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        response: Response
        if path in self._routes:
            if scope["method"] not in ("GET", "HEAD"):
                response = PlainTextResponse(
                    "Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"}
                )
            else:
                response = self._routes[path](scope)
        elif self._refusals_path and path.startswith(self._refusals_path):
            response = self._refusal(path[len(self._refusals_path) :])
        elif self._registry().match(path) is not None:
            response = PlainTextResponse(
                "this is a WebSocket endpoint", status_code=426, headers={"Upgrade": "websocket"}
            )
        else:
            response = PlainTextResponse("Not Found", status_code=404)
        await response(scope, receive, send)

    def _document(self, scope: Scope) -> dict[str, Any]:
        """The document for a request: its mount prefix, and its host as the server."""
        from .asyncapi import server_object

        root_path = scope.get("root_path", "")
        document = self._documents.get(root_path)
        if document is None:
            document = self._documents[root_path] = self._build(root_path=root_path)
        if self._registry().servers:
            return document
        try:
            server = server_object(_request_server(scope))
        except ValueError:  # a Host header that is no host: keep the default
            return document
        return {**document, "servers": {"default": server}}

    def _asyncapi_json(self, scope: Scope) -> Response:
        body = json.dumps(self._document(scope), indent=2, ensure_ascii=False)
        return Response(body, media_type="application/json")

    def _asyncapi_yaml(self, scope: Scope) -> Response:
        import yaml

        body = yaml.safe_dump(self._document(scope), sort_keys=False, allow_unicode=True)
        return Response(body, media_type="application/yaml")

    def _metrics(self, scope: Scope) -> Response:
        return PlainTextResponse(
            render_prometheus(self._stats()), media_type="text/plain; version=0.0.4"
        )

    def _refusal(self, nonce: str) -> Response:
        found = self._refusals.get(nonce)
        headers = {"Cache-Control": "no-store"}
        if found is None:
            return JSONResponse({"status": None, "reason": None}, status_code=404, headers=headers)
        return JSONResponse({"status": found[0], "reason": found[1]}, headers=headers)

    def _docs_page(self, scope: Scope) -> Response:
        from .asyncapi import render_docs_page

        return HTMLResponse(render_docs_page(self._document(scope)))


def types_url(client_url: str) -> str:
    """Where the types of the browser client are served: ``.d.ts`` beside the ``.js``."""
    return client_url.removesuffix(".js") + ".d.ts"


def yaml_url(asyncapi_url: str) -> str:
    """The path of the YAML document: the JSON one's, ending ``.yaml``."""
    stem = asyncapi_url[: -len(".json")] if asyncapi_url.endswith(".json") else asyncapi_url
    return stem + ".yaml"


def _request_server(scope: Scope) -> str:
    """``ws://`` or ``wss://`` and the host the request named (or the server's address)."""
    scheme = "wss" if scope.get("scheme") in ("https", "wss") else "ws"
    host = Headers(scope=scope).get("host")
    if not host and scope.get("server"):
        name, port = scope["server"]
        host = f"[{name}]:{port}" if ":" in str(name) else f"{name}:{port}"
    return f"{scheme}://{host or 'localhost'}"


def _static(name: str, media_type: str) -> Callable[[Scope], Response]:
    """Serve a file of ``wsevents/static``, read once, cacheable for an hour."""
    body = (Path(__file__).parent / "static" / name).read_bytes()
    headers = {"Cache-Control": "public, max-age=3600"}

    def respond(scope: Scope) -> Response:
        return Response(body, media_type=f"{media_type}; charset=utf-8", headers=headers)

    return respond
