"""Shared test fixtures: where the real fixture files live, and a scratch directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CRYOVIS_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "formats" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/formats/fixtures``: real files written by real tools."""
    if not FIXTURES.is_dir():
        pytest.fail(f"fixture folder {FIXTURES} is missing (set CRYOVIS_SHARED)")
    return FIXTURES


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared``: docs, seeds, fixtures and the ChimeraX headless kit."""
    return SHARED
