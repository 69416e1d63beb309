"""Push-T (a diffusion_policy replay buffer) exported to LeRobot v3.0 and read back.

The replay buffer holds ``state`` (N, 5), ``action`` (N, 2), ``keypoint`` (N, 9, 2),
``n_contacts`` (N, 1) and the camera ``img`` (N, 96, 96, 3) as float32 values 0-255, and no
fps, task or attributes. LeRobot must see the camera as an ``observation.image`` video and every
observation under ``observation.``; reading the export back gives the numeric arrays exactly and
``img`` as float32 whole numbers within :data:`VIDEO_MAE` levels of the original.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from robopolicy.cli import main
from robopolicy.data.formats.base import DatasetInfo, Episode
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from tests.data.test_lerobot import VIDEO_MAE, lerobot, read_all

FPS = 10
LENGTHS = (14, 9, 17)
NUMERIC = ("state", "action", "keypoint", "n_contacts")
LEROBOT_FEATURES = {
    "observation.state": ("float32", [5]),
    "action": ("float32", [2]),
    "observation.keypoint": ("float32", [9, 2]),
    "observation.n_contacts": ("float32", [1]),
    "observation.image": ("video", [96, 96, 3]),
    "timestamp": ("float32", [1]),
    "frame_index": ("int64", [1]),
    "episode_index": ("int64", [1]),
    "index": ("int64", [1]),
    "task_index": ("int64", [1]),
}


def build_replay_buffer(path: Path) -> dict[str, np.ndarray]:
    """A small replay buffer laid out as diffusion_policy writes Push-T's; returns its arrays."""
    rng = np.random.default_rng(5)
    total = sum(LENGTHS)
    y, x = np.mgrid[0:96, 0:96].astype(np.float32)
    img = np.empty((total, 96, 96, 3), np.float32)
    for t in range(total):  # a grey board with a soft block moving over it
        cx, cy = 20 + 50 * np.sin(t / 9), 48 + 30 * np.cos(t / 7)
        block = 120 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 90)
        img[t, ..., 0] = np.clip(230 - block, 0, 255)
        img[t, ..., 1] = np.clip(200 + 0.3 * x - block / 2, 0, 255)
        img[t, ..., 2] = np.clip(190 + 0.4 * y, 0, 255)
    arrays = {
        "state": rng.uniform(0, 512, size=(total, 5)).astype(np.float32),
        "action": rng.uniform(0, 512, size=(total, 2)).astype(np.float32),
        "keypoint": rng.uniform(0, 512, size=(total, 9, 2)).astype(np.float32),
        "n_contacts": rng.integers(0, 3, size=(total, 1)).astype(np.float32),
        "img": np.rint(img),
    }
    root = zarr.open_group(path, mode="w", zarr_format=2)
    data = root.create_group("data")
    for key, values in arrays.items():
        data.create_array(
            key, shape=values.shape, dtype=values.dtype, chunks=(8, *values.shape[1:])
        )
        data[key][:] = values
    ends = np.cumsum(LENGTHS).astype(np.int64)
    root.create_group("meta").create_array("episode_ends", shape=ends.shape, dtype=np.int64)
    root["meta/episode_ends"][:] = ends
    return arrays


def assert_pusht_episode(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Numeric arrays equal in value, dtype and shape; ``img`` float32 whole numbers within
    :data:`VIDEO_MAE` (mean absolute error in 0-255 levels) of the original."""
    assert sorted(got) == sorted(want)
    for key in NUMERIC:
        assert (got[key].dtype, got[key].shape) == (want[key].dtype, want[key].shape), key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    image = got["img"]
    assert (image.dtype, image.shape) == (np.float32, want["img"].shape)
    assert np.array_equal(image, np.rint(image)) and image.min() >= 0 and image.max() <= 255
    error = np.abs(image - want["img"]).mean()
    assert error <= VIDEO_MAE, f"img: mean abs error {error:.2f}"


def assert_lerobot_layout(root: Path, *, frames: int, episodes: int) -> None:
    """What lerobot reads: the camera as the ``observation.image`` video, observations under
    ``observation.``, a task string, and image statistics per channel in [0, 1]."""
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_frames"], info["total_episodes"], info["fps"]) == (frames, episodes, FPS)
    features = info["features"]
    assert {name: (f["dtype"], f["shape"]) for name, f in features.items()} == LEROBOT_FEATURES
    assert features["observation.image"]["names"] == ["height", "width", "channels"]
    assert features["observation.image"]["info"]["video.codec"] == "av1"
    assert (root / "videos/observation.image/chunk-000/file-000.mp4").is_file()
    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    assert "observation.image" not in schema.names and "img" not in schema.names
    tasks = pq.read_table(root / "meta/tasks.parquet")["task"].to_pylist()
    assert len(tasks) == 1 and tasks[0].strip()
    stats = json.loads((root / "meta/stats.json").read_text())["observation.image"]
    for stat in ("min", "max", "mean", "std", "q01", "q50", "q99"):
        values = np.asarray(stats[stat])
        assert values.shape == (3, 1, 1) and values.min() >= 0 and values.max() <= 1, stat


def test_generated_pusht_exports_as_lerobot_and_reads_back(tmp_path: Path) -> None:
    source = build_replay_buffer(tmp_path / "replay.zarr")
    out = tmp_path / "pusht_lr"
    cmd = ["data", "convert", str(tmp_path / "replay.zarr"), str(out), "--to", "lerobot"]
    assert main([*cmd, "--fps", str(FPS)]) == 0
    assert_lerobot_layout(out, frames=sum(LENGTHS), episodes=len(LENGTHS))

    ends = np.cumsum((0, *LENGTHS))
    want = [{k: v[ends[i] : ends[i + 1]] for k, v in source.items()} for i in range(len(LENGTHS))]
    info, episodes = read_all(out)
    assert info.fps == FPS and info.attrs["tasks"] == []
    for got, expected in zip(episodes, want, strict=True):
        assert isinstance(got, Episode) and got.task is None
        assert_pusht_episode(got.frames, expected)

    assert main(["data", "convert", str(out), str(tmp_path / "back.zarr")]) == 0
    back = EpisodeStore.open(tmp_path / "back.zarr")
    assert back.fps == FPS and back.n_episodes == len(LENGTHS)
    assert sorted(back.keys) == sorted(source)
    for index, expected in enumerate(want):
        assert_pusht_episode(back.episode(index), expected)


def test_real_pusht_exports_as_lerobot(pusht_zarr: Path, tmp_path: Path) -> None:
    """The whole Push-T replay buffer (skipped when ``../shared/data`` lacks it)."""
    out = tmp_path / "pusht_lr"
    cmd = ["data", "convert", str(pusht_zarr), str(out), "--to", "lerobot"]
    assert main([*cmd, "--fps", str(FPS)]) == 0
    source = EpisodeStore.open(pusht_zarr)
    assert_lerobot_layout(out, frames=source.n_frames, episodes=source.n_episodes)
    reader = lerobot().open(out)
    try:
        for index in (0, source.n_episodes // 2, source.n_episodes - 1):
            assert_pusht_episode(reader.read_episode(index).frames, source.episode(index))
    finally:
        reader.close()


def test_cameras_are_named_by_key_and_count(tmp_path: Path) -> None:
    """With several cameras an unnamed one keeps its key (``observation.images.img``); float
    frames that are not whole numbers 0-255 stay a numeric column, exactly."""
    rng = np.random.default_rng(2)
    frames = {
        "img": np.rint(rng.uniform(0, 255, size=(6, 16, 16, 3))).astype(np.float32),
        "image.front": rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8),
        "heat": rng.uniform(0, 1, size=(6, 16, 16, 3)).astype(np.float32),
    }
    info = DatasetInfo(fps=FPS, n_episodes=1)
    lerobot().write(tmp_path / "lr", info, iter([Episode(frames)]), quiet=True)
    features = json.loads((tmp_path / "lr/meta/info.json").read_text())["features"]
    assert features["observation.images.img"]["dtype"] == "video"
    assert features["observation.images.front"]["dtype"] == "video"
    assert (features["observation.heat"]["dtype"], features["observation.heat"]["shape"]) == (
        "float32",
        [16, 16, 3],
    )
    _, (episode,) = read_all(tmp_path / "lr")
    assert sorted(episode.frames) == sorted(frames)
    assert episode.frames["img"].dtype == np.float32
    np.testing.assert_array_equal(episode.frames["heat"], frames["heat"])

    later = dict(frames, img=frames["img"] + 0.5)
    with pytest.raises(DataError, match="whole numbers") as caught:
        lerobot().write(tmp_path / "bad", info, iter([Episode(frames), Episode(later)]), quiet=True)
    assert "[img]" in str(caught.value)
