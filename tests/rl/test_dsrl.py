"""DSRL and the steered policy: the math, a frozen base, bounded latents, a seeded Gaussian
warm-up, resuming, the checkpoint in ``load_policy`` and ``robopolicy eval``, and a real gain.

Fast tests run tiny untrained base policies on ``PointEnv`` (:mod:`tests.rl.test_ppo`); the slow
one steers ``push_bc("flow")`` (about 14% success on ``arm-push``) and must raise its success
by 0.2 on 50 held-out episodes within 16k env steps, with a resume halfway.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import robopolicy
from robopolicy.cli import main
from robopolicy.config import ConfigError, apply_overrides, build
from robopolicy.data.normalize import Normalizer
from robopolicy.errors import RobopolicyError
from robopolicy.models.mlp import MLPDenoiserConfig
from robopolicy.policies import save_policy
from robopolicy.policies.checkpoint import read_card
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.flow import FlowConfig, FlowPolicy
from robopolicy.policies.steered import LatentActorConfig, SteeredConfig, SteeredPolicy
from robopolicy.rl.dsrl import DSRLConfig, replay_rows, train
from robopolicy.rl.dsrl_config import ARM_PUSH
from robopolicy.rl.offpolicy import QEnsemble, ReplayBuffer
from robopolicy.rl.rollout import RolloutBatch
from robopolicy.runlog import read_scalars
from robopolicy.train.state import load_tree
from tests.rl.test_ppo import point_rollouts

WINDOW = dict(n_obs_steps=2, horizon=4, n_action_steps=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def point_base(kind: str) -> FlowPolicy | DiffusionPolicy:
    """An untrained tiny policy for PointEnv (state (4,), action (2,) in [-1, 1])."""
    denoiser = MLPDenoiserConfig(hidden_dims=(32,) * 3, time_embed_dim=8)
    shapes = {"state": (4,), "action": (2,)}
    if kind == "diffusion":
        config = DiffusionConfig(shapes=shapes, denoiser=denoiser, num_train_timesteps=20, **WINDOW)
    else:
        config = FlowConfig(shapes=shapes, denoiser=denoiser, **WINDOW)
    gen = torch.Generator().manual_seed(0)
    data = {"state": torch.rand(64, 4, generator=gen) * 4 - 2, "action": torch.rand(64, 2) * 2 - 1}
    torch.manual_seed(0)
    cls = DiffusionPolicy if kind == "diffusion" else FlowPolicy
    return cls(config, Normalizer.fit(data, config.normalizer_modes()))


def tiny_config(**overrides) -> DSRLConfig:
    settings = dict(
        total_env_steps=120,
        num_envs=2,
        steps=3,
        actor=LatentActorConfig(hidden_dims=(16, 16)),
        critic_hidden_dims=(16, 16),
        batch_size=8,
        utd_ratio=1.0,
        warmup_decisions=40,
        eval_episodes=2,
        eval_envs=2,
        eval_every=0,
        log_every=40,
    )
    return build(DSRLConfig, **(settings | overrides))


# -- the pieces ---------------------------------------------------------------------------------


def test_actor_log_prob_is_the_squashed_gaussian_density_and_latents_stay_bounded():
    torch.manual_seed(0)
    policy = SteeredPolicy.around(point_base("flow"), LatentActorConfig(noise_bound=1.5))
    x = torch.randn(64, 8) * 3
    eps = torch.randn(64, 4 * 2)  # L = Tp * Da
    w, log_prob = policy.actor.sample(x, eps)
    mean, log_std = policy.actor(x)
    squashed = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform()],
    )
    s = (mean + log_std.exp() * eps).tanh()
    torch.testing.assert_close(w, 1.5 * s)
    torch.testing.assert_close(log_prob, squashed.log_prob(s).sum(-1), rtol=1e-4, atol=1e-3)
    obs = {"state": torch.randn(32, 2, 4) * 100}  # far outside the data: large pre-activations
    for noise in (None, torch.randn(32, 4, 2) * 1e3):
        with torch.no_grad():
            latent = policy.latent(obs, noise)
        assert latent.shape == (32, 4, 2) and float(latent.abs().max()) <= 1.5


def test_the_critic_ensemble_is_independent_layer_normed_mlps():
    torch.manual_seed(0)
    ensemble = QEnsemble(7, (16, 16), 3, "tanh", True)
    with torch.no_grad():  # distinct LayerNorm affines per member, so mixing them would show
        for p in (*ensemble.scales, *ensemble.shifts):
            p.normal_()
    x, w = torch.randn(5, 4), torch.randn(5, 3)
    out = ensemble(x, w)
    assert out.shape == (3, 5)
    for k in range(3):
        h = torch.cat([x, w], -1)
        for i in range(3):
            h = h @ ensemble.weights[i][k] + ensemble.biases[i][k]
            if i < 2:
                h = torch.nn.functional.layer_norm(h, (16,)) * ensemble.scales[i][k]
                h = torch.tanh(h + ensemble.shifts[i][k])
        torch.testing.assert_close(out[k], h.squeeze(-1))


def test_the_replay_ring_overwrites_its_oldest_rows_and_resumes_in_order():
    def rows(start: int, m: int) -> dict[str, torch.Tensor]:
        value = torch.arange(start, start + m, dtype=torch.float32)
        row = {"x": value[:, None], "w": -value[:, None].expand(m, 2), "next_x": value[:, None]}
        return row | {k: value for k in ("reward", "done", "discount")}

    ring = ReplayBuffer(5, 1, 2, torch.device("cpu"))
    ring.add(rows(0, 3))
    ring.add(rows(3, 4))  # 5 and 6 overwrite 0 and 1
    assert (ring.size, ring.pos) == (5, 2)
    assert ring.data["x"][:, 0].tolist() == [5, 6, 2, 3, 4]
    again = ReplayBuffer(5, 1, 2, torch.device("cpu"))
    again.load_state_dict(ring.state_dict())
    again.add(rows(7, 1))  # the oldest row left (2) goes next
    assert again.data["reward"].tolist() == [5, 6, 7, 3, 4]
    picked = again.gather(torch.tensor([[1], [2]]))["w"]  # (2, 1, L)
    assert torch.equal(picked, -torch.tensor([[[6.0, 6.0]], [[7.0, 7.0]]]))
    with pytest.raises(RobopolicyError, match="more than its 3"):
        ReplayBuffer(3, 1, 2, torch.device("cpu")).load_state_dict(ring.state_dict())


def test_replay_rows_discount_chunk_rewards_and_bootstrap_truncations():
    config = DSRLConfig(gamma=0.5, reward_scale=2.0, reward_offset=1.0)
    obs = {"state": torch.arange(2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 1)}  # (T, N, To, 1)
    batch = RolloutBatch(
        obs=obs,
        actions=torch.zeros(2, 2, 3, 1),
        extras={"latent": torch.arange(2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 1)},
        rewards=torch.tensor([[[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]], [[1.0, 0.0, 0.0], [3, 3, 3]]]),
        dones=torch.zeros(2, 2, 3, dtype=torch.bool),
        executed=torch.tensor([[[1, 1, 1], [1, 1, 0]], [[1, 0, 0], [1, 1, 1]]], dtype=torch.bool),
        terminated=torch.tensor([[False, True], [False, False]]),
        truncated=torch.tensor([[False, False], [True, False]]),
        next_obs={"state": torch.full((2, 2, 1), 100.0)},
        final_obs={"state": torch.full((1, 2, 1), -7.0)},
        episodes={},
    )
    rows = replay_rows(batch, lambda o: o["state"].flatten(1), config)
    # r' = 2 (r - 1); rows t-major: (t0,e0) (t0,e1) (t1,e0) (t1,e1)
    assert rows["reward"].tolist() == [0.0, -2 + 0.5 * 2, 0.0, 4 * (1 + 0.5 + 0.25)]
    assert rows["discount"].tolist() == [0.125, 0.25, 0.5, 0.125]
    assert rows["done"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert rows["x"][:, -1].tolist() == [1.0, 3.0, 5.0, 7.0]
    assert rows["next_x"][:, -1].tolist() == [5.0, 7.0, -7.0, 100.0]  # truncation: final obs
    assert rows["w"].shape == (4, 2)


def test_steered_checkpoints_round_trip_and_load_without_training_code(tmp_path):
    for kind in ("flow", "diffusion"):
        base = point_base(kind)
        torch.manual_seed(1)
        policy = SteeredPolicy.around(base, steps=3)
        obs = {"state": torch.randn(6, 2, 4)}
        eps = torch.randn(6, 4, 2)
        path = save_policy(policy, tmp_path / kind)
        loaded = robopolicy.load_policy(path)
        assert isinstance(loaded, SteeredPolicy) and not loaded.training
        assert loaded.config == policy.config and loaded.config.steps == 3
        assert torch.equal(loaded.sample(obs), policy.sample(obs))
        assert torch.equal(loaded.sample(obs, noise=eps), policy.sample(obs, noise=eps))
        latent = policy.latent(obs)  # the steered sample is the base's from the actor's latent
        assert torch.equal(policy.sample(obs), base.sample(obs, noise=latent, steps=3))
        weights = load_file(str(path / "model.safetensors"))
        for key, value in base.state_dict().items():
            assert torch.equal(weights[f"base.{key}"], value)
    save_file(obs, str(tmp_path / "obs.safetensors"))
    code = (
        "import sys, robopolicy\n"
        "from safetensors.torch import load_file\n"
        f"obs = load_file({str(tmp_path / 'obs.safetensors')!r})\n"
        f"p = robopolicy.load_policy({str(tmp_path / 'diffusion')!r})\n"
        "assert not any(m.startswith(('robopolicy.rl', 'robopolicy.train')) for m in sys.modules)\n"
        "print(p.sample(obs).flatten().tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    torch.testing.assert_close(torch.tensor(json.loads(done.stdout)), policy.sample(obs).flatten())


def test_steered_configs_refuse_a_mismatched_or_missing_base():
    base = point_base("flow").config
    with pytest.raises(ValueError, match="base policy's config"):
        SteeredConfig()
    with pytest.raises(ValueError, match="horizon"):
        SteeredConfig(**{**WINDOW, "horizon": 5}, shapes=base.shapes, base=base)
    with pytest.raises(ValueError, match="noise_bound"):
        LatentActorConfig(noise_bound=0)
    with pytest.raises(ConfigError, match="did you mean 'utd_ratio'"):
        apply_overrides(DSRLConfig(), ["utd_rati=3"])
    with pytest.raises(ValueError, match="critic_combine"):
        DSRLConfig(critic_combine="max")


# -- tiny runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flow", "diffusion"])
def test_warmup_gaussian_latents_then_bounded_sac_and_a_frozen_base(tmp_path, kind):
    base = point_base(kind)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    config = tiny_config(decisions_per_iteration=3, seed=5)
    first = train(config, base, point_rollouts(), tmp_path / "run", progress=False)
    assert first.extra["updates"] > 0 and first.extra["decisions"] >= 60
    state = load_tree(first.checkpoint / "trainer_state", "state")
    stored = state["replay"]["w"]
    assert stored.shape == (first.extra["decisions"], 8)
    gen = torch.Generator().manual_seed(5)  # the run's generator: warm-up draws come first
    warmup = torch.cat([torch.randn((2, 8), generator=gen) for _ in range(20)])
    assert torch.equal(stored[:40], warmup.clamp(-1.5, 1.5))
    assert bool((warmup.abs() > 1.5).any())  # the clip did something
    assert not torch.equal(stored[40:46], torch.randn((6, 8), generator=gen).clamp(-1.5, 1.5))
    assert float(stored.abs().max()) <= 1.5
    assert float(stored[40:].abs().max()) < 1.5  # the actor's b·tanh(.) never reaches b
    for key, value in base.state_dict().items():  # the caller's base is untouched ...
        assert torch.equal(value, before[key])
    weights = load_file(str(first.checkpoint / "model.safetensors"))
    for key, value in before.items():  # ... and the checkpoint's base is bit-identical
        assert torch.equal(weights[f"base.{key}"], value)
    steered = robopolicy.load_policy(first.checkpoint)
    assert isinstance(steered, SteeredPolicy)
    assert not any(p.requires_grad for p in steered.base.parameters())

    # resume: the buffer, counters and curves go on where the checkpoint left them
    again = train(tiny_config(decisions_per_iteration=3, seed=5, total_env_steps=200), None,
                  point_rollouts(), tmp_path / "run", progress=False)  # fmt: skip
    assert again.env_steps >= 200 and again.extra["updates"] > first.extra["updates"]
    assert again.eval_before == first.eval_before
    resumed = load_tree(again.checkpoint / "trainer_state", "state")
    assert int(resumed["replay"]["size"]) == again.extra["decisions"]
    assert torch.equal(resumed["replay"]["w"][: first.extra["decisions"]], stored)
    steps = [row["step"] for row in read_scalars(tmp_path / "run" / "scalars.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == again.env_steps
    with pytest.raises(ConfigError, match="gamma"):
        train(tiny_config(decisions_per_iteration=3, seed=5, gamma=0.5), None, point_rollouts(),
              tmp_path / "run", progress=False)  # fmt: skip


# -- arm-push: DSRL must help -------------------------------------------------------------------

PUSH_SETTINGS = [*ARM_PUSH, "eval_every=0", "eval_episodes=50"]
"""Sized for CI (:mod:`robopolicy.rl.dsrl` for the reference's settings and these)."""


@pytest.mark.slow
def test_dsrl_raises_arm_push_success_and_its_checkpoint_runs_in_eval(push_bc, tmp_path, capsys):
    checkpoint = push_bc("flow")
    out = tmp_path / "run"
    options = ["--algo", "dsrl", "--task", "arm-push", "--out", str(out), "--quiet", "--json"]
    half = [*PUSH_SETTINGS, "total_env_steps=8000"]
    assert main(["finetune", str(checkpoint), *options, *half]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["env_steps"] >= 8000 and first["updates"] > 0

    # resumed (it could have been killed): the same run goes on to the full budget
    full = [*PUSH_SETTINGS, "total_env_steps=16000"]
    assert main(["finetune", "scratch", *options, *full]) == 0
    report = json.loads(capsys.readouterr().out)
    before, after = report["eval_before"]["success_rate"], report["eval_after"]["success_rate"]
    assert report["eval_before"] == first["eval_before"]
    assert report["updates"] > first["updates"] and report["env_steps"] >= 16_000
    assert after >= before + 0.2, (before, after)
    rows = read_scalars(out / "scalars.jsonl")
    steps = [row["step"] for row in rows]
    assert steps == sorted(set(steps)) and steps[-1] == report["env_steps"]
    resumed = [row for row in rows if row["step"] > first["env_steps"] and "train/updates" in row]
    assert resumed and resumed[0]["train/updates"] > first["updates"]  # the curve goes on
    assert (out / "curves.png").is_file() and (out / "tensorboard").is_dir()

    # the base is frozen: bit-identical weights in the steered checkpoint
    steered_path = report["checkpoint"]
    weights = load_file(f"{steered_path}/model.safetensors")
    for key, value in load_file(str(checkpoint / "model.safetensors")).items():
        assert torch.equal(weights[f"base.{key}"], value), key
    card = read_card(steered_path)
    assert card["algorithm"] == "dsrl" and card["base_checkpoint"] == str(checkpoint)

    # the checkpoint is an ordinary policy: robopolicy eval gets the same 50 episodes
    assert isinstance(robopolicy.load_policy(steered_path), SteeredPolicy)
    args = ["--task", "arm-push", "--episodes", "50", "--seed", "100000", "--json"]
    assert main(["eval", steered_path, *args, "--out", str(tmp_path / "eval")]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert abs(figures["success_rate"] - after) <= 0.1, (figures["success_rate"], after)
    again = ["finetune", steered_path, *options[:4], "--out", str(tmp_path / "x"), "--quiet"]
    assert main(again) == 2
    assert "already a steered policy" in capsys.readouterr().err


def test_dsrl_needs_a_base_to_start(tmp_path, capsys):
    options = ["--algo", "dsrl", "--task", "arm-push", "--out", str(tmp_path / "r"), "--quiet"]
    assert main(["finetune", "scratch", *options]) == 2
    assert "base policy checkpoint" in capsys.readouterr().err
