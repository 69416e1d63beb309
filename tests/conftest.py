"""Shared fixtures: the real Push-T data when it is present, one torch thread, and a headless
environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="session")
def gl() -> None:
    """Offscreen rendering (:mod:`sim.gl`); the test is skipped, saying why, where there is none."""
    from sim.gl import rendering_problem

    problem = rendering_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny networks run fastest so, and least disturbed by other jobs on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
