"""A checkpoint's interface on its whole path (issue 20, point 1): ``robopolicy collect`` and
the teleop recorder record each key's sources, training writes them with the data's units and
fps, distillation and RL fine-tuning (DPPO, DSRL) keep them, and the server publishes them with
a ``period``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import robopolicy
from hardware.cameras.opencv import OpenCVCamera, OpenCVCameraConfig
from hardware.recorder import Recorder, RecorderConfig, RecordingSetup
from hardware.sim_arm import SimArm
from hardware.testing.recorded_episodes import make_frame
from robopolicy.cli import main
from robopolicy.config import apply_overrides, build, to_dict
from robopolicy.data.features import Source
from robopolicy.data.store import EpisodeStore
from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.policies.interface import Feature, Interface
from robopolicy.rl import dppo, dsrl
from robopolicy.serve import PolicyClient
from robopolicy.serve.config import ServerConfig
from robopolicy.serve.server import PolicyServer
from robopolicy.train.presets import get_preset
from robopolicy.train.trainer import Trainer
from sim.collect import CollectConfig, collect_demos
from sim.registry import make_task
from tests.rl.test_dppo import TINY
from tests.rl.test_dsrl import point_base, tiny_config
from tests.rl.test_ppo import point_rollouts

pytestmark = pytest.mark.usefixtures("one_thread")

PUSH_STATE = (Source("ee_pose", size=2), Source("object_pose", name="cube", size=4))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusion policy trained 2 steps on 3 collected ``arm-push`` episodes."""
    root = tmp_path_factory.mktemp("push")
    demos = collect_demos(
        CollectConfig("arm-push", root / "demos.zarr", episodes=3), progress=False
    )
    assert demos.episodes == 3
    config = get_preset("arm-push", policy="diffusion", data=str(root / "demos.zarr"))
    small = ["max_steps=2", "batch_size=8", "data.val_ratio=0", "num_threads=1"]
    config = apply_overrides(config, [*small, "policy.denoiser.hidden_dims=[32,32,32]"])
    return Path(Trainer(config, progress=False).fit(root / "bc").latest).resolve()


def test_collect_records_what_produces_each_key(trained):
    store = EpisodeStore.open(trained.parents[2] / "demos.zarr")
    assert store.feature("state").sources == PUSH_STATE
    assert store.feature("action").sources == (Source("ee_target"),)
    joint = make_task("arm-pick-place", action_mode="joint").unwrapped.task_meta
    assert joint.state_sources[-1] == Source("joint_state", size=6)
    assert joint.action_sources == (Source("joint_target", size=6), Source("gripper", size=1))


def test_collect_records_each_camera(gl, tmp_path):
    config = CollectConfig("arm-push", tmp_path / "demos.zarr", episodes=1, cameras=("front",))
    collect_demos(config, progress=False)
    store = EpisodeStore.open(tmp_path / "demos.zarr")
    assert store.feature("image.front").sources == (Source("camera", name="front"),)


def test_the_recorder_records_what_produces_each_key(tmp_path):
    arm = SimArm()
    camera = OpenCVCamera(OpenCVCameraConfig("front", height=12, width=16))
    setup = RecordingSetup.of(arm, [camera], fps=30.0)
    with Recorder(RecorderConfig(tmp_path / "rec.zarr"), setup) as recorder:
        recorder.start_episode()
        for t in range(3):
            recorder.record(make_frame(0, t, setup))
        assert recorder.keep().kept
    store = EpisodeStore.open(tmp_path / "rec.zarr")
    state = store.feature("state")
    assert state.sources == (Source("joint_state", size=6), Source("gripper", size=1))
    assert state.names == (*arm.spec.names, "gripper")
    joints = (Source("joint_target", size=6), Source("gripper", size=1))
    assert store.feature("action").sources == joints
    assert store.feature("image.front").sources == (Source("camera", name="front"),)


def test_training_writes_the_datas_interface(trained):
    got = robopolicy.load_policy(trained).interface
    assert (got.fps, got.n_obs_steps, got.horizon, got.n_action_steps) == (10.0, 2, 8, 4)
    state = got.observation["state"]
    assert state.sources == PUSH_STATE and state.dtype == "float32"
    assert state.names == ("ee_x", "ee_y", "cube_x", "cube_y", "cube_sin4yaw", "cube_cos4yaw")
    assert state.units == "m (positions), sin/cos of 4*yaw"
    action = got.action
    assert (action.shape, action.names) == ((2,), ("ee_x", "ee_y"))
    assert action.sources == (Source("ee_target"),)
    assert action.units == "m (end-effector target, world frame)"
    assert json.loads((trained / "interface.json").read_text()) == to_dict(got)


def test_the_server_publishes_the_interface_and_the_period(trained):
    engine = InferenceEngine.from_checkpoint(trained, EngineConfig(backend="policy"))
    interface = robopolicy.load_policy(trained).interface
    server = PolicyServer(engine, ServerConfig(port=0))
    _, port = server.start()
    try:
        with PolicyClient(port=port) as client:
            meta = client.metadata()
            assert meta["fps"] == 10.0 and meta["interface"] == to_dict(interface)
            obs = {"state": np.zeros((1, 2, 6), np.float32), "timestamp": np.zeros((1, 2))}
            _, info = client.infer(obs, timeout_s=30)
            assert info["period"] == pytest.approx(0.1)
    finally:
        server.stop()
    with pytest.raises(ValueError, match="differs from the 10"):  # not the data's rate
        InferenceEngine.from_checkpoint(trained, EngineConfig(backend="policy"), fps=50.0)


def test_distillation_keeps_the_interface(trained, tmp_path, capsys):
    out = tmp_path / "student"
    tiny = ["train_steps=2", "batch_size=8", "teacher_steps=3", "eval_size=4"]
    assert main(["distill", str(trained), "--out", str(out), "--steps", "1", *tiny]) == 0
    capsys.readouterr()
    teacher = robopolicy.load_policy(trained).interface
    assert robopolicy.load_policy(out).interface == teacher


def point_interface() -> Interface:
    """PointEnv's state and action (:mod:`tests.rl.test_ppo`), described."""
    state = Feature(
        (4,),
        "float32",
        "m",
        ("x", "y", "goal_x", "goal_y"),
        (Source("ee_pose", size=2), Source("object_pose", name="goal", size=2)),
    )
    action = Feature((2,), "float32", "0.1 m", ("vx", "vy"), (Source("ee_target"),))
    return Interface({"state": state}, action, 10.0, 2, 4, 2)


def test_rl_fine_tuning_keeps_the_interface(tmp_path):
    base = point_base("diffusion")
    base.interface = point_interface()
    config = build(dppo.DPPOConfig, **TINY, total_env_steps=40)
    tuned = dppo.train(config, point_rollouts(), tmp_path / "dppo", policy=base, progress=False)
    assert robopolicy.load_policy(tuned.checkpoint).interface == point_interface()
    config = tiny_config(total_env_steps=40, warmup_decisions=10)
    steered = dsrl.train(config, base, point_rollouts(), tmp_path / "dsrl", progress=False)
    assert robopolicy.load_policy(steered.checkpoint).interface == point_interface()
