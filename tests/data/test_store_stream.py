"""Streaming an episode into the store: frames written before the commit stay invisible, a
commit makes them one episode, a discard drops them."""

from __future__ import annotations

import numpy as np
import pytest

from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError


def test_streamed_frames_appear_only_when_committed(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", fps=10)
    images = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    for t in range(4):
        store.write_uncommitted("image.cam", t, images[t : t + 1])
    store.write_uncommitted("state", 0, np.ones((4, 2), np.float32))
    assert EpisodeStore.open(tmp_path / "s.zarr").n_episodes == 0
    assert store.commit_uncommitted(4, episode_meta={"n": 7}) == 0
    reread = EpisodeStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(reread.episode(0)["image.cam"], images)
    assert reread.episode_meta("n").tolist() == [7]

    store.write_uncommitted("image.cam", 0, images[:2])
    store.write_uncommitted("state", 0, np.zeros((2, 2), np.float32))
    store.discard_uncommitted()
    assert store.array("image.cam").shape[0] == 4
    with pytest.raises(DataError, match="has 0 of 3 frames"):
        store.commit_uncommitted(3, episode_meta={"n": 8})


def test_a_frame_of_another_shape_is_refused(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", fps=10)
    store.write_uncommitted("state", 0, np.ones((2, 3), np.float32))
    with pytest.raises(DataError, match="differs"):
        store.write_uncommitted("state", 2, np.ones((1, 4), np.float32))
