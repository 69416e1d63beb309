"""LeRobot datasets written the way lerobot writes them (:mod:`tests.data.lerobot_fixtures`),
built once per test module that asks for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.lerobot_fixtures import SourceEpisode, build_v21, build_v30


@pytest.fixture(scope="module")
def v30(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SourceEpisode]]:
    """A LeRobot v3.0 dataset and the episodes it holds."""
    root = tmp_path_factory.mktemp("v30") / "arm_v30"
    return root, build_v30(root)


@pytest.fixture(scope="module")
def v21(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SourceEpisode]]:
    """A LeRobot v2.1 dataset and the episodes it holds."""
    root = tmp_path_factory.mktemp("v21") / "arm_v21"
    return root, build_v21(root)
