"""Checkpoints: save, load in a fresh process, refuse damaged or foreign directories."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import robopolicy
from robopolicy.data.normalize import Normalizer
from robopolicy.errors import DataError
from robopolicy.policies import Policy, PolicyConfig, register_policy, save_policy
from robopolicy.policies.base import POLICIES, BatchError
from robopolicy.policies.checkpoint import read_policy_config


@dataclasses.dataclass
class LinearConfig(PolicyConfig):
    hidden: int = 8


class LinearPolicy(Policy):
    """The smallest policy: a linear map from the last state to a constant chunk."""

    def __init__(self, config, normalizer):
        super().__init__(config, normalizer)
        self.net = torch.nn.Linear(config.state_dim, config.horizon * config.action_dim)

    def sample(self, obs, *, noise=None, steps=None):
        size = self.check_obs(obs)
        state = self.normalizer.normalize(obs["state"][:, -1], "state")
        out = self.net(state).view(size, self.config.horizon, self.config.action_dim)
        return self.normalizer.unnormalize(out, "action")


if "test-linear" not in POLICIES:
    register_policy("test-linear", LinearConfig)(LinearPolicy)


def make_policy():
    config = LinearConfig(shapes={"state": (3,), "action": (2,)}, horizon=4, n_action_steps=2)
    data = {"state": torch.randn(50, 3), "action": torch.randn(50, 2) * 5}
    normalizer = Normalizer.fit(data, config.normalizer_modes())
    return LinearPolicy(config, normalizer)


def test_save_load_same_samples_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    policy = make_policy()
    obs = {"state": torch.randn(5, 2, 3)}
    path = save_policy(policy, tmp_path / "ckpt", card={"task": "toy"})
    assert sorted(p.name for p in path.iterdir()) == [
        "card.json", "config.json", "interface.json", "model.safetensors", "normalizer.json",
        "normalizer.safetensors",
    ]  # fmt: skip
    loaded = robopolicy.load_policy(path)
    assert isinstance(loaded, LinearPolicy) and not loaded.training
    torch.testing.assert_close(loaded.sample(obs), policy.sample(obs))
    torch.save(obs, tmp_path / "obs.pt")
    code = (
        "import sys, torch, robopolicy\n"
        "import tests.policies.test_checkpoint\n"
        "assert 'robopolicy.train' not in sys.modules\n"
        f"obs = torch.load({str(tmp_path / 'obs.pt')!r}, weights_only=True)\n"
        f"p = robopolicy.load_policy({str(path)!r})\n"
        "print(p.sample(obs).flatten().tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = torch.tensor(json.loads(done.stdout))
    torch.testing.assert_close(got, policy.sample(obs).flatten())


def test_damaged_or_foreign_checkpoints_are_refused(tmp_path):
    path = save_policy(make_policy(), tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["version"] = 99
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="newer than this robopolicy"):
        robopolicy.load_policy(path)
    path = save_policy(make_policy(), tmp_path / "ckpt")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(DataError, match="unreadable weights"):
        robopolicy.load_policy(path)
    with pytest.raises(DataError, match="not a policy checkpoint"):
        robopolicy.load_policy(tmp_path)
    path = save_policy(make_policy(), tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["policy"]["hiden"] = 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="did you mean 'hidden'"):
        read_policy_config(path)


def test_wrong_observation_shapes_are_named():
    policy = make_policy()
    with pytest.raises(BatchError, match=r"obs\['state'\] has shape \(5, 2, 4\)"):
        policy.sample({"state": torch.zeros(5, 2, 4)})
    with pytest.raises(BatchError, match="lacks 'state'"):
        policy.sample({"img": torch.zeros(5, 2, 3)})
    with pytest.raises(BatchError, match="NaN"):
        policy.sample({"state": torch.full((1, 2, 3), float("nan"))})


def test_version_1_flow_configs_keep_sampling_unclipped(tmp_path):
    """Version 2 added the flow policy's ``clip_sample`` (on by default); a version-1 flow config,
    alone or as a steered policy's base, migrates to ``clip_sample=False``."""
    from robopolicy.config import to_dict
    from robopolicy.policies.steered import SteeredConfig
    from tests.policies.make_fixtures import tiny_config

    flow = tiny_config("flow")
    assert flow.clip_sample
    for config in (flow, SteeredConfig.around(flow)):
        document = {"format": "robopolicy.policy", "version": 1, "policy": to_dict(config)}
        for part in (document["policy"], document["policy"].get("base") or {}):
            part.pop("clip_sample", None)
        (tmp_path / "config.json").write_text(json.dumps(document))
        migrated = read_policy_config(tmp_path)
        assert (getattr(migrated, "base", None) or migrated).clip_sample is False
        document["version"] = 2  # a version-2 document missing the field takes the default
        (tmp_path / "config.json").write_text(json.dumps(document))
        current = read_policy_config(tmp_path)
        assert (getattr(current, "base", None) or current).clip_sample is True


def test_version_2_configs_spell_the_step_count_steps(tmp_path):
    """Version 3 renamed the step count per sample to ``steps``: a version-2 config spelling
    ``num_inference_steps`` (diffusion, flow) or ``base_steps`` (steered, around either) loads
    with the same values under the new name."""
    from robopolicy.config import to_dict
    from robopolicy.policies.steered import SteeredConfig
    from tests.policies.make_fixtures import tiny_config

    diffusion, flow = tiny_config("diffusion", steps=5), tiny_config("flow", steps=3)
    configs = (
        diffusion,
        flow,
        SteeredConfig.around(diffusion, steps=2),
        SteeredConfig.around(flow),
    )
    for config in configs:
        document = {"format": "robopolicy.policy", "version": 2, "policy": to_dict(config)}
        policy = document["policy"]
        if "base" in policy:
            policy["base_steps"] = policy.pop("steps")
            policy["base"]["num_inference_steps"] = policy["base"].pop("steps")
        else:
            policy["num_inference_steps"] = policy.pop("steps")
        (tmp_path / "config.json").write_text(json.dumps(document))
        assert read_policy_config(tmp_path) == config
