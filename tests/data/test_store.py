"""The native episode store: layout, reading windows, appending, and refusing bad episodes."""

from __future__ import annotations

import json

import numcodecs
import numpy as np
import pytest
import zarr

from robopolicy.data.store import ArraySpec, EpisodeStore
from robopolicy.errors import DataError


def make_episode(length: int, seed: int, *, image: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = {
        "state": rng.normal(size=(length, 7)).astype(np.float32),
        "action": rng.normal(size=(length, 7)).astype(np.float64),
        "timestamp": np.arange(length, dtype=np.float32) / 10,
        "success": (np.arange(length) == length - 1),
    }
    if image:
        frames["image.front"] = rng.integers(0, 256, size=(length, 16, 24, 3), dtype=np.uint8)
    return frames


@pytest.fixture
def store(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", fps=10)
    for i, length in enumerate((5, 8, 3)):
        store.append_episode(make_episode(length, i), episode_meta={"task_index": i % 2})
    return store


def test_episodes_read_back_exactly(store):
    assert store.n_episodes == 3
    assert store.n_frames == 16
    assert store.episode_ends.tolist() == [5, 13, 16]
    assert store.episode_lengths.tolist() == [5, 8, 3]
    for i, length in enumerate((5, 8, 3)):
        expected = make_episode(length, i)
        got = store.episode(i)
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert got[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert store.episode_meta("task_index").tolist() == [0, 1, 0]
    np.testing.assert_array_equal(store.episode(-1)["state"], make_episode(3, 2)["state"])


def test_time_window_across_episodes(store):
    window = store.frames(3, 7, keys=["state"])
    expected = np.concatenate([make_episode(5, 0)["state"][3:], make_episode(8, 1)["state"][:2]])
    np.testing.assert_array_equal(window["state"], expected)
    assert list(window) == ["state"]
    with pytest.raises(IndexError):
        store.frames(10, 17)
    with pytest.raises(IndexError):
        store.episode(3)


def test_layout_is_a_diffusion_policy_replay_buffer(store):
    group = zarr.open_group(store.path, mode="r")
    assert group.metadata.zarr_format == 2
    assert sorted(group["data"].array_keys()) == sorted(make_episode(1, 0))
    assert group["meta/episode_ends"].dtype == np.int64
    assert group["data/state"].shape == (16, 7)
    attrs = json.loads((store.path / ".zattrs").read_text())
    assert attrs["fps"] == 10.0


def test_per_key_layout_images_chunked_per_frame(store, tmp_path):
    image = store.spec("image.front")
    assert image.chunk_frames == 1
    assert image.compressor is not None
    assert store.spec("state").chunk_frames > 1
    custom = EpisodeStore.create(tmp_path / "custom.zarr", fps=None)
    spec = ArraySpec(np.float32, (7,), 4, numcodecs.Zstd(level=3))
    custom.append_episode(make_episode(6, 0, image=False), specs={"state": spec})
    assert custom.spec("state") == spec
    assert custom.array("state").chunks == (4, 7)
    assert custom.fps is None


def test_attributes_and_features(store):
    store.set_feature("state", names=[f"joint_{i}" for i in range(7)], units="rad")
    store.set_attrs(robot="arm6")
    reopened = EpisodeStore.open(store.path)
    assert reopened.attrs["features"]["state"] == {
        "names": [f"joint_{i}" for i in range(7)],
        "units": "rad",
    }
    assert reopened.attrs["robot"] == "arm6"
    with pytest.raises(DataError, match="read-only"):
        reopened.set_attrs(robot="other")


def test_reopen_and_append(store):
    again = EpisodeStore.open(store.path, mode="a")
    assert again.append_episode(make_episode(4, 9), episode_meta={"task_index": 1}) == 3
    final = EpisodeStore.open(store.path)
    assert final.n_episodes == 4
    np.testing.assert_array_equal(final.episode(3)["action"], make_episode(4, 9)["action"])
    np.testing.assert_array_equal(final.episode(1)["action"], make_episode(8, 1)["action"])


@pytest.mark.parametrize(
    ("change", "message", "key"),
    [
        (lambda e: e.pop("state"), "differ from the store", None),
        (lambda e: e.update(extra=np.zeros(4)), "differ from the store", None),
        (lambda e: e.update(state=np.zeros((4, 6), np.float32)), "differs from the store", "state"),
        (lambda e: e.update(state=np.zeros((4, 7), np.float64)), "differs from the store", "state"),
        (lambda e: e.update(action=np.zeros((3, 7))), "unequal length", None),
        (lambda e: e["state"].__setitem__((2, 1), np.nan), "non-finite value .* frame 2", "state"),
        (lambda e: e["timestamp"].__setitem__(3, 0.0), "backwards at frame 3", "timestamp"),
        (lambda e: e.update(label=np.array(["a"] * 4)), "not numeric", "label"),
    ],
)
def test_bad_episode_is_refused_and_store_unchanged(store, change, message, key):
    episode = make_episode(4, 5)
    change(episode)
    with pytest.raises(DataError, match=message) as info:
        store.append_episode(episode)
    assert str(store.path) in str(info.value)
    if key:
        assert f"[{key}]" in str(info.value)
    reopened = EpisodeStore.open(store.path, mode="a")
    assert reopened.n_episodes == 3
    assert reopened.array("state").shape[0] == 16
    np.testing.assert_array_equal(reopened.episode(2)["state"], make_episode(3, 2)["state"])


def test_create_refuses_existing_and_bad_fps(store, tmp_path):
    with pytest.raises(DataError, match="already exists"):
        EpisodeStore.create(store.path, fps=10)
    with pytest.raises(DataError, match="fps"):
        EpisodeStore.create(tmp_path / "x.zarr", fps=0)
    with pytest.raises(DataError, match="no '/'"):
        EpisodeStore.create(tmp_path / "y.zarr", fps=1).append_episode({"a/b": np.zeros(2)})


def test_failure_between_frames_and_commit_keeps_store_valid(store, monkeypatch):
    """A writer that dies after writing frames but before the commit loses only that episode."""

    def crash(self, end):
        raise RuntimeError("killed")

    writer = EpisodeStore.open(store.path, mode="a")
    monkeypatch.setattr(EpisodeStore, "_commit", crash)
    with pytest.raises(RuntimeError):
        writer.append_episode(make_episode(6, 7), episode_meta={"task_index": 1})
    monkeypatch.undo()
    reader = EpisodeStore.open(store.path)
    assert reader.n_episodes == 3
    assert reader.array("state").shape[0] == 22  # uncommitted frames are on disk but hidden
    assert reader.episode_meta("task_index").tolist() == [0, 1, 0]
    resumed = EpisodeStore.open(store.path, mode="a")
    assert resumed.array("state").shape[0] == 16
    resumed.append_episode(make_episode(2, 8), episode_meta={"task_index": 0})
    final = EpisodeStore.open(store.path)
    assert final.episode_ends.tolist() == [5, 13, 16, 18]
    np.testing.assert_array_equal(final.episode(3)["state"], make_episode(2, 8)["state"])


def test_corrupt_store_is_named(store):
    (store.path / "meta" / "episode_ends" / ".zarray").write_text("{ truncated")
    with pytest.raises(DataError, match=r"not a readable zarr group|unreadable") as info:
        EpisodeStore.open(store.path)
    assert str(store.path) in str(info.value)


def test_corrupt_chunk_is_named(store):
    chunk = store.path / "data" / "image.front" / "1.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    reader = EpisodeStore.open(store.path)
    with pytest.raises(DataError, match="unreadable") as info:
        reader.episode(0)
    assert "[data/image.front]" in str(info.value)
    np.testing.assert_array_equal(reader.episode(1)["state"], make_episode(8, 1)["state"])


def test_truncated_data_array_is_named(store):
    meta_file = store.path / "data" / "state" / ".zarray"
    meta = json.loads(meta_file.read_text())
    meta["shape"][0] = 10
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="truncated store") as info:
        EpisodeStore.open(store.path)
    assert "data/state" in str(info.value)
