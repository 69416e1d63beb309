"""Shared fixtures: the real Push-T data when it is present, and a headless environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SVT_LOG", "1")

ROOT = Path(__file__).resolve().parents[1]
PUSHT_ZARR = ROOT.parent / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"


@pytest.fixture(scope="session")
def pusht_zarr() -> Path:
    """The Push-T replay buffer from ``../shared/data``; the test is skipped when it is absent."""
    path = Path(os.environ.get("ROBOPOLICY_PUSHT_ZARR", PUSHT_ZARR))
    if not (path / "meta" / "episode_ends").exists():
        pytest.skip(f"Push-T data not found at {path} (set ROBOPOLICY_PUSHT_ZARR to its path)")
    return path
