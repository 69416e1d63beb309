"""``Recorder``: episodes recorded while the arm is driven, none of them ever half-written.

The control loop calls :meth:`Recorder.record` once per tick with that tick's frame (key ->
per-frame array: ``state``, ``action``, ``timestamp``, ``image.<camera>``, ...). The call only
puts the frame on a bounded queue; one worker thread encodes and writes it, so a slow disk or a
slow encoder never stalls the loop. When the writer falls ``queue_frames`` behind, the tick is
dropped instead (counted, stored per episode as ``dropped_frames``).

The operator's controls — :meth:`~Recorder.keep`, :meth:`~Recorder.discard`,
:meth:`~Recorder.rerecord` — end the episode in flight; ``keep`` commits it in one atomic step
of the store (``docs/RELIABILITY.md`` R12), numbered right after the last kept one (R13).
A write error mid-episode — a full disk above all (R15) — discards that episode, tells the
operator through ``notify`` at once, and leaves earlier episodes as they were; the next episode
starts clean.

    with Recorder(RecorderConfig(path), setup) as recorder:
        recorder.start_episode()
        for frame in ticks:
            recorder.record(frame)      # never waits for the disk
        outcome = recorder.keep()       # waits for the writer, then commits
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

from hardware.recorder.config import RecorderConfig
from hardware.recorder.resume import (
    EPISODE_INDEX,
    RecordingError,
    RecordingSetup,
    open_recording,
)
from hardware.recorder.writer import EpisodeWriter

log = logging.getLogger(__name__)

DROPPED_FRAMES = "dropped_frames"
"""Per-episode value: ticks dropped because the writer was behind."""


@dataclasses.dataclass(frozen=True)
class EpisodeOutcome:
    """How an episode ended."""

    kept: bool
    """True when the episode is committed to the store."""
    index: int
    """The episode's number: its index in the store when kept, the number it would have had
    otherwise."""
    frames: int
    """Frames written for it."""
    dropped: int
    """Ticks dropped because the writer was behind."""
    reason: str = ""
    """Why it was not kept (the operator discarded it, the disk was full, ...)."""


class _Reply:
    """A one-shot answer from the worker thread."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: EpisodeOutcome | None = None

    def set(self, value: EpisodeOutcome) -> None:
        self._value = value
        self._done.set()

    def get(self) -> EpisodeOutcome:
        self._done.wait()
        return cast(EpisodeOutcome, self._value)


class Recorder:
    """Records episodes into the store at ``config.path`` (created, or resumed after checks).

    Args:
        config: where and how to write.
        setup: robot, cameras and fps; a resumed store must have been recorded with the same.
        notify: tells the operator about a discarded episode (default: a logged warning);
            called from the worker thread.
        writer_class: the episode writer (tests wrap it to inject faults).
    """

    def __init__(
        self,
        config: RecorderConfig,
        setup: RecordingSetup,
        *,
        notify: Callable[[str], None] | None = None,
        writer_class: type[EpisodeWriter] = EpisodeWriter,
    ) -> None:
        self.config = config
        self.setup = setup
        self.notify = notify or log.warning
        store = open_recording(config.path, setup, task=config.task)
        self.next_index = store.n_episodes
        """Number the next kept episode gets."""
        self._writer = writer_class(store, tuple(c.key for c in setup.cameras))
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=config.queue_frames)
        self._recording = False
        self._attempt = 0
        self._dropped = 0
        self._failed_attempt = -1
        self._failure = ""
        self._thread = threading.Thread(target=self._work, name="Recorder", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Ticks of the episode in flight dropped because the writer was behind."""
        return self._dropped

    @property
    def problem(self) -> str:
        """Why the episode in flight can no longer be kept ('' while all is well)."""
        return self._failure if self._failed_attempt == self._attempt else ""

    # -- operator controls --------------------------------------------------------------------

    def start_episode(self) -> int:
        """Begin an episode; return the number it will have when kept."""
        if self._recording:
            raise RecordingError("an episode is already being recorded; keep or discard it")
        self._attempt += 1
        self._dropped = 0
        self._recording = True
        return self.next_index

    def record(self, frame: Mapping[str, np.ndarray]) -> bool:
        """Queue one tick's frame without waiting; False when it was not recorded (the writer
        is behind, or the episode already failed)."""
        if not self._recording:
            raise RecordingError("no episode in flight; call start_episode first")
        if self._failed_attempt == self._attempt:
            return False
        copied = {key: np.array(value) for key, value in frame.items()}  # callers reuse buffers
        try:
            self._queue.put_nowait(("frame", self._attempt, copied))
        except queue.Full:
            self._dropped += 1
            return False
        return True

    def keep(self) -> EpisodeOutcome:
        """End the episode and commit it (waits for the writer to catch up)."""
        outcome = self._end(keep=True)
        if outcome.kept:
            self.next_index = outcome.index + 1
        return outcome

    def discard(self) -> EpisodeOutcome:
        """End the episode and throw it away; its number is reused."""
        return self._end(keep=False)

    def rerecord(self) -> EpisodeOutcome:
        """Discard the episode in flight and start it again under the same number."""
        outcome = self.discard()
        self.start_episode()
        return outcome

    def close(self) -> None:
        """Discard an episode still in flight and stop the writer; idempotent."""
        if self._recording:
            self.discard()
        if self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end(self, *, keep: bool) -> EpisodeOutcome:
        if not self._recording:
            raise RecordingError("no episode in flight")
        self._recording = False
        reply = _Reply()
        self._queue.put(("end", self._attempt, keep, self._dropped, self.next_index, reply))
        return reply.get()

    # -- worker thread ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item[0] == "stop":
                return
            if item[0] == "frame":
                _, attempt, frame = item
                if attempt != self._failed_attempt:
                    try:
                        self._writer.add(frame)
                    except Exception as exc:  # any write error ends this episode, not the run
                        self._fail(attempt, self.next_index, exc)
                continue
            _, attempt, keep, dropped, index, reply = item
            reply.set(self._finish(attempt, keep, dropped, index))

    def _finish(self, attempt: int, keep: bool, dropped: int, index: int) -> EpisodeOutcome:
        frames = self._writer.length
        if attempt == self._failed_attempt:
            return EpisodeOutcome(False, index, frames, dropped, self._failure)
        if not keep:
            self._discard()
            return EpisodeOutcome(False, index, frames, dropped, "discarded by the operator")
        meta: dict[str, int] = {EPISODE_INDEX: index, DROPPED_FRAMES: dropped}
        if self.config.task is not None:
            meta["task_index"] = 0
        try:
            stored = self._writer.commit(meta)
        except Exception as exc:  # nothing was committed; the store keeps the earlier episodes
            self._fail(attempt, index, exc)
            return EpisodeOutcome(False, index, frames, dropped, self._failure)
        return EpisodeOutcome(True, stored, frames, dropped)

    def _fail(self, attempt: int, index: int, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            cause = f"the disk is full ({exc})"
        else:
            cause = f"{type(exc).__name__}: {exc}"
        self._failure = f"episode {index} discarded: {cause}; earlier episodes are safe"
        self._failed_attempt = attempt
        self._discard()
        self.notify(self._failure)

    def _discard(self) -> None:
        try:
            self._writer.discard()
        except Exception as exc:  # readers ignore uncommitted frames; the next episode overwrites
            log.warning("could not trim the discarded episode's frames: %s", exc)
