"""The recorder: teleoperated episodes into the episode store, committed whole or not at all.

- :mod:`hardware.recorder.recorder`: ``Recorder`` (record per tick without waiting; keep,
  discard, re-record) and ``EpisodeOutcome``;
- :mod:`hardware.recorder.writer`: ``EpisodeWriter``, the part that touches the disk;
- :mod:`hardware.recorder.resume`: ``RecordingSetup`` (robot, cameras, fps) and the checks that
  refuse a resume into a store recorded differently or numbered with a gap;
- :mod:`hardware.recorder.config`: ``RecorderConfig``.

Export to LeRobot v3.0 is the data layer's converter: ``robopolicy data convert STORE DST
--to lerobot``.
"""

from hardware.recorder.config import RecorderConfig
from hardware.recorder.recorder import EpisodeOutcome, Recorder
from hardware.recorder.resume import CameraInfo, RecordingError, RecordingSetup
from hardware.recorder.writer import EpisodeWriter

__all__ = [
    "CameraInfo",
    "EpisodeOutcome",
    "EpisodeWriter",
    "Recorder",
    "RecorderConfig",
    "RecordingError",
    "RecordingSetup",
]
