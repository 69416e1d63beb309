"""``data view``: the curves PNG and the cameras-and-curves mp4 of one episode."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import matplotlib.image
import numpy as np
import pytest

from robopolicy.cli import main
from robopolicy.data.formats.base import DatasetInfo
from robopolicy.data.store import EpisodeStore
from robopolicy.data.view import (
    CAMERA_HEIGHT,
    MIN_VIDEO_WIDTH,
    VIDEO_ROW,
    _labels,
    write_episode_view,
)
from robopolicy.errors import DataError
from tests.data.test_robomimic import write_robomimic

LENGTHS = (40, 25)


def make_store(path: Path, *, cameras: bool = True) -> Path:
    """Two episodes: 3-D state with names, 2-D action, and two cameras with a moving square."""
    store = EpisodeStore.create(path, fps=10.0)
    store.set_feature("state", names=["x", "y", "gripper"], units="m")
    rng = np.random.default_rng(0)
    for length in LENGTHS:
        frames: dict[str, np.ndarray] = {
            "state": rng.normal(size=(length, 3)).astype(np.float32),
            "action": rng.normal(size=(length, 2)).astype(np.float32),
        }
        if cameras:
            front = np.zeros((length, 48, 64, 3), np.uint8)
            for i in range(length):
                front[i, 10:20, i % 54 : i % 54 + 10] = 255
            frames["image.front"] = front
            frames["image.wrist"] = rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8)
        store.append_episode(frames)
    return path


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_view_writes_png_and_playable_mp4(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    written = write_episode_view(store, 1, tmp_path / "view")
    assert set(written) == {"video", "curves"}
    png = matplotlib.image.imread(written["curves"])
    assert png.ndim == 3 and png.shape[0] > 200
    video = decode(written["video"])
    camera_height = CAMERA_HEIGHT[0]  # 48 and 32 pixel cameras are scaled up to the minimum
    row_width = 64 * camera_height // 48 + camera_height
    assert video.shape == (
        LENGTHS[1],
        camera_height + 2 * VIDEO_ROW,
        max(row_width, MIN_VIDEO_WIDTH),
        3,
    )
    with av.open(str(written["video"])) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    panel = video[:, camera_height:].astype(int)
    assert np.abs(panel[0] - panel[-1]).mean() > 0.5  # the cursor moved
    assert np.abs(panel[0] - panel[1]).max() > 100
    cameras = video[:, :camera_height].astype(int)
    assert np.abs(cameras[0] - cameras[5]).mean() > 1  # the square moved


def test_view_without_cameras_and_default_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s.zarr", cameras=False)
    monkeypatch.chdir(tmp_path)
    written = write_episode_view(store, 0)
    assert written["video"].parent.resolve() == (tmp_path / "episode_0_view").resolve()
    video = decode(written["video"])
    assert video.shape == (LENGTHS[0], 2 * VIDEO_ROW, MIN_VIDEO_WIDTH, 3)
    assert np.abs(video[0].astype(int) - video[-1]).mean() > 0.5


def test_bad_episode_index(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path / "s.zarr", cameras=False)
    with pytest.raises(DataError, match=r"no episode 2: the dataset has 2 episodes \(0 to 1\)"):
        write_episode_view(store, 2, tmp_path / "view")
    assert main(["data", "view", str(store), "--episode", "-1"]) == 2
    assert "has 2 episodes" in capsys.readouterr().err


def test_cli_view_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path / "s.zarr", cameras=False)
    out = tmp_path / "cli"
    assert main(["data", "view", str(store), "--episode", "1", "--out", str(out), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert Path(paths["video"]).is_file() and Path(paths["curves"]).is_file()


def test_labels_come_from_feature_names() -> None:
    info = DatasetInfo(fps=None, n_episodes=1, features={"state": {"names": ["x", "y"]}})
    assert _labels("state", 2, info) == ["x", "y"]
    assert _labels("state", 3, info) == ["state[0]", "state[1]", "state[2]"]
    nested = DatasetInfo(fps=None, n_episodes=1, features={"q": {"names": {"motors": ["a"]}}})
    assert _labels("q", 1, nested) == ["a"]


def test_view_robomimic_hdf5(tmp_path: Path) -> None:
    src = write_robomimic(tmp_path / "lift.hdf5")
    video = decode(write_episode_view(src, 3, tmp_path / "view")["video"])
    assert video.shape[0] == 7  # demo_10, the fourth in robomimic's order


def test_view_pusht_episode_0(pusht_zarr: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    written = write_episode_view(pusht_zarr, 0, tmp_path / "pusht")
    elapsed = time.perf_counter() - start
    video = decode(written["video"])
    assert video.shape[0] == 161
    # Push-T's float32 'img' (96x96, 0-255) is shown as a camera above the curves
    assert video.shape[1] == CAMERA_HEIGHT[0] + 2 * VIDEO_ROW
    assert video[10, : CAMERA_HEIGHT[0]].mean() > 50
    assert elapsed < 60, f"rendering took {elapsed:.1f}s"
