"""Shared test fixtures: where the real fixture files live."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real files written by real tools, part of the repository; provenance in SOURCES.md there.
FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/data/fixtures``: real files written by real tools (see its SOURCES.md)."""
    if not (FIXTURES / "SOURCES.md").is_file():
        pytest.fail(f"fixture folder {FIXTURES} is incomplete: SOURCES.md is missing")
    return FIXTURES
