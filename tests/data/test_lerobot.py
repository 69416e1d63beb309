"""LeRobot v2.1/v3.0 import and v3.0 export, against fixtures written as lerobot writes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robopolicy.cli import main
from robopolicy.data.convert import convert
from robopolicy.data.formats.base import DatasetInfo, Episode, detect_format, get_format
from robopolicy.data.formats.lerobot.layout import to_lerobot, to_native
from robopolicy.data.store import EpisodeStore
from robopolicy.data.video import probe_video
from tests.data.lerobot_fixtures import (
    CAMERAS,
    FPS,
    JOINTS,
    LENGTHS,
    ROBOT_TYPE,
    TASKS,
    SourceEpisode,
    build_v21,
    build_v30,
    make_episodes,
)

VIDEO_MAE = 4.0
"""Largest mean absolute error per pixel (0-255 levels) one AV1 encode may add to the fixtures'
smooth images."""


def lerobot() -> type:
    return get_format("lerobot")


def assert_episode(got: Episode, want: SourceEpisode, *, video_mae: float = VIDEO_MAE) -> None:
    """Numeric arrays exactly equal (values, dtype, shape); images within codec tolerance."""
    assert got.task == want.task
    assert sorted(got.frames) == sorted(want.frames)
    for key, expected in want.frames.items():
        actual = got.frames[key]
        assert actual.shape == expected.shape, key
        assert actual.dtype == expected.dtype, key
        if key.startswith("image."):
            error = np.abs(actual.astype(np.int16) - expected).mean()
            assert error <= video_mae, f"{key}: mean abs error {error:.2f}"
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=key)


def read_all(path: Path, **options: object) -> tuple[DatasetInfo, list[Episode]]:
    reader = lerobot().open(path, **options)
    try:
        return reader.info, [reader.read_episode(i) for i in range(reader.info.n_episodes)]
    finally:
        reader.close()


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------- reading


def test_reads_v30_fixture(v30: tuple[Path, list[SourceEpisode]]) -> None:
    root, source = v30
    assert detect_format(root).name == "lerobot"
    info, episodes = read_all(root)
    assert (info.fps, info.n_episodes) == (FPS, len(LENGTHS))
    assert info.features["state"]["names"] == JOINTS
    assert info.features["action"]["names"] == JOINTS
    assert info.attrs["robot_type"] == ROBOT_TYPE
    assert info.attrs["tasks"] == list(TASKS)
    for got, want in zip(episodes, source, strict=True):
        assert_episode(got, want)
        assert got.meta == {}


@pytest.mark.parametrize("version", ["v2.1", "v2.0"])
def test_reads_v21_and_v20_fixtures(tmp_path: Path, version: str) -> None:
    source = build_v21(tmp_path / "ds", version=version)
    info, episodes = read_all(tmp_path / "ds")
    assert info.attrs["lerobot_info"]["codebase_version"] == version
    assert info.features["state"]["names"] == JOINTS
    for got, want in zip(episodes, source, strict=True):
        assert_episode(got, want)


def test_reads_image_columns_and_legacy_task_index(tmp_path: Path) -> None:
    """PNG frames stored in parquet decode exactly; tasks.parquet from lerobot 0.4 (unnamed
    pandas index) gives the same task strings."""
    source = build_v30(tmp_path / "ds", image_dtype="image", legacy_task_column=True)
    _, episodes = read_all(tmp_path / "ds")
    for got, want in zip(episodes, source, strict=True):
        assert_episode(got, want, video_mae=0)


# ---------------------------------------------------------------------- round trips


def test_v21_to_v30_to_zarr_by_cli(v21: tuple[Path, list[SourceEpisode]], tmp_path: Path) -> None:
    root, source = v21
    out = tmp_path / "out_v30"
    assert main(["data", "convert", str(root), str(out), "--to", "lerobot"]) == 0
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["robot_type"] == ROBOT_TYPE
    assert info["features"]["observation.state"]["names"] == JOINTS
    assert info["features"]["next.done"]["dtype"] == "bool"
    _, episodes = read_all(out)
    for got, want in zip(episodes, source, strict=True):
        assert_episode(got, want, video_mae=2 * VIDEO_MAE)  # encoded twice

    store_path = tmp_path / "native.zarr"
    assert main(["data", "convert", str(out), str(store_path), "--to", "zarr"]) == 0
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == len(source)
    assert store.fps == FPS
    for index, want in enumerate(source):
        frames = store.episode(index)
        for key, expected in want.frames.items():
            if not key.startswith("image."):
                assert frames[key].dtype == expected.dtype
                np.testing.assert_array_equal(frames[key], expected, err_msg=key)


def native_episodes(count: int = 3, *, timestamps: str = "grid") -> list[Episode]:
    """Native episodes with dtypes and shapes LeRobot has no direct word for."""
    rng = np.random.default_rng(7)
    fixture = make_episodes(tuple(17 + 5 * i for i in range(count)), seed=3)
    episodes = []
    for index, ep in enumerate(fixture):
        length = len(ep.frames["state"])
        frames = {
            "state": ep.frames["state"],
            "action": rng.normal(size=(length, 7)),  # float64
            "keypoint": rng.normal(size=(length, 9, 2)).astype(np.float32),
            "n_contacts": rng.integers(0, 4, size=(length, 1)).astype(np.int32),
            "effort": rng.normal(size=length).astype(np.float16),
            **{f"image.{c}": ep.frames[f"image.{c}"] for c in CAMERAS},
        }
        if timestamps == "grid":
            frames["timestamp"] = np.arange(length) / FPS
        elif timestamps == "sensed":
            jitter = rng.uniform(5e-4, 2e-3, size=length)  # sensing delay, then a clock offset
            frames["timestamp"] = 1234.5 * index + np.arange(length) / FPS + jitter
        episodes.append(Episode(frames, task=TASKS[index % 2], meta={"success": index % 2}))
    return episodes


def test_native_to_v30_to_native_is_lossless(tmp_path: Path) -> None:
    source = native_episodes()
    store = EpisodeStore.create(
        tmp_path / "src.zarr", fps=FPS, attrs={"robot_type": "arm7", "source": "unit test"}
    )
    store.set_feature("state", names=JOINTS, units="rad")
    for index, ep in enumerate(source):
        store.append_episode(
            ep.frames, episode_meta={"success": ep.meta["success"], "task_index": index % 2}
        )
    store.set_attrs(tasks=list(TASKS))
    convert(tmp_path / "src.zarr", tmp_path / "lr", to="lerobot", quiet=True)
    convert(tmp_path / "lr", tmp_path / "back.zarr", to="zarr", quiet=True)

    back = EpisodeStore.open(tmp_path / "back.zarr")
    assert back.fps == FPS
    assert back.attrs["source"] == "unit test"
    assert back.attrs["robot_type"] == "arm7"
    assert back.attrs["features"]["state"] == {"names": JOINTS, "units": "rad"}
    assert back.keys == store.keys
    reader = get_format("zarr").open(tmp_path / "back.zarr")
    for index, want in enumerate(source):
        got = reader.read_episode(index)
        assert got.task == want.task
        assert got.meta == {"success": want.meta["success"]}
        for key, expected in want.frames.items():
            actual = got.frames[key]
            assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), key
            if key.startswith("image."):
                assert np.abs(actual.astype(np.int16) - expected).mean() < VIDEO_MAE
            else:
                np.testing.assert_array_equal(actual, expected, err_msg=key)


@pytest.mark.parametrize("timestamps", ["sensed", "none"])
def test_timestamps_off_grid_or_absent_round_trip(tmp_path: Path, timestamps: str) -> None:
    """LeRobot's ``timestamp`` column must be i/fps for video lookup; recorded times off that
    grid are kept exactly in ``observation.timestamp``, and made-up ones are not read back."""
    source = native_episodes(2, timestamps=timestamps)
    info = DatasetInfo(fps=FPS, n_episodes=len(source))
    lerobot().write(tmp_path / "lr", info, iter(source), quiet=True)
    table = pq.read_table(tmp_path / "lr/data/chunk-000/file-000.parquet")
    first = table.slice(0, len(source[0].frames["state"]))
    np.testing.assert_array_equal(
        first["timestamp"].to_numpy(), (np.arange(first.num_rows) / FPS).astype(np.float32)
    )
    assert ("observation.timestamp" in table.column_names) == (timestamps == "sensed")
    _, episodes = read_all(tmp_path / "lr")
    for got, want in zip(episodes, source, strict=True):
        assert sorted(got.frames) == sorted(want.frames)
        if timestamps == "sensed":
            np.testing.assert_array_equal(got.frames["timestamp"], want.frames["timestamp"])


# ---------------------------------------------------------------------- the written layout


def test_writes_v30_layout_as_lerobot_does(tmp_path: Path) -> None:
    source = native_episodes()
    info = DatasetInfo(
        fps=FPS,
        n_episodes=len(source),
        features={"state": {"names": JOINTS}},
        attrs={"robot_type": "arm7"},
    )
    assert lerobot().write(tmp_path / "lr", info, iter(source), quiet=True) == len(source)
    root = tmp_path / "lr"
    lengths = [len(ep.frames["state"]) for ep in source]
    videos = [f"videos/observation.images.{c}/chunk-000/file-000.mp4" for c in CAMERAS]
    assert sorted(file_hashes(root)) == sorted(
        [
            "data/chunk-000/file-000.parquet",
            "meta/episodes/chunk-000/file-000.parquet",
            "meta/info.json",
            "meta/stats.json",
            "meta/tasks.parquet",
            "meta/robopolicy.json",
            *videos,
        ]
    )
    meta = json.loads((root / "meta/info.json").read_text())
    assert list(meta)[:12] == [
        "codebase_version",
        "robot_type",
        "total_episodes",
        "total_frames",
        "total_tasks",
        "chunks_size",
        "data_files_size_in_mb",
        "video_files_size_in_mb",
        "fps",
        "splits",
        "data_path",
        "video_path",
    ]
    assert meta["codebase_version"] == "v3.0"
    assert (meta["total_episodes"], meta["total_frames"], meta["total_tasks"]) == (
        len(source),
        sum(lengths),
        2,
    )
    assert (meta["chunks_size"], meta["data_files_size_in_mb"], meta["video_files_size_in_mb"]) == (
        1000,
        100,
        200,
    )
    assert meta["fps"] == FPS and meta["splits"] == {"train": f"0:{len(source)}"}
    assert meta["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert meta["video_path"] == (
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    features = meta["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [7], "names": JOINTS}
    assert features["action"]["dtype"] == "float64"
    assert features["observation.keypoint"]["shape"] == [9, 2]
    assert features["observation.n_contacts"] == {"dtype": "int32", "shape": [1], "names": None}
    assert features["observation.effort"]["dtype"] == "float16"
    front = features["observation.images.front"]
    assert front["dtype"] == "video" and front["shape"] == [48, 64, 3]
    assert front["names"] == ["height", "width", "channels"]
    assert front["info"]["video.codec"] == "av1" and front["info"]["video.pix_fmt"] == "yuv420p"
    assert list(features)[-5:] == [
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]

    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 7)
    assert schema.field("observation.keypoint").type == pa.list_(pa.list_(pa.float32(), 2), 9)
    assert schema.field("observation.n_contacts").type == pa.int32()
    assert "observation.images.front" not in schema.names
    assert b"huggingface" in schema.metadata
    assert pq.ParquetFile(root / "data/chunk-000/file-000.parquet").num_row_groups == len(source)

    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for index, (row, length) in enumerate(zip(episodes, lengths, strict=True)):
        assert row["episode_index"] == index and row["length"] == length
        assert row["tasks"] == [TASKS[index % 2]]
        assert row["dataset_to_index"] - row["dataset_from_index"] == length
        for camera in CAMERAS:
            prefix = f"videos/observation.images.{camera}/"
            assert (row[prefix + "chunk_index"], row[prefix + "file_index"]) == (0, 0)
            assert row[prefix + "from_timestamp"] == pytest.approx(sum(lengths[:index]) / FPS)
            assert row[prefix + "to_timestamp"] == pytest.approx(sum(lengths[: index + 1]) / FPS)
        state_min = np.asarray(row["stats/observation.state/min"])
        np.testing.assert_allclose(state_min, source[index].frames["state"].min(axis=0))
        assert row["stats/observation.state/count"] == [length]
        assert np.asarray(row["stats/observation.images.front/mean"]).shape == (3, 1, 1)
        assert {f"stats/action/{q}" for q in ("q01", "q10", "q50", "q90", "q99")} <= set(row)
        assert row["success"] == index % 2
    for video in videos:
        assert probe_video(root / video).frames == sum(lengths)

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column_names == ["task_index", "task"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    assert tasks["task"].to_pylist() == list(TASKS)
    stats = json.loads((root / "meta/stats.json").read_text())
    everything = np.concatenate([ep.frames["state"] for ep in source])
    np.testing.assert_allclose(
        stats["observation.state"]["mean"], everything.mean(0), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(stats["observation.state"]["std"], everything.std(0), rtol=1e-6)
    assert stats["index"]["count"] == [sum(lengths)]


NAMES = {
    "state": "observation.state",
    "keypoint": "observation.keypoint",
    "sim_state": "observation.sim_state",
    "image.front": "observation.images.front",
    "image.image": "observation.image",
    "action": "action",
    "action.gripper": "action.gripper",
    "reward": "reward",
    "intervention": "intervention",
    "next.reward": "next.reward",
}


def test_observations_are_prefixed_and_names_map_back() -> None:
    for native, name in NAMES.items():
        assert (to_lerobot(native), to_native(name)) == (name, native)
    for name in ("observation.timestamp", "observation.action", "observation.image.x", "index"):
        assert to_native(name) == name  # not a name to_lerobot makes: kept as it is


def test_rolls_over_to_new_data_files(tmp_path: Path) -> None:
    source = native_episodes(4)
    info = DatasetInfo(
        fps=FPS, n_episodes=4, attrs={"lerobot_info": {"data_files_size_in_mb": 0.001}}
    )
    lerobot().write(tmp_path / "lr", info, iter(source), quiet=True)
    assert len(list((tmp_path / "lr/data/chunk-000").glob("file-*.parquet"))) > 1
    _, episodes = read_all(tmp_path / "lr")
    for got, want in zip(episodes, source, strict=True):
        np.testing.assert_array_equal(got.frames["action"], want.frames["action"])
