"""Resuming a recording continues the numbering, and refuses a changed setup or an index gap
(RELIABILITY R13), naming what changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardware.cameras.opencv import OpenCVCamera, OpenCVCameraConfig
from hardware.recorder import (
    CameraInfo,
    Recorder,
    RecorderConfig,
    RecordingError,
    RecordingSetup,
)
from hardware.sim_arm import SimArm
from hardware.testing.recorded_episodes import SETUP, episode_length, make_episode, make_frame
from robopolicy.data.store import EpisodeStore


def record_episodes(path, count, setup=SETUP):
    with Recorder(RecorderConfig(path), setup) as recorder:
        for _ in range(count):
            index = recorder.start_episode()
            for t in range(episode_length(index)):
                recorder.record(make_frame(index, t, setup))
            assert recorder.keep().kept


def test_resume_continues_the_numbering(tmp_path):
    path = tmp_path / "rec.zarr"
    record_episodes(path, 2)
    record_episodes(path, 2)
    store = EpisodeStore.open(path)
    assert store.episode_meta("episode_number").tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"robot": "feetech"}, "robot 'sim' -> 'feetech'"),
        ({"joints": ("a", "b", "c", "d", "e", "f")}, "robot joints"),
        ({"fps": 15.0}, "fps 30 -> 15"),
        ({"cameras": (CameraInfo("front", 16, 16),)}, "camera 'wrist' removed"),
        (
            {"cameras": (*SETUP.cameras, CameraInfo("side", 16, 16))},
            "camera 'side' added",
        ),
        (
            {"cameras": (CameraInfo("front", 32, 16), CameraInfo("wrist", 16, 16))},
            "camera 'front' size (16, 16) -> (32, 16)",
        ),
    ],
)
def test_resume_refuses_a_changed_setup(tmp_path, change, message):
    path = tmp_path / "rec.zarr"
    record_episodes(path, 1)
    with pytest.raises(RecordingError, match="setup changed") as info:
        Recorder(RecorderConfig(path), dataclasses.replace(SETUP, **change))
    assert message in str(info.value)


def test_resume_refuses_an_index_gap(tmp_path):
    path = tmp_path / "rec.zarr"
    store = EpisodeStore.create(path, fps=SETUP.fps, attrs={"recording": SETUP.to_json()})
    for number in (0, 1, 3):
        store.append_episode(make_episode(number), episode_meta={"episode_number": number})
    with pytest.raises(RecordingError, match="gap: stored episode 2 is numbered 3, expected 2"):
        Recorder(RecorderConfig(path), SETUP)


def test_resume_refuses_a_store_the_recorder_did_not_make(tmp_path):
    path = tmp_path / "other.zarr"
    EpisodeStore.create(path, fps=SETUP.fps).append_episode({"x": np.zeros((3, 2))})
    with pytest.raises(RecordingError, match="not made by the recorder"):
        Recorder(RecorderConfig(path), SETUP)


def test_resume_refuses_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("hello")
    with pytest.raises(RecordingError, match="cannot resume"):
        Recorder(RecorderConfig(tmp_path / "junk"), SETUP)


def test_the_setup_of_a_driver_and_its_cameras():
    arm = SimArm()
    cameras = [OpenCVCamera(OpenCVCameraConfig("front", height=12, width=16))]
    setup = RecordingSetup.of(arm, cameras, fps=30.0)
    assert (setup.robot, setup.joints, setup.fps) == ("sim", arm.spec.names, 30.0)
    assert setup.cameras == (CameraInfo("front", 12, 16),)
