"""Files of a LeRobot v3.0 dataset that grow episode by episode, rolling over to the next
``chunk-XXX/file-XXX`` at an episode boundary once they reach their size limit.

Data rows go to parquet files, one row group per episode (as lerobot writes them). Each camera's
frames go to :func:`robopolicy.data.video.encode_video` running in a thread of its own, fed
through a bounded queue, so a file holds many episodes back to back and the cameras encode in
parallel with the rest of the writer (PyAV releases the GIL while encoding).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.formats.lerobot.layout import DATA_PATH, VIDEO_PATH
from robopolicy.data.paths import fill_template
from robopolicy.data.video import VideoSettings, encode_video
from robopolicy.errors import DataError

_QUEUE_FRAMES = 64
_POLL_S = 0.2


def next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) index after ``(chunk, file)``: ``chunks_size`` files per chunk."""
    return (chunk + 1, 0) if file >= chunks_size - 1 else (chunk, file + 1)


class ParquetShards:
    """Data rows appended to ``data/chunk-XXX/file-XXX.parquet``, a new file past the size limit."""

    def __init__(self, root: Path, limit_mb: float, chunks_size: int) -> None:
        self.root, self.limit, self.chunks_size = root, limit_mb * 2**20, chunks_size
        self.chunk = self.file = self.rows = 0
        self.path: Path | None = None
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> tuple[int, int]:
        if self.writer is not None and self.path is not None:
            size = self.path.stat().st_size
            if size + size / max(self.rows, 1) * table.num_rows >= self.limit:
                self.close()
                self.chunk, self.file = next_file(self.chunk, self.file, self.chunks_size)
        if self.writer is None:
            self.path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(
                self.path, table.schema, compression="snappy", use_dictionary=True
            )
            self.rows = 0
        self.writer.write_table(table)  # one row group per episode, as lerobot writes
        self.rows += table.num_rows
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _EncoderThread:
    """Encodes the frames put into it to one mp4, in a background thread."""

    def __init__(self, path: Path, fps: float, settings: VideoSettings) -> None:
        self.path = path
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(fps, settings),
            daemon=True,
            name=f"encode {path.parent.parent.name}",
        )
        self._thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        while (frame := self._queue.get()) is not None:
            yield frame

    def _run(self, fps: float, settings: VideoSettings) -> None:
        try:
            encode_video(self.path, self._frames(), fps, settings)
        except BaseException as exc:  # handed to the writer's thread by put/close
            self._error = exc

    def _put(self, item: np.ndarray | None) -> None:
        while True:
            if self._error is not None or not self._thread.is_alive():
                self._raise()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        raise DataError(self.path, "video encoder stopped early")

    def put(self, frames: np.ndarray) -> None:
        for frame in frames:
            self._put(frame)

    def close(self) -> None:
        """Finish the file; raises what the encoder raised, if anything."""
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop encoding without raising (the file is discarded with the staging directory)."""
        while self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout=30)

    def bytes_written(self) -> int:
        """Bytes on disk so far: the finished file, or the partial one beside it."""
        return sum(p.stat().st_size for p in self.path.parent.glob(f"*{self.path.name}*"))


class VideoShards:
    """One camera's ``videos/<key>/chunk-XXX/file-XXX.mp4`` files, episodes back to back."""

    def __init__(
        self,
        root: Path,
        key: str,
        fps: float,
        limit_mb: float,
        chunks_size: int,
        settings: VideoSettings | None = None,
    ) -> None:
        self.root, self.key, self.fps = root, key, fps
        self.limit, self.chunks_size = limit_mb * 2**20, chunks_size
        self.settings = settings or VideoSettings()
        self.chunk = self.file = self.frames = 0
        self.stream: _EncoderThread | None = None

    def add(self, frames: np.ndarray) -> tuple[int, int, float, float]:
        """Append an episode's frames; return (chunk, file, from_timestamp, to_timestamp)."""
        if self.stream is not None and self.stream.bytes_written() >= self.limit:
            self.stream.close()
            self.stream = None
            self.chunk, self.file = next_file(self.chunk, self.file, self.chunks_size)
        if self.stream is None:
            path = video_file(self.root, self.key, self.chunk, self.file)
            self.stream = _EncoderThread(path, self.fps, self.settings)
            self.frames = 0
        start = self.frames / self.fps
        self.stream.put(frames)
        self.frames += len(frames)
        return self.chunk, self.file, start, self.frames / self.fps

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def abort(self) -> None:
        if self.stream is not None:
            self.stream.abort()
            self.stream = None


def video_file(root: Path, key: str, chunk: int, file: int) -> Path:
    """``videos/<key>/chunk-XXX/file-XXX.mp4`` under ``root``; a DataError naming ``key`` when
    the feature name would lead outside it."""
    return fill_template(
        root, VIDEO_PATH, where=root, field=key, video_key=key, chunk_index=chunk, file_index=file
    )
