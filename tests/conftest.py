"""Shared test fixtures.

Real media lives in ../shared/media (never copied into the project). Tests that need it skip when the
folder is absent, except under CI=true, where a missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DEEPFAKE_MEDIA", ROOT.parent / "shared" / "media"))


def media_path(name: str) -> Path:
    """Path of a shared media file; skip (or fail under CI=true) when it is absent."""
    p = MEDIA / name
    if not p.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but shared media {p} is missing")
        pytest.skip(f"shared media not available: {p}")
    return p


@pytest.fixture
def media():
    return media_path
