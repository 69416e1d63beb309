"""LeRobot import and export refuse what they cannot do safely: the source is never modified,
missing videos are skipped or refused, and bad input is an error naming the file and key."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robopolicy.cli import main
from robopolicy.data.convert import convert
from robopolicy.data.formats.base import DatasetInfo, Episode
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from tests.data.lerobot_fixtures import SourceEpisode
from tests.data.test_lerobot import file_hashes, lerobot, read_all

# ---------------------------------------------------------------------- safety


def test_source_is_never_modified(
    v30: tuple[Path, list[SourceEpisode]], v21: tuple[Path, list[SourceEpisode]], tmp_path: Path
) -> None:
    for root, _ in (v30, v21):
        before = file_hashes(root)
        convert(root, tmp_path / f"{root.name}.zarr", quiet=True)
        convert(root, tmp_path / f"{root.name}_lr", to="lerobot", quiet=True)
        assert file_hashes(root) == before


def test_write_needs_fps(tmp_path: Path) -> None:
    episode = Episode({"state": np.zeros((4, 2), np.float32)})
    with pytest.raises(DataError, match="--fps"):
        lerobot().write(tmp_path / "a", DatasetInfo(fps=None, n_episodes=1), iter([episode]))


# ---------------------------------------------------------------------- missing videos


def test_missing_video_is_skipped_with_a_warning(
    v30: tuple[Path, list[SourceEpisode]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ds"
    shutil.copytree(v30[0], root)
    missing = root / "videos/observation.images.wrist/chunk-000/file-001.mp4"
    missing.unlink()
    with caplog.at_level(logging.WARNING):
        _, episodes = read_all(root)
    assert "videos/observation.images.wrist/chunk-000/file-001.mp4" in caplog.text
    for got in episodes:
        assert "image.wrist" not in got.frames and "image.front" in got.frames
    assert main(["data", "convert", str(root), str(tmp_path / "out.zarr")]) == 0
    assert "image.wrist" not in EpisodeStore.open(tmp_path / "out.zarr").keys


def test_missing_video_fails_under_require_video(
    v21: tuple[Path, list[SourceEpisode]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ds"
    shutil.copytree(v21[0], root)
    (root / "videos/chunk-000/observation.images.front/episode_000001.mp4").unlink()
    with pytest.raises(DataError, match=r"episode_000001\.mp4"):
        convert(root, tmp_path / "out.zarr", require_video=True)
    code = main(["data", "convert", str(root), str(tmp_path / "out.zarr"), "--require-video"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and "missing video files" in err and "episode_000001.mp4" in err
    assert not (tmp_path / "out.zarr").exists()


# ---------------------------------------------------------------------- bad input


def _rewrite_parquet(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _shorter_state(table: pa.Table) -> pa.Table:
    values = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))[:, :6]
    return _set_column(
        table,
        "observation.state",
        pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 6),
    )


def _longer_episode(table: pa.Table) -> pa.Table:
    return _set_column(
        table, "length", pa.array([n + (i == 1) for i, n in enumerate(table["length"].to_pylist())])
    )


DATA0, DATA1 = "data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
BAD_V30 = {
    "truncated data file": (lambda r: _truncate(r / DATA1), "file-001.parquet", None),
    "info without fps": (
        lambda r: _edit_json(r / "meta/info.json", lambda d: d.pop("fps")),
        "info.json",
        "fps",
    ),
    "info not json": (
        lambda r: (r / "meta/info.json").write_text('{"codebase_version": '),
        "info.json",
        None,
    ),
    "missing column": (
        lambda r: _rewrite_parquet(r / DATA1, lambda t: t.drop_columns("action")),
        "file-001.parquet",
        "action",
    ),
    "list of wrong length": (
        lambda r: _rewrite_parquet(r / DATA0, _shorter_state),
        "file-000.parquet",
        "observation.state",
    ),
    "length vs offsets": (
        lambda r: _rewrite_parquet(r / EPISODES, _longer_episode),
        "meta/episodes/chunk-000/file-000.parquet",
        "length",
    ),
    "episodes column missing": (
        lambda r: _rewrite_parquet(r / EPISODES, lambda t: t.drop_columns("data/file_index")),
        "meta/episodes/chunk-000/file-000.parquet",
        "data/file_index",
    ),
    "episode count": (
        lambda r: _edit_json(r / "meta/info.json", lambda d: d.update(total_episodes=5)),
        "info.json",
        "total_episodes",
    ),
    "no tasks file": (lambda r: (r / "meta/tasks.parquet").unlink(), "tasks.parquet", None),
    "bad extras": (
        lambda r: (r / "meta/robopolicy.json").write_text('{"shapes": {"state": "7"}}'),
        "robopolicy.json",
        "shapes",
    ),
}


@pytest.mark.parametrize("case", list(BAD_V30))
def test_bad_v30_input_names_file_and_key(
    case: str, v30: tuple[Path, list[SourceEpisode]], tmp_path: Path
) -> None:
    damage, filename, key = BAD_V30[case]
    root = tmp_path / "ds"
    shutil.copytree(v30[0], root)
    damage(root)
    with pytest.raises(DataError) as caught:
        convert(root, tmp_path / "out", to="lerobot", quiet=True)
    message = str(caught.value)
    assert filename in message
    if key is not None:
        assert f"[{key}]" in message
    assert not (tmp_path / "out").exists()


def _rows_disagree(root: Path) -> None:
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["length"] += 3
    lines[1] = json.dumps(row)
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")


BAD_V21 = {
    "bad json line": (
        lambda r: (r / "meta/episodes.jsonl").write_text(
            (r / "meta/episodes.jsonl").read_text().replace("\n", "\n{oops\n", 1)
        ),
        "episodes.jsonl",
        "line 2",
    ),
    "rows vs length": (_rows_disagree, "episode_000001.parquet", "length"),
    "missing data file": (
        lambda r: (r / "data/chunk-000/episode_000002.parquet").unlink(),
        "episode_000002.parquet",
        None,
    ),
}


@pytest.mark.parametrize("case", list(BAD_V21))
def test_bad_v21_input_names_file_and_key(
    case: str,
    v21: tuple[Path, list[SourceEpisode]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage, filename, key = BAD_V21[case]
    root = tmp_path / "ds"
    shutil.copytree(v21[0], root)
    damage(root)
    assert main(["data", "convert", str(root), str(tmp_path / "out.zarr")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert filename in line
    if key is not None:
        assert f"[{key}]" in line
