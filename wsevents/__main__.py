"""``python -m wsevents``: the same as the ``wsevents`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
