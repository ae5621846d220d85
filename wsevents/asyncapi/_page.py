"""The docs page: one HTML response, CSS and JS inline, no network needed."""

from __future__ import annotations

import html
import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

__all__ = ["render_docs_page"]


@lru_cache(maxsize=1)
def _template() -> str:
    return files(__package__).joinpath("docs.html").read_text(encoding="utf-8")


def render_docs_page(document: dict[str, Any]) -> str:
    """Return the docs page for an AsyncAPI ``document``: channels, events, a live console."""
    # "</" would end the <script> element the document travels in.
    embedded = json.dumps(document, ensure_ascii=False).replace("</", "<\\/")
    title = html.escape(f"{document['info']['title']} - WebSocket API")
    return _template().replace("__TITLE__", title).replace("/*__DOCUMENT__*/", embedded)
