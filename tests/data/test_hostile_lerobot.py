"""Hostile LeRobot and robomimic datasets (issue 18): traversal names and templates, absolute
paths, image and video bombs, overlapping and absurd spans. Each is refused by ``data info``
and ``data convert`` with one ``error:`` line naming the file and field, and nothing is
written anywhere (:func:`tests.data.hostile.refused`): no file outside the destination, no
partial destination, the source untouched.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.data.hostile import edit_json, refused
from tests.data.lerobot_fixtures import SourceEpisode, build_v30, make_episodes

INFO, EPISODES = "meta/info.json", "meta/episodes/chunk-000/file-000.parquet"
DATA0 = "data/chunk-000/file-000.parquet"
FRONT = "observation.images.front"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v3.0 dataset whose cameras are PNG image columns (no video to encode)."""
    root = tmp_path_factory.mktemp("images") / "ds"
    build_v30(root, make_episodes((4, 3)), data_files=((0, 1),), image_dtype="image")
    return root


def copy_into(box: Path, source: Path) -> Path:
    root = box / "ds"
    shutil.copytree(source, root)
    return root


def rewrite_parquet(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def set_column(name: str, change: Callable[[list], None]) -> Callable[[pa.Table], pa.Table]:
    def apply(table: pa.Table) -> pa.Table:
        values = table[name].to_pylist()
        change(values)
        array = pa.array(values, table.schema.field(name).type)
        return table.set_column(table.column_names.index(name), name, array)

    return apply


def rename_feature(root: Path, old: str, new: str) -> None:
    """``old`` becomes ``new`` in info.json and in every data file."""
    edit_json(
        root / INFO,
        lambda d: d.update(features={new if k == old else k: v for k, v in d["features"].items()}),
    )
    for path in sorted((root / "data").rglob("*.parquet")):
        rewrite_parquet(
            path, lambda t: t.rename_columns([new if c == old else c for c in t.column_names])
        )


def info_field(**fields: object) -> Callable[[Path], None]:
    return lambda root: edit_json(root / INFO, lambda d: d.update(fields))


def plant(root: Path) -> Path:
    """Copies of the data files outside the dataset, where a template might point."""
    planted = root.parent / "planted"
    planted.mkdir()
    for path in (root / "data/chunk-000").iterdir():
        shutil.copy(path, planted / path.name)
    return planted


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 60-byte PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def image_row(item: dict) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        (root.parent / "secret.png").write_bytes(png(64, 48))
        rewrite_parquet(root / DATA0, set_column(FRONT, lambda rows: rows.__setitem__(0, item)))

    return damage


def episodes_row(row: int, **values: int) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        for name, value in values.items():
            rewrite_parquet(
                root / EPISODES, set_column(name, lambda v, n=value: v.__setitem__(row, n))
            )

    return damage


V30_CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "video feature named ../": (
        lambda r: rename_feature(r, FRONT, "observation.images.../../../escaped"),
        ("info.json", "[features.observation.images.../../../escaped]"),
    ),
    "data_path to planted files": (
        lambda r: (plant(r), info_field(data_path="../planted/file-{file_index:03d}.parquet")(r)),
        ("info.json", "[data_path]", "leads outside"),
    ),
    "absolute data_path": (
        lambda r: info_field(data_path=f"{plant(r)}/file-{{file_index:03d}}.parquet")(r),
        ("info.json", "[data_path]", "leads outside"),
    ),
    "video_path outside": (
        info_field(video_path="videos/../../{video_key}/file-{file_index:03d}.mp4"),
        ("info.json", "[video_path]", "leads outside"),
    ),
    "template attribute access": (
        info_field(data_path="data/{chunk_index.__class__}/f.parquet"),
        ("info.json", "[data_path]", "bad path template"),
    ),
    "template unclosed": (
        info_field(data_path="data/{chunk_index"),
        ("info.json", "[data_path]", "bad path template"),
    ),
    "template positional field": (
        info_field(data_path="data/{}.parquet"),
        ("info.json", "[data_path]", "bad path template"),
    ),
    "template huge width": (
        info_field(data_path="data/{chunk_index:999999999}.parquet"),
        ("info.json", "[data_path]", "bad path template"),
    ),
    "300-character file name": (
        info_field(data_path="data/chunk-{chunk_index:03d}/" + "f" * 300 + "{file_index}.parquet"),
        ("info.json", "[data_path]", "too long"),
    ),
    "overlapping spans": (
        episodes_row(1, dataset_from_index=10, dataset_to_index=41),
        ("file-000.parquet row 1", "[dataset_from_index]", "overlap episode 0"),
    ),
    "span of 10^12 frames": (
        episodes_row(2, length=10**12, dataset_to_index=55 + 10**12),
        ("file-000.parquet row 2", "[length]", "ROBOPOLICY_MAX_EPISODE_FRAMES"),
    ),
    "negative span start": (
        episodes_row(0, dataset_from_index=-5, dataset_to_index=19),
        ("file-000.parquet", "[length]", "dataset_from_index -5"),
    ),
    "video larger than declared": (
        lambda r: edit_json(r / INFO, lambda d: d["features"][FRONT].update(shape=[8, 8, 3])),
        ("observation.images.front/chunk-000/file-000.mp4", "larger than the 192 values"),
    ),
    "numeric feature named ..": (
        lambda r: rename_feature(r, "next.reward", ".."),
        ("file-000.parquet", "[..]", "cannot be a file name"),
    ),
}
IMAGE_CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "image path outside the dataset": (
        image_row({"bytes": None, "path": "../secret.png"}),
        ("file-000.parquet", f"[{FRONT} row 0]", "leads outside"),
    ),
    "absolute image path": (
        lambda r: image_row({"bytes": None, "path": str(r.parent / "secret.png")})(r),
        ("file-000.parquet", f"[{FRONT} row 0]", "leads outside"),
    ),
    "PNG decompression bomb": (
        image_row({"bytes": png_bomb(), "path": None}),
        ("file-000.parquet", f"[{FRONT}]", "row 0: undecodable image", "decompression bomb"),
    ),
    "image larger than declared": (
        image_row({"bytes": png(2000, 2000), "path": None}),
        ("file-000.parquet", f"[{FRONT}]", "2000x2000 image is larger"),
    ),
}


@pytest.mark.parametrize("case", list(V30_CASES) + list(IMAGE_CASES))
def test_hostile_lerobot_dataset_is_refused_naming_file_and_field(
    case: str,
    v30: tuple[Path, list[SourceEpisode]],
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage, names = V30_CASES.get(case) or IMAGE_CASES[case]
    root = copy_into(tmp_path, v30[0] if case in V30_CASES else images)
    damage(root)
    if case != "numeric feature named ..":  # a column named ".." is harmless until it is a path
        refused(["data", "info", str(root)], tmp_path, capsys, names=names)
    for to in ("zarr", "lerobot")[: 1 if case == "numeric feature named .." else 2]:
        argv = ["data", "convert", str(root), str(tmp_path / "out"), "--to", to]
        refused(argv, tmp_path, capsys, names=names)


def test_camera_named_with_dot_dot_writes_no_video_outside_the_destination(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe's attack: an image feature whose name holds ``../`` reads fine (it is a parquet
    column), but exporting it to LeRobot made it a video path, and the mp4 landed outside the
    destination. Now the camera's name is refused as a file name, naming the key."""
    root = copy_into(tmp_path, images)
    rename_feature(root, FRONT, "observation.images.x/../../../escaped")
    names = ("file-000.parquet episode 0", "[image.x/../../../escaped]", "cannot be a file name")
    for to in ("lerobot", "zarr"):
        refused(
            ["data", "convert", str(root), str(tmp_path / "out"), "--to", to],
            tmp_path,
            capsys,
            names=names,
        )
    assert not list(tmp_path.rglob("*.mp4"))


def test_robomimic_demo_declaring_billions_of_steps_is_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10 KB HDF5 file whose ``actions`` declares 2e9 steps (56 GB once read)."""
    path = tmp_path / "bomb.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        demo = data.create_group("demo_0")
        demo.create_dataset(
            "actions", shape=(2_000_000_000, 7), dtype="f4", chunks=(4096, 7), compression="gzip"
        )
    assert path.stat().st_size < 100_000
    names = ("bomb.hdf5", "[data/demo_0]", "2,000,000,000 frames in one episode")
    refused(["data", "info", str(path)], tmp_path, capsys, names=names)
    refused(
        ["data", "convert", str(path), str(tmp_path / "out"), "--fps", "20"],
        tmp_path,
        capsys,
        names=names,
    )


def test_v21_span_of_absurd_length_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], v21: tuple[Path, list[SourceEpisode]]
) -> None:
    root = copy_into(tmp_path, v21[0])
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["length"] = 10**12
    lines[1] = json.dumps(row)
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    names = ("episodes.jsonl line 2", "[length]", "frames in one episode")
    refused(["data", "info", str(root)], tmp_path, capsys, names=names)


def test_video_feature_names_and_hf_cache_links_still_read(
    v30: tuple[Path, list[SourceEpisode]], tmp_path: Path
) -> None:
    """The check is on the text of a path: a dataset whose files are links to blobs elsewhere
    (as in the Hugging Face cache) reads as before."""
    from robopolicy.data.info import dataset_info

    blobs, root = tmp_path / "blobs", tmp_path / "snapshot"
    for path in sorted(p for p in v30[0].rglob("*") if p.is_file()):
        blob = blobs / f"{len(list(blobs.glob('*'))) if blobs.exists() else 0}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, blob)
        link = root / path.relative_to(v30[0])
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    info = dataset_info(root, quiet=True)
    assert info["episodes"] == 3 and "image.front" in info["keys"]
    assert np.asarray(info["keys"]["state"]["mean"]).shape == (7,)
