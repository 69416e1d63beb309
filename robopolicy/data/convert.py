"""Convert any supported dataset into a writable format, validating every episode on the way."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from robopolicy.atomic import staged_directory
from robopolicy.data.formats.base import Episode, detect_format, get_format
from robopolicy.data.validate import check_episode
from robopolicy.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ConvertReport:
    """What a conversion did."""

    source_format: str
    """Name of the detected source format."""
    written: int = 0
    """Episodes written to the destination."""
    dropped: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    """(episode index, reason) for each episode left out under ``drop_bad_episodes``."""


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    to: str = "zarr",
    drop_bad_episodes: bool = False,
    require_video: bool = False,
    overwrite: bool = False,
    fps: float | None = None,
    quiet: bool = False,
) -> ConvertReport:
    """Read ``src`` in whatever format it is and write it to ``dst`` in format ``to``.

    The source is only read, and ``dst`` appears only when complete: the dataset is written into
    a hidden sibling directory and renamed into place at the end. ``dst`` may neither hold nor
    lie inside ``src``, and ``overwrite`` replaces only an existing dataset (or empty directory),
    so no destination can remove the source or anything beside it. A bad episode stops the
    conversion with a DataError naming file and key, or — with ``drop_bad_episodes`` — is left
    out and reported. ``fps`` sets the frame rate
    when the source does not record one (diffusion_policy replay buffers do not) and must agree
    with it when it does.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    _check_destination(src, dst, overwrite)
    writer = get_format(to)
    if not writer.writable:
        raise DataError(dst, f"format {to!r} can be read but not written")
    source = detect_format(src)
    reader = source.open(src, require_video=require_video)
    if fps is not None:
        if reader.info.fps is not None and abs(reader.info.fps - fps) > 1e-6:
            raise DataError(src, f"--fps {fps} contradicts the recorded fps {reader.info.fps}")
        reader.info.fps = float(fps)
    report = ConvertReport(source_format=source.name)

    def episodes() -> Iterator[Episode]:
        for index in range(reader.info.n_episodes):
            try:
                episode = reader.read_episode(index)
                check_episode(src, episode.frames, episode=index)
            except DataError as exc:
                if not drop_bad_episodes:
                    raise
                log.warning("dropping episode %d: %s", index, exc)
                report.dropped.append((index, str(exc)))
                continue
            yield episode

    try:
        with staged_directory(dst, overwrite=overwrite) as staging:
            progress = tqdm(  # named after the destination, not the staging directory
                episodes(),
                total=reader.info.n_episodes,
                desc=f"writing {dst.name}",
                unit="ep",
                disable=quiet,
            )
            report.written = writer.write(staging, reader.info, progress, source_reader=reader)
    finally:
        reader.close()
    return report


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse a destination that is, holds or lies inside the source (both resolved), and an
    ``overwrite`` of something that is not a dataset."""
    if dst == src or src in dst.parents or dst in src.parents:
        raise DataError(
            dst, f"destination must be outside the source {src} and must not contain it"
        )
    if not overwrite or not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
        return
    try:
        detect_format(dst)
    except DataError:
        raise DataError(
            dst, "exists and is not a dataset; --overwrite replaces only a dataset"
        ) from None
