"""A checkpoint's interface (``robopolicy/policies/interface.py``): it round-trips through
save/load, is built from a store's metadata, migrates for older checkpoints, and a malformed
``interface.json`` is one DataError naming the file and the field."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import robopolicy
from robopolicy.cli import main
from robopolicy.config import to_dict
from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig
from robopolicy.data.features import Source
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from robopolicy.models.encoders import ObsEncoderConfig
from robopolicy.policies import save_policy
from robopolicy.policies.build import make_policy
from robopolicy.policies.interface import UNKNOWN, Feature, Interface
from tests.policies.make_fixtures import FIXTURES, tiny_config, toy_policy, toy_store

pytestmark = pytest.mark.usefixtures("one_thread")


def described() -> Interface:
    """The toy policy's window (state (3,), action (2,), To 2, Tp 4, Ta 2), fully described."""
    state = Feature(
        (3,),
        "float32",
        "m (positions), rad (yaw)",
        ("ee_x", "cube_x", "cube_yaw"),
        (Source("ee_pose", size=1), Source("object_pose", name="cube", size=2)),
    )
    action = Feature((2,), "float32", "m", ("ee_x", "ee_y"), (Source("ee_target"),))
    return Interface({"state": state}, action, 10.0, 2, 4, 2)


def test_the_interface_round_trips_through_save_and_load(tmp_path):
    policy = toy_policy("diffusion")
    assert policy.interface == Interface.from_config(policy.config)  # nothing recorded yet
    assert policy.interface.observation["state"].sources == UNKNOWN
    policy.interface = described()
    path = save_policy(policy, tmp_path / "ckpt")
    stored = json.loads((path / "interface.json").read_text())
    assert stored == to_dict(described()) and stored["fps"] == 10.0
    assert json.loads((path / "config.json").read_text())["version"] == 4
    loaded = robopolicy.load_policy(path)
    assert loaded.interface == described()
    again = save_policy(loaded, tmp_path / "again")  # kept by whoever loads and saves
    assert robopolicy.load_policy(again).interface == described()


def test_an_interface_that_disagrees_with_the_policy_is_refused():
    policy = toy_policy("flow")
    with pytest.raises(ValueError, match="horizon"):
        policy.interface = dataclasses.replace(described(), horizon=5, n_action_steps=2)
    wide = Feature((4,), "float32", None, None, UNKNOWN)
    with pytest.raises(ValueError, match=r"observation\.state\.shape"):
        policy.interface = dataclasses.replace(described(), observation={"state": wide})
    pose = Feature((2,), "float32", None, None, (Source("ee_pose"),))
    with pytest.raises(ValueError, match=r"action\.sources: 'ee_pose'"):  # not an action's
        Interface(described().observation, pose, None, 2, 4, 2)
    camera = Feature((3,), "float32", None, None, (Source("camera", name="front"),))
    with pytest.raises(ValueError, match=r"img: a camera gives \(H, W, 3\) uint8 frames"):
        Interface({"img": camera}, described().action, None, 2, 4, 2)


def test_a_policy_built_from_a_store_takes_its_fps_units_names_and_sources(tmp_path):
    """Camera keys, and a derived key's part of its source's description."""
    store = EpisodeStore.open(toy_store(tmp_path / "data.zarr"), mode="a")
    sources = [Source("ee_pose", size=2), Source("object_pose", "cube", 1)]
    store.set_feature("state", names=["ee_x", "ee_y", "cube_x"], units="m", sources=sources)
    store.set_feature("action", units="m", sources=[{"kind": "ee_target"}])
    store.set_feature("image.front", sources=[Source("camera", name="front")])
    data = SequenceDatasetConfig(
        store.path,
        obs_keys=("hand",),
        image_keys=("image.front",),
        derived_keys={"hand": "state[:2]"},
        n_obs_steps=2,
        horizon=4,
        n_action_steps=2,
    )
    small = ObsEncoderConfig(
        image_feature_dim=4, backbone_width=8, group_size=4, num_keypoints=4, crop_shape=(36, 36)
    )
    config = tiny_config(
        "diffusion", shapes={}, obs_keys=("hand",), image_keys=("image.front",), encoder=small
    )
    policy = make_policy(config, SequenceDataset(data))
    got = policy.interface
    assert (got.fps, got.n_obs_steps, got.horizon, got.n_action_steps) == (10.0, 2, 4, 2)
    hand = got.observation["hand"]
    assert (hand.shape, hand.names, hand.units) == ((2,), ("ee_x", "ee_y"), "m")
    assert hand.sources == (Source("ee_pose", size=2),)
    front = got.observation["image.front"]
    assert (front.shape, front.dtype) == ((40, 40, 3), "uint8")
    assert front.sources == (Source("camera", name="front"),)
    assert got.action.sources == (Source("ee_target"),) and got.action.names is None
    store.set_feature("state", sources=[Source("ee_pose", size=2)])  # 2 of 3 values
    with pytest.raises(DataError, match=r"features\.state.*add up to 2, not the 3"):
        SequenceDataset(data)


@pytest.mark.parametrize("name", ["diffusion_mlp", "flow_mlp"])
def test_an_old_checkpoint_migrates_to_what_its_config_and_card_tell(name, tmp_path):
    policy = robopolicy.load_policy(FIXTURES / name)  # version 1, no interface.json
    got = policy.interface
    assert (got.n_obs_steps, got.horizon, got.n_action_steps, got.fps) == (2, 4, 2, None)
    assert got.observation["state"] == Feature((3,), "float32", None, None, UNKNOWN)
    assert got.action == Feature((2,), "float32", None, None, UNKNOWN)
    old = shutil.copytree(FIXTURES / name, tmp_path / name)
    (old / "card.json").write_text(json.dumps({"fps": 20}))
    assert robopolicy.load_policy(old).interface.fps == 20.0
    (old / "card.json").write_text(json.dumps({"fps": "fast"}))
    with pytest.raises(DataError, match=r"card\.json \[fps\]"):
        robopolicy.load_policy(old)
    saved = save_policy(policy, tmp_path / "new")  # written anew: version 4, interface.json
    assert json.loads((saved / "interface.json").read_text()) == to_dict(got)


def edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        document = json.loads((path / "interface.json").read_text())
        result = change(document)
        (path / "interface.json").write_text(json.dumps(document if result is None else result))

    return damage


def state(**fields: object) -> Callable[[Path], None]:
    return edit(lambda d: d["observation"]["state"].update(fields))


BAD_INTERFACES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda p: (p / "interface.json").unlink(), "without interface.json"),
    "not JSON": (lambda p: (p / "interface.json").write_text("{"), "unreadable JSON"),
    "a list": (edit(lambda d: [d]), "expected an object"),
    "too large": (lambda p: (p / "interface.json").write_text(" " * (2 << 20)), "over 1048576"),
    "missing field": (edit(lambda d: d.pop("fps") and None), "fps"),
    "unknown field": (edit(lambda d: d.update(fsp=10)), "fsp: unknown field"),
    "fps as text": (edit(lambda d: d.update(fps="ten")), "fps"),
    "fps NaN": (edit(lambda d: d.update(fps=float("nan"))), "fps: must be in"),
    "shape as text": (state(shape="three"), "observation.state.shape: expected a list"),
    "shape of bools": (state(shape=[True]), "observation.state.shape[0]"),
    "huge shape": (state(shape=[10**9]), "observation.state.: shape"),
    "wrong shape": (
        state(shape=[4], names=None, sources=[{"kind": "unknown"}]),
        "observation.state.shape: the interface has (4,)",
    ),
    "wrong dtype": (state(dtype="uint8"), "observation.state.dtype"),
    "unknown dtype": (state(dtype="float16"), "dtype: 'float16'"),
    "unknown source": (state(sources=[{"kind": "lidar"}]), "unknown source 'lidar'"),
    "object without name": (state(sources=[{"kind": "object_pose"}]), "needs a name"),
    "sizes off": (state(sources=[{"kind": "ee_pose", "size": 2}]), "add up to 2, not the 3"),
    "names off": (state(names=["x"]), "1 names for 3 values"),
    "action source on state": (
        state(sources=[{"kind": "joint_target"}]),
        "observation.state.sources: 'joint_target'",
    ),
    "window": (edit(lambda d: d.update(horizon=5)), "horizon: the interface has 5"),
    "no observation": (edit(lambda d: d.update(observation={})), "observation: give 1"),
    "a path for a key": (
        edit(lambda d: d["observation"].update({"../x": d["observation"]["state"]})),
        "observation: '../x' cannot be a store's key",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INTERFACES))
def test_a_malformed_interface_is_one_error_naming_the_file_and_field(case, tmp_path):
    policy = toy_policy("diffusion")
    policy.interface = described()
    path = save_policy(policy, tmp_path / "ckpt")
    damage, field = BAD_INTERFACES[case]
    damage(path)
    with pytest.raises(DataError) as caught:
        robopolicy.load_policy(path)
    message = str(caught.value)
    assert str(path) in message and field in message, message
    if case == "unknown source":
        assert "interface.json" in message


def test_serve_refuses_a_malformed_interface_in_one_line(tmp_path, capsys):
    policy = toy_policy("diffusion")
    path = save_policy(policy, tmp_path / "ckpt")
    state(sources=[{"kind": "lidar"}])(path)
    assert main(["serve", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1 and "interface.json" in lines[0], err
