"""Where the repository's files are, for tests at any depth of ``tests/``."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
FIXTURES = REPO / "tests" / "fixtures"
