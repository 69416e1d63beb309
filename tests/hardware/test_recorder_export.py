"""A recording exports to LeRobot v3.0 through the data layer's converter and reads back."""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware.recorder import CameraInfo, Recorder, RecorderConfig
from hardware.testing.recorded_episodes import SETUP, episode_length, make_episode, make_frame
from robopolicy.data.convert import convert
from robopolicy.data.formats.base import get_format

VIDEO_SETUP = dataclasses.replace(SETUP, cameras=(CameraInfo("front", 64, 64),))
"""Frames large enough for the AV1 encoder."""


def test_recording_exports_to_lerobot_v30(tmp_path):
    path = tmp_path / "rec.zarr"
    with Recorder(RecorderConfig(path, task="push the block"), VIDEO_SETUP) as recorder:
        for _ in range(2):
            index = recorder.start_episode()
            for t in range(episode_length(index)):
                recorder.record(make_frame(index, t, VIDEO_SETUP))
            assert recorder.keep().kept
    report = convert(path, tmp_path / "lerobot", to="lerobot", quiet=True)
    assert report.written == 2
    reader = get_format("lerobot").open(tmp_path / "lerobot")
    assert reader.info.fps == VIDEO_SETUP.fps and reader.info.n_episodes == 2
    for index in range(2):
        got, want = reader.read_episode(index), make_episode(index, VIDEO_SETUP)
        assert got.task == "push the block"
        assert got.meta["episode_number"] == index
        for key in ("state", "action", "timestamp"):
            np.testing.assert_array_equal(got.frames[key], want[key], err_msg=key)
        video = got.frames["image.front"]
        assert video.shape == want["image.front"].shape and video.dtype == np.uint8
    reader.close()
