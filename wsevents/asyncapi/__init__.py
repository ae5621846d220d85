"""The AsyncAPI 3.0 document of an app, its self-contained docs page, and typed clients.

Pure functions of the registry: nothing here runs at request time except to
render the document.
"""

from __future__ import annotations

from typing import Literal

from ._api import describe
from ._build import Described, build_asyncapi, server_object
from ._page import render_docs_page
from ._python import render_python
from ._typescript import render_typescript

__all__ = ["build_asyncapi", "generate_client", "render_docs_page", "server_object"]


def generate_client(
    app: Described,
    lang: Literal["typescript", "python"],
    *,
    root_path: str = "",
    command: str = "wsevents client",
) -> str:
    """Return the source of a typed client for ``app``'s channels.

    Args:
        app: the registry (an ``EventApp``).
        lang: ``"typescript"``, types and an event map per channel for the
            served browser client (``connect<ChatRoomApi>(url)``), or
            ``"python"``, pydantic models and a client class per channel on
            ``wsevents.client``.
        root_path: the mount prefix, put before every channel's path.
        command: how the file says it was made.
    """
    api = describe(app, root_path=root_path)
    if lang == "typescript":
        return render_typescript(api, command=command)
    if lang == "python":
        return render_python(api, command=command)
    raise ValueError(f"lang must be 'typescript' or 'python', got {lang!r}")
