"""Hostile episode stores and destinations (issue 18): every crafted store is refused with one
``error:`` line naming the file and field, before any chunk is decoded, and nothing is written.

Each case damages a small store made by :class:`EpisodeStore` and runs ``data info`` and
``data convert`` on it through :func:`tests.data.hostile.refused`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numcodecs
import numpy as np
import pytest

from robopolicy.cli import main
from robopolicy.data.store import ArraySpec, EpisodeStore
from robopolicy.errors import DataError
from tests.data.hostile import edit_json, refused

LENGTHS = (5, 7)


def make_store(path: Path) -> Path:
    """Two episodes; ``reward`` and ``task_index`` are all zeros (chunks zarr would skip)."""
    store = EpisodeStore.create(path, fps=10)
    rng = np.random.default_rng(0)
    for n in LENGTHS:
        frames = {
            "action": rng.normal(size=(n, 2)).astype(np.float32),
            "state": rng.normal(size=(n, 3)).astype(np.float32),
            "reward": np.zeros(n, np.float32),
            "image.front": rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8),
        }
        store.append_episode(frames, episode_meta={"task_index": 0})
    return path


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A directory holding the store ``src.zarr`` and a neighbouring file."""
    make_store(tmp_path / "src.zarr")
    (tmp_path / "notes.txt").write_text("a file beside the source")
    return tmp_path


def zarray(array: str) -> Callable[[Path, Callable[[dict], object]], None]:
    return lambda root, change: edit_json(root / array / ".zarray", change)


def set_field(array: str, **fields: object) -> Callable[[Path], None]:
    return lambda root: zarray(array)(root, lambda d: d.update(fields))


def forge_blosc_size(root: Path) -> None:
    chunk = root / "data/action/0.0"
    data = bytearray(chunk.read_bytes())
    data[4:8] = (2**31 - 1).to_bytes(4, "little")  # "decodes to 2 GiB"
    chunk.write_bytes(bytes(data))


def zstd_without_size(root: Path) -> None:
    set_field("data/action", compressor={"id": "zstd", "level": 1})(root)
    # frame header with no content size (descriptor 0: no single segment, no size field)
    (root / "data/action/0.0").write_bytes(b"\x28\xb5\x2f\xfd\x00\x50" + bytes(32))


def declare_lengths(ends: list[int], **shapes: list[int]) -> Callable[[Path], None]:
    """Episode ends ``ends`` (raw chunk of meta/episode_ends) and data arrays long enough."""

    def damage(root: Path) -> None:
        (root / "meta/episode_ends/0").write_bytes(
            np.array(ends + [0] * (1024 - len(ends)), "<i8").tobytes()
        )
        zarray("meta/episode_ends")(root, lambda d: d.update(shape=[len(ends)]))
        for key in ("action", "state", "reward", "image.front"):
            zarray(f"data/{key}")(
                root,
                lambda d, key=key: d.update(shape=shapes.get(key, [ends[-1], *d["shape"][1:]])),
            )

    return damage


def flip_last_byte(root: Path) -> None:
    chunk = root / "data/state/0.0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))


BAD_STORES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "missing data chunk": (
        lambda r: (r / "data/action/0.0").unlink(),
        ("data/action/0.0", "[data/action]", "missing chunk"),
    ),
    "missing chunk of zeros": (
        lambda r: (r / "data/reward/0").unlink(),
        ("data/reward/0", "[data/reward]", "missing chunk"),
    ),
    "missing per-episode chunk": (
        lambda r: (r / "meta/task_index/0").unlink(),
        ("meta/task_index/0", "[meta/task_index]"),
    ),
    "missing episode ends chunk": (
        lambda r: (r / "meta/episode_ends/0").unlink(),
        ("meta/episode_ends/0", "[meta/episode_ends]"),
    ),
    "pickle filter": (
        set_field("data/state", filters=[{"id": "pickle", "protocol": 5}]),
        ("data/state/.zarray", "[filters]", "'pickle'"),
    ),
    "unknown codec": (
        set_field("data/state", compressor={"id": "no-such-codec"}),
        ("data/state/.zarray", "[compressor]", "'no-such-codec'"),
    ),
    "unchecked compressor": (
        set_field("data/state", compressor={"id": "zlib", "level": 1}),
        ("data/state/.zarray", "[compressor]", "'zlib'"),
    ),
    "object dtype": (set_field("data/state", dtype="|O"), ("data/state/.zarray", "[dtype]")),
    "malformed shape": (set_field("data/state", shape="12"), ("data/state/.zarray", "[shape]")),
    "negative chunk": (set_field("data/state", chunks=[-1, 3]), ("data/state/.zarray", "[chunks]")),
    "chunk of 30 GB": (
        set_field("data/image.front", chunks=[1, 100_000, 100_000, 3]),
        ("data/image.front/.zarray", "[chunks]", "decoded bytes in one chunk"),
    ),
    "forged blosc header (2 GiB)": (
        forge_blosc_size,
        ("data/action/0.0", "[data/action]", "declares 2,147,483,647 decoded bytes"),
    ),
    "zstd frame without size": (
        zstd_without_size,
        ("data/action/0.0", "[data/action]", "does not declare its decoded size"),
    ),
    "episode of 10^12 frames": (
        declare_lengths([10**12]),
        ("src.zarr", "[data]", "frames in one episode", "ROBOPOLICY_MAX_EPISODE_FRAMES"),
    ),
    "episode of 50 GB": (
        declare_lengths([1000], **{"image.front": [1000, 4096, 4096, 3]}),
        ("src.zarr", "[data]", "bytes in one episode", "ROBOPOLICY_MAX_EPISODE_BYTES"),
    ),
    "overlapping episodes": (
        declare_lengths([7, 5]),
        ("[meta/episode_ends]", "positive and increasing"),
    ),
    "bit-flipped chunk": (flip_last_byte, ("src.zarr", "[data/state]", "unreadable")),
}


@pytest.mark.parametrize("case", list(BAD_STORES))
def test_hostile_store_is_refused_naming_file_and_field(
    case: str, box: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, names = BAD_STORES[case]
    src = box / "src.zarr"
    damage(src)
    refused(["data", "info", str(src)], box, capsys, names=names)
    for to in ("zarr", "lerobot"):
        refused(
            ["data", "convert", str(src), str(box / "out"), "--to", to], box, capsys, names=names
        )


def test_pickle_codec_never_runs_even_where_numcodecs_would_unpickle(
    box: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk that runs code when unpickled, under a ``pickle`` compressor, with numcodecs'
    own guard off (as in numcodecs < 0.15.2): refused from the metadata, nothing runs."""
    marker = box / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    src = box / "src.zarr"
    set_field("data/action", compressor={"id": "pickle", "protocol": 5})(src)
    (src / "data/action/0.0").write_bytes(pickle.dumps(Payload()))
    monkeypatch.setattr(numcodecs.pickles, "ALLOW_UNSAFE_PICKLE_DECODE", True, raising=False)
    names = ("data/action/.zarray", "[compressor]", "'pickle'")
    refused(["data", "info", str(src)], box, capsys, names=names)
    with pytest.raises(DataError, match="not one robopolicy decodes"):
        EpisodeStore.open(src, mode="a")
    assert not marker.exists()


def test_every_chunk_is_written_even_all_zeros(tmp_path: Path) -> None:
    """zarr-python 3 skips chunks equal to the fill value unless told not to; a skipped chunk
    and a deleted one would look the same, so the store writes every one."""
    src = make_store(tmp_path / "s.zarr")
    assert (src / "data/reward/0").is_file() and (src / "meta/task_index/0").is_file()
    store = EpisodeStore.open(src, mode="a")
    store.append_episode(
        {k: np.zeros((3, *v.shape[1:]), v.dtype) for k, v in store.episode(0).items()},
        episode_meta={"task_index": 0},
    )
    assert all((src / "data" / key / "0.0").exists() for key in ("action", "state"))
    assert EpisodeStore.open(src).episode(2)["action"].tolist() == [[0.0, 0.0]] * 3


def test_allowlisted_codecs_read_back_and_others_are_not_written(tmp_path: Path) -> None:
    """blosc (ours, diffusion_policy's), zstd (zarr-python 3's default) and raw chunks, each
    with or without the CRC32 filter, pass the header checks; zlib is refused on write too."""
    episode = {"action": np.arange(12, dtype=np.float32).reshape(6, 2)}
    codecs = {"blosc": numcodecs.Blosc("lz4", 5), "zstd": numcodecs.Zstd(level=1), "raw": None}
    for name, compressor in codecs.items():
        for filters in ((), (numcodecs.CRC32(),)):
            path = tmp_path / f"{name}{len(filters)}.zarr"
            spec = ArraySpec(np.float32, (2,), 4, compressor, filters)
            EpisodeStore.create(path, fps=10).append_episode(episode, specs={"action": spec})
            got = EpisodeStore.open(path).episode(0)["action"]
            np.testing.assert_array_equal(got, episode["action"])
    spec = ArraySpec(np.float32, (2,), 4, numcodecs.Zlib(1))
    with pytest.raises(DataError, match=r"\[action.compressor\].*'zlib'"):
        EpisodeStore.create(tmp_path / "z.zarr", fps=10).append_episode(
            episode, specs={"action": spec}
        )


def test_version_1_stores_read_absent_chunks_as_zeros_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_store(tmp_path / "s.zarr")
    edit_json(src / ".zattrs", lambda d: d.update(robopolicy_store_version=1))
    (src / "data/reward/0").unlink()  # as a version-1 writer left an all-zero chunk out
    with pytest.raises(DataError, match=r"missing chunk.*ROBOPOLICY_LEGACY_ZERO_CHUNKS=1"):
        EpisodeStore.open(src)
    monkeypatch.setenv("ROBOPOLICY_LEGACY_ZERO_CHUNKS", "1")
    assert EpisodeStore.open(src).episode(1)["reward"].tolist() == [0.0] * LENGTHS[1]


def test_read_limits_are_configurable(box: Path, capsys, monkeypatch) -> None:
    src = box / "src.zarr"
    monkeypatch.setenv("ROBOPOLICY_MAX_EPISODE_FRAMES", "6")
    names = ("src.zarr", "declares 7 frames in one episode, over the limit of 6")
    refused(["data", "info", str(src)], box, capsys, names=names)
    monkeypatch.setenv("ROBOPOLICY_MAX_EPISODE_FRAMES", "lots")
    refused(["data", "info", str(src)], box, capsys, names=("ROBOPOLICY_MAX_EPISODE_FRAMES",))
    monkeypatch.delenv("ROBOPOLICY_MAX_EPISODE_FRAMES")
    assert main(["data", "info", str(src)]) == 0


# ---------------------------------------------------------------------- destinations


def test_destination_holding_the_source_is_refused(
    box: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data convert SRC PARENT_OF_SRC --overwrite`` once removed the source and its
    neighbours; a link to the parent, the source itself or a path inside it fare the same."""
    src = box / "src.zarr"
    (box / "link").symlink_to(box, target_is_directory=True)
    names = ("must be outside the source", "src.zarr")
    for dst in (box, box / "link", src, src / "inner"):
        argv = ["data", "convert", str(src), str(dst), "--overwrite"]
        refused(argv, box, capsys, names=names)


def test_overwrite_replaces_only_a_dataset(box: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = box / "home"
    (home / "documents").mkdir(parents=True)
    (home / "documents" / "thesis.tex").write_text("years of work")
    argv = ["data", "convert", str(box / "src.zarr"), str(home), "--overwrite"]
    refused(argv, box, capsys, names=("home", "is not a dataset"))
    dst = box / "out.zarr"
    assert main(["data", "convert", str(box / "src.zarr"), str(dst)]) == 0
    assert main(["data", "convert", str(box / "src.zarr"), str(dst), "--overwrite"]) == 0
