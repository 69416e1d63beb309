"""The recorder: keep / discard / re-record, numbering, a slow writer never blocks the loop, and
a full disk discards only the episode in flight (RELIABILITY R12, R13, R15)."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.recorder import EpisodeWriter, Recorder, RecorderConfig, RecordingError
from hardware.testing.recorded_episodes import (
    SETUP,
    episode_digest,
    episode_length,
    make_episode,
    make_frame,
)
from robopolicy.data.store import EpisodeStore


def record(recorder: Recorder, index: int) -> None:
    for t in range(episode_length(index)):
        assert recorder.record(make_frame(index, t))


def test_kept_episodes_read_back_identical_and_numbered(tmp_path):
    path = tmp_path / "rec.zarr"
    with Recorder(RecorderConfig(path, task="push"), SETUP) as recorder:
        for index in range(3):
            assert recorder.start_episode() == index
            record(recorder, index)
            outcome = recorder.keep()
            assert (outcome.kept, outcome.index, outcome.frames) == (
                True,
                index,
                episode_length(index),
            )
    store = EpisodeStore.open(path)
    assert store.n_episodes == 3
    assert store.fps == SETUP.fps
    assert store.episode_meta("episode_number").tolist() == [0, 1, 2]
    assert store.attrs["tasks"] == ["push"]
    for index in range(3):
        assert episode_digest(store.episode(index)) == episode_digest(make_episode(index))


def test_discard_and_rerecord_reuse_the_number(tmp_path):
    path = tmp_path / "rec.zarr"
    with Recorder(RecorderConfig(path), SETUP) as recorder:
        recorder.start_episode()
        record(recorder, 7)
        outcome = recorder.discard()
        assert not outcome.kept and outcome.index == 0 and "operator" in outcome.reason
        assert recorder.start_episode() == 0
        record(recorder, 8)
        assert recorder.rerecord().index == 0
        record(recorder, 0)
        assert recorder.keep().index == 0
        recorder.start_episode()
        record(recorder, 9)  # in flight when closed: discarded
    store = EpisodeStore.open(path)
    assert store.n_episodes == 1
    assert episode_digest(store.episode(0)) == episode_digest(make_episode(0))


def test_controls_out_of_order_are_refused(tmp_path):
    with Recorder(RecorderConfig(tmp_path / "rec.zarr"), SETUP) as recorder:
        with pytest.raises(RecordingError, match="start_episode"):
            recorder.record(make_frame(0, 0))
        with pytest.raises(RecordingError, match="no episode"):
            recorder.keep()
        recorder.start_episode()
        with pytest.raises(RecordingError, match="already"):
            recorder.start_episode()


class GatedWriter(EpisodeWriter):
    """A writer that stalls on its first frame until released: the slowest encoder there is."""

    entered = threading.Event()
    release = threading.Event()

    def add(self, frame):
        GatedWriter.entered.set()
        GatedWriter.release.wait()
        super().add(frame)


def test_a_stalled_writer_never_blocks_the_control_loop(tmp_path):
    """The loop runs 40 ticks on a virtual clock while the writer is stuck on tick 0: every
    ``record`` returns, the ticks past the queue are dropped and counted, the rest are kept."""
    GatedWriter.entered.clear()
    GatedWriter.release.clear()
    clock = VirtualClock()
    queue_frames = 4
    config = RecorderConfig(tmp_path / "rec.zarr", queue_frames=queue_frames)

    def tick(t: int) -> dict[str, np.ndarray]:
        frame = make_frame(0, t)
        frame["timestamp"] = np.float64(clock.monotonic())
        return frame

    with Recorder(config, SETUP, writer_class=GatedWriter) as recorder:
        recorder.start_episode()
        accepted = [recorder.record(tick(0))]
        GatedWriter.entered.wait()  # the worker holds tick 0 and is stuck
        for t in range(1, 40):
            clock.sleep(1 / SETUP.fps)
            accepted.append(recorder.record(tick(t)))
        assert sum(accepted) == 1 + queue_frames
        assert recorder.dropped == 40 - 1 - queue_frames
        GatedWriter.release.set()
        outcome = recorder.keep()
    assert outcome.kept and outcome.frames == 1 + queue_frames
    assert outcome.dropped == 40 - 1 - queue_frames
    store = EpisodeStore.open(config.path)
    assert store.episode_meta("dropped_frames").tolist() == [outcome.dropped]
    assert store.n_frames == 1 + queue_frames


class DiskFullWriter(EpisodeWriter):
    """Raises ENOSPC when episode ``fail_episode`` reaches frame ``fail_frame``."""

    fail_episode = 1
    fail_frame = 3

    def add(self, frame):
        if self.store.n_episodes == self.fail_episode and self.length == self.fail_frame:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().add(frame)


def test_a_full_disk_discards_the_episode_in_flight_and_keeps_the_rest(tmp_path):
    path = tmp_path / "rec.zarr"
    told: list[str] = []
    failed = threading.Event()

    def notify(message: str) -> None:
        told.append(message)
        failed.set()

    with Recorder(RecorderConfig(path), SETUP, notify=notify, writer_class=DiskFullWriter) as rec:
        rec.start_episode()
        record(rec, 0)
        assert rec.keep().kept
        rec.start_episode()
        for t in range(DiskFullWriter.fail_frame + 1):
            assert rec.record(make_frame(1, t))
        failed.wait()  # the operator is told while the episode is still being driven
        assert "episode 1 discarded" in rec.problem and "safe" in rec.problem
        assert not rec.record(make_frame(1, DiskFullWriter.fail_frame + 1))
        outcome = rec.keep()
        assert not outcome.kept and "disk is full" in outcome.reason
        assert told == [outcome.reason]
        assert rec.start_episode() == 1  # the next episode reuses the number, starting clean
        DiskFullWriter.fail_episode = -1
        record(rec, 1)
        assert rec.keep().index == 1
    store = EpisodeStore.open(path)
    assert store.n_episodes == 2
    for index in range(2):
        assert episode_digest(store.episode(index)) == episode_digest(make_episode(index))


def test_a_full_disk_at_commit_keeps_the_earlier_episodes(tmp_path):
    class FailingCommit(EpisodeWriter):
        def commit(self, episode_meta):
            if self.store.n_episodes == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().commit(episode_meta)

    path = tmp_path / "rec.zarr"
    told: list[str] = []
    with Recorder(RecorderConfig(path), SETUP, notify=told.append, writer_class=FailingCommit) as r:
        for index in range(2):
            r.start_episode()
            record(r, index)
            r.keep()
    assert len(told) == 1 and "disk is full" in told[0]
    store = EpisodeStore.open(path)
    assert store.n_episodes == 1
    assert episode_digest(store.episode(0)) == episode_digest(make_episode(0))
