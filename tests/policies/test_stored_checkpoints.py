"""Checkpoints made by an older commit still load and behave the same.

``tests/policies/fixtures/`` holds a tiny diffusion and a tiny flow checkpoint written by
``python -m tests.policies.make_fixtures`` at an older commit, with ``expected.json``: an
observation, noise, and the samples and losses those policies gave. Today's code must load them
and reproduce those numbers.

When this fails after an intentional change, do NOT regenerate the fixtures: users hold
checkpoints like these. Instead make old checkpoints load into the new code:

1. bump ``VERSION`` in ``robopolicy/policies/checkpoint.py``;
2. add ``MIGRATIONS[old_version]``, a function that rewrites an old ``config.json`` document into
   the new layout (rename a field, or fill a new field with the value that reproduces the old
   behaviour, e.g. ``doc["policy"].setdefault("time_scale", 1000.0)`` if its default changed);
3. when a weight name changes, map the old names in the loader the same way;
4. keep this test unchanged; it then proves the migration. To cover a new feature, add another
   fixture directory (and its entry in ``expected.json``) beside the old ones.

A change that alters the numbers of an old checkpoint with an unchanged config (a new default
time scale, another schedule formula) is a behaviour change for every user: migrate the old
config to keep the old behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import robopolicy
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.flow import FlowPolicy
from tests.policies.make_fixtures import FIXTURES


@pytest.mark.parametrize(
    "name, cls", [("diffusion_mlp", DiffusionPolicy), ("flow_mlp", FlowPolicy)]
)
def test_old_checkpoint_loads_and_samples_the_same(name, cls):
    expected = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
    policy = robopolicy.load_policy(FIXTURES / name)
    assert isinstance(policy, cls)
    obs = {"state": torch.tensor(expected["obs"])}
    noise = torch.tensor(expected["noise"])
    want = expected[name]
    torch.testing.assert_close(policy.sample(obs, noise=noise), torch.tensor(want["sample"]))
    batch = {"obs": obs, "action": torch.tensor(want["action"])}
    t = torch.tensor(want["t"])
    if cls is DiffusionPolicy:
        k = policy.config.num_train_timesteps
        loss = policy.loss(batch, noise=noise, timesteps=(t * k).long())
    else:
        loss = policy.loss(batch, noise=noise, t=t)
    assert loss.item() == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)


def test_old_checkpoints_load_in_a_fresh_process_without_training_code():
    code = (
        "import json, sys, torch, robopolicy\n"
        f"fixtures = {str(FIXTURES)!r}\n"
        "expected = json.load(open(fixtures + '/expected.json'))\n"
        "obs = {'state': torch.tensor(expected['obs'])}\n"
        "noise = torch.tensor(expected['noise'])\n"
        "for name in ('diffusion_mlp', 'flow_mlp'):\n"
        "    got = robopolicy.load_policy(fixtures + '/' + name).sample(obs, noise=noise)\n"
        "    want = torch.tensor(expected[name]['sample'])\n"
        "    torch.testing.assert_close(got, want)\n"
        "assert not any(m.startswith(('robopolicy.train', 'robopolicy.rl')) for m in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
