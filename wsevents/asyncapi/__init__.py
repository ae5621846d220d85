"""The AsyncAPI 3.0 document of an app, and its self-contained docs page.

Pure functions of the registry: nothing here runs at request time except to
render the document.
"""

from __future__ import annotations

from ._build import build_asyncapi, server_object
from ._page import render_docs_page

__all__ = ["build_asyncapi", "render_docs_page", "server_object"]
