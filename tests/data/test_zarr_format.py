"""diffusion_policy replay buffers and native stores through ``data info`` and ``convert``."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import zarr

from robopolicy.cli import main
from robopolicy.data.convert import convert
from robopolicy.data.info import dataset_info
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from tests.data.test_store import make_episode

PUSHT_KEYS = ("action", "img", "keypoint", "n_contacts", "state")


def tree_hash(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def small_store(tmp_path):
    store = EpisodeStore.create(tmp_path / "src.zarr", fps=10, attrs={"robot_type": "arm6"})
    store.set_feature("state", names=[f"j{i}" for i in range(7)], units="rad")
    for i, length in enumerate((6, 9)):
        store.append_episode(make_episode(length, i), episode_meta={"task_index": i})
    store.set_attrs(tasks=["push", "pick"])
    return store


@pytest.mark.slow
def test_pusht_info_and_bit_identical_import(pusht_zarr, tmp_path, capsys):
    assert main(["data", "info", str(pusht_zarr), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 206
    assert info["frames"] == 25650
    assert info["keys"]["img"]["shape"] == [96, 96, 3]
    assert info["keys"]["state"]["dtype"] == "float32"
    assert len(info["keys"]["action"]["mean"]) == 2

    before = tree_hash(pusht_zarr)
    dst = tmp_path / "pusht.zarr"
    assert main(["data", "convert", str(pusht_zarr), str(dst), "--fps", "10"]) == 0
    assert tree_hash(pusht_zarr) == before, "the source was modified"
    src_group = zarr.open_group(pusht_zarr, mode="r")
    store = EpisodeStore.open(dst)
    assert store.fps == 10.0
    np.testing.assert_array_equal(store.episode_ends, src_group["meta/episode_ends"][:])
    for key in PUSHT_KEYS:
        src, got = src_group["data"][key], store.array(key)
        assert got.shape == src.shape and got.dtype == src.dtype, key
        for start in range(0, src.shape[0], 161 * 20):
            a, b = src[start : start + 161 * 20], got[start : start + 161 * 20]
            assert a.tobytes() == b.tobytes(), f"{key} differs in frames from {start}"


def test_info_reports_counts_shapes_and_statistics(small_store):
    info = dataset_info(small_store.path, quiet=True)
    assert (info["format"], info["episodes"], info["frames"], info["fps"]) == ("zarr", 2, 15, 10.0)
    state = np.concatenate([make_episode(6, 0)["state"], make_episode(9, 1)["state"]])
    entry = info["keys"]["state"]
    assert entry["shape"] == [7] and entry["dtype"] == "float32"
    np.testing.assert_allclose(entry["min"], state.min(0), rtol=1e-6)
    np.testing.assert_allclose(entry["max"], state.max(0), rtol=1e-6)
    np.testing.assert_allclose(entry["mean"], state.mean(0, dtype=np.float64), atol=1e-6)
    np.testing.assert_allclose(entry["std"], state.std(0, dtype=np.float64), atol=1e-6)
    assert entry["names"] == [f"j{i}" for i in range(7)] and entry["units"] == "rad"
    assert info["keys"]["image.front"]["shape"] == [16, 24, 3]


def test_native_copy_keeps_everything(small_store, tmp_path):
    report = convert(small_store.path, tmp_path / "copy.zarr", quiet=True)
    assert (report.written, report.dropped) == (2, [])
    copy = EpisodeStore.open(tmp_path / "copy.zarr")
    for i in range(2):
        for key, value in small_store.episode(i).items():
            np.testing.assert_array_equal(copy.episode(i)[key], value)
    assert copy.attrs["tasks"] == ["push", "pick"]
    assert copy.attrs["robot_type"] == "arm6"
    assert copy.attrs["features"]["state"]["units"] == "rad"
    assert copy.episode_meta("task_index").tolist() == [0, 1]
    assert copy.spec("image.front") == small_store.spec("image.front")


def test_convert_refuses_bad_destinations_and_fps(small_store, tmp_path, capsys):
    assert main(["data", "convert", str(small_store.path), str(small_store.path / "inner")]) == 2
    assert "outside the source" in capsys.readouterr().err
    code = main(["data", "convert", str(small_store.path), str(tmp_path / "x"), "--fps", "30"])
    assert code == 2
    assert "contradicts the recorded fps 10.0" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("keep me")
    assert main(["data", "convert", str(small_store.path), str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "file").read_text() == "keep me"


def test_unknown_or_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "junk.bin").write_bytes(b"\x00garbage")
    assert main(["data", "info", str(tmp_path / "junk.bin")]) == 2
    err = capsys.readouterr().err
    assert "not a dataset in any known format" in err and "Traceback" not in err


def test_drop_bad_episodes_reports_and_keeps_the_rest(small_store, tmp_path, capsys):
    bad = zarr.open_array(small_store.path / "data" / "state", mode="r+")
    row = bad[7]
    row[3] = np.nan
    bad[7] = row  # frame 1 of episode 1
    before = tree_hash(small_store.path)
    dst = tmp_path / "dst.zarr"
    assert main(["data", "convert", str(small_store.path), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "episode 1" in err and "[state]" in err and "non-finite" in err
    assert (
        main(
            [
                "data",
                "convert",
                str(small_store.path),
                str(dst),
                "--overwrite",
                "--drop-bad-episodes",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["episodes_written"] == 1
    assert report["episodes_dropped"][0]["episode"] == 1
    assert "non-finite" in report["episodes_dropped"][0]["reason"]
    assert EpisodeStore.open(dst).n_episodes == 1
    assert tree_hash(small_store.path) == before


def test_truncated_store_is_a_data_error(small_store):
    (small_store.path / "meta" / "episode_ends" / "0").write_bytes(b"\x01")
    with pytest.raises(DataError, match="episode_ends"):
        EpisodeStore.open(small_store.path)
