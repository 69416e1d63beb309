"""robomimic HDF5 import: a faithful robosuite Lift-style file, converted and checked key by key."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from robopolicy.cli import main
from robopolicy.data.convert import convert
from robopolicy.data.formats.base import detect_format
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError

# demo numbers out of lexical order: robomimic sorts by the integer after "demo_"
DEMOS = {0: 12, 1: 9, 2: 15, 10: 7}
LOW_DIM = {
    "object": 10,
    "robot0_eef_pos": 3,
    "robot0_eef_quat": 4,
    "robot0_gripper_qpos": 2,
    "robot0_joint_pos": 7,
}
CAMERAS = ("agentview", "robot0_eye_in_hand")
ENV_ARGS = {
    "env_name": "Lift",
    "env_version": "1.4.1",
    "type": 1,
    "env_kwargs": {
        "has_renderer": False,
        "has_offscreen_renderer": True,
        "ignore_done": True,
        "use_object_obs": True,
        "use_camera_obs": True,
        "control_freq": 20,
        "controller_configs": {"type": "OSC_POSE", "input_max": 1, "input_min": -1, "kp": 150},
        "robots": ["Panda"],
        "camera_depths": False,
        "camera_heights": 84,
        "camera_widths": 84,
        "reward_shaping": False,
        "camera_names": list(CAMERAS),
    },
}
MASKS = {"train": ["demo_0", "demo_2", "demo_10"], "valid": ["demo_1"], "20_percent": ["demo_2"]}


def write_robomimic(path: Path, seed: int = 0) -> Path:
    """A small robomimic image dataset laid out as dataset_states_to_obs.py writes it."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for n, length in DEMOS.items():
            demo = data.create_group(f"demo_{n}")
            demo.attrs["num_samples"] = length
            demo.attrs["model_file"] = "<mujoco model='base'><worldbody/></mujoco>"
            demo.create_dataset("actions", data=rng.uniform(-1, 1, (length, 7)))
            demo.create_dataset("states", data=rng.normal(size=(length, 32)))
            rewards = np.zeros(length)
            rewards[-1] = 1.0
            demo.create_dataset("rewards", data=rewards)
            demo.create_dataset("dones", data=(np.arange(length) == length - 1).astype(np.int64))
            for group in ("obs", "next_obs"):
                for key, dim in LOW_DIM.items():
                    demo.create_dataset(f"{group}/{key}", data=rng.normal(size=(length, dim)))
                for cam in CAMERAS:
                    image = rng.integers(0, 256, (length, 84, 84, 3), dtype=np.uint8)
                    demo.create_dataset(f"{group}/{cam}_image", data=image, compression="gzip")
        data.attrs["total"] = sum(DEMOS.values())
        data.attrs["env_args"] = json.dumps(ENV_ARGS, indent=4)
        for name, demos in MASKS.items():
            f[f"mask/{name}"] = np.array(demos, dtype="S")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    return write_robomimic(tmp_path / "lift_image.hdf5")


def test_convert_imports_every_array_and_attribute(src: Path, tmp_path: Path) -> None:
    before = sha256(src)
    assert detect_format(src).name == "robomimic"
    report = convert(src, tmp_path / "out.zarr", quiet=True)
    assert (report.source_format, report.written, report.dropped) == ("robomimic", 4, [])
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.fps == 20.0
    assert store.attrs["env_args"] == ENV_ARGS
    order = sorted(DEMOS)
    assert store.attrs["filter_keys"] == {
        name: sorted(int(d[5:]) for d in demos) for name, demos in MASKS.items()
    }
    expected_keys = {"action", "reward", "done", "sim_state", *LOW_DIM}
    expected_keys |= {f"image.{cam}" for cam in CAMERAS}
    assert set(store.keys) == expected_keys
    np.testing.assert_array_equal(store.episode_meta("demo_index"), order)
    with h5py.File(src, "r") as f:
        for index, n in enumerate(order):
            demo = f[f"data/demo_{n}"]
            episode = store.episode(index)
            pairs = {"action": "actions", "reward": "rewards", "done": "dones"}
            pairs |= {"sim_state": "states", **{k: f"obs/{k}" for k in LOW_DIM}}
            pairs |= {f"image.{cam}": f"obs/{cam}_image" for cam in CAMERAS}
            for native, source in pairs.items():
                expected = demo[source][()]
                assert episode[native].dtype == expected.dtype, native
                np.testing.assert_array_equal(episode[native], expected, err_msg=native)
    assert sha256(src) == before


def test_cli_convert_and_info(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = sha256(src)
    assert main(["data", "convert", str(src), str(tmp_path / "cli.zarr")]) == 0
    assert EpisodeStore.open(tmp_path / "cli.zarr").n_episodes == 4
    capsys.readouterr()
    assert main(["data", "info", str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["episodes"], info["frames"]) == ("robomimic", 4, 43)
    assert info["fps"] == 20.0
    assert info["keys"]["image.agentview"]["shape"] == [84, 84, 3]
    assert info["keys"]["action"]["shape"] == [7]
    assert not any(key.startswith("next_obs") for key in info["keys"])
    assert sha256(src) == before


def _corrupt_chunk(path: Path) -> None:
    with h5py.File(path, "r") as f:
        chunk = f["data/demo_1/obs/agentview_image"].id.get_chunk_info(0)
    with path.open("r+b") as raw:
        raw.seek(chunk.byte_offset)
        raw.write(b"\x00garbage\xff" * 8)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit(change):  # type: ignore[no-untyped-def]
    def apply(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            change(f)

    return apply


def _replace(key: str, value: np.ndarray):  # type: ignore[no-untyped-def]
    def change(f: h5py.File) -> None:
        del f[key]
        f[key] = value

    return _edit(change)


def _set_nan(f: h5py.File) -> None:
    f["data/demo_2/obs/robot0_eef_pos"][5, 1] = np.nan


BAD_INPUTS = {
    "truncated": (_truncate, None, "truncated or corrupt"),
    "corrupt-chunk": (_corrupt_chunk, "data/demo_1/obs/agentview_image", "unreadable"),
    "missing-actions": (
        _edit(lambda f: f.__delitem__("data/demo_1/actions")),
        "data/demo_1/actions",
        "missing",
    ),
    "unequal-length": (
        _replace("data/demo_2/obs/robot0_eef_pos", np.zeros((14, 3))),
        "data/demo_2/obs/robot0_eef_pos",
        "14 steps",
    ),
    "non-numeric": (
        _replace("data/demo_10/obs/object", np.array([b"x"] * 7, dtype="S8")),
        "data/demo_10/obs/object",
        "not numeric",
    ),
    "missing-env-args": (
        _edit(lambda f: f["data"].attrs.__delitem__("env_args")),
        "data",
        "env_args",
    ),
    "nan": (_edit(_set_nan), "data/demo_2/obs/robot0_eef_pos", "NaN"),
    "bad-mask": (_replace("mask/valid", np.array([b"demo_7"])), "mask/valid", "demo_7"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_and_key(
    case: str, src: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    damage, key, words = BAD_INPUTS[case]
    damage(src)
    before = sha256(src)
    with pytest.raises(DataError) as caught:
        convert(src, tmp_path / "out.zarr", quiet=True)
    message = str(caught.value)
    assert str(src) in message and words in message
    if key is not None:
        assert f"[{key}]" in message
    capsys.readouterr()
    assert main(["data", "convert", str(src), str(tmp_path / "cli.zarr")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(src) in last
    assert sha256(src) == before


def test_drop_bad_episodes_drops_the_nan_demo(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _edit(_set_nan)(src)
    report = convert(src, tmp_path / "out.zarr", drop_bad_episodes=True, quiet=True)
    assert report.written == 3
    assert [index for index, _ in report.dropped] == [2]
    assert "data/demo_2/obs/robot0_eef_pos" in report.dropped[0][1]
    store = EpisodeStore.open(tmp_path / "out.zarr")
    np.testing.assert_array_equal(store.episode_meta("demo_index"), [0, 1, 10])
    argv = ["data", "convert", str(src), str(tmp_path / "cli.zarr"), "--drop-bad-episodes"]
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes_written"] == 3
    assert [d["episode"] for d in summary["episodes_dropped"]] == [2]


def test_detection_and_low_dim_file(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["observations"] = np.zeros((3, 2))
    with pytest.raises(DataError, match="not a dataset in any known format"):
        detect_format(other)
    # a low-dim file without rewards, dones or states, as convert_robosuite.py can leave it
    low_dim = tmp_path / "low_dim.h5"
    shutil.copy(write_robomimic(tmp_path / "full.hdf5"), low_dim)
    with h5py.File(low_dim, "r+") as f:
        for n in DEMOS:
            for key in ("rewards", "dones", "obs/agentview_image", "obs/robot0_eye_in_hand_image"):
                del f[f"data/demo_{n}/{key}"]
            del f[f"data/demo_{n}/states"]
            f[f"data/demo_{n}/states"] = np.zeros((0,))
    reader = detect_format(low_dim).open(low_dim)
    try:
        episode = reader.read_episode(3)
        assert set(episode.frames) == {"action", *LOW_DIM}
        assert episode.meta == {"demo_index": 10}
        with pytest.raises(DataError, match="out of range"):
            reader.read_episode(4)
    finally:
        reader.close()
