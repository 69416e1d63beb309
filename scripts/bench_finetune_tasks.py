"""The task table of ``scripts/bench_finetune.py``: per task its demonstrations, the cloned
policies, the fine-tuning budget and every algorithm's settings (that script's docstring says
why these), and the tiny sizes of ``--smoke``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from apps.quickstart.finetune import SETTINGS as DSRL_PUSH
from robopolicy.rl.dppo_config import ARM_PUSH as DPPO_PUSH

ALGOS = ("ppo", "dppo", "fpo", "dsrl")


@dataclasses.dataclass(frozen=True)
class TaskBench:
    """One task's row group: its data, its cloned policies, the budget and every algorithm's
    settings."""

    task: str
    """Registered task name."""
    metric: str
    """The evaluation figure compared: ``success_rate`` or ``return``."""
    demos: str
    """``scripted`` (the task's imperfect scripted expert) or ``medium``
    (:mod:`apps.medium_dataset`)."""
    episodes: int
    """Demonstration episodes."""
    env_steps: int
    """Fine-tuning budget of every algorithm, in env steps."""
    eval_episodes: int
    """Evaluation episodes before and after (seeds ``EVAL_SEED …``), for every algorithm."""
    eval_envs: int
    """Envs evaluating in parallel."""
    bc: Mapping[str, tuple[str, ...]]
    """Overrides of the ``arm-push`` BC preset per policy kind (``flow``, ``diffusion``)."""
    algos: Mapping[str, tuple[str, ...]]
    """Overrides of each algorithm's config (after the budget and the evaluation)."""
    task_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Options of the task while fine-tuning and evaluating (e.g. ending at success)."""
    medium_budget: int | None = None
    """``medium`` data only: env steps of the PPO run that makes it (None: ``robopolicy
    medium``'s default for the task)."""
    medium_overrides: tuple[str, ...] = ()
    """``medium`` data only: overrides of that PPO run."""
    needs: str | None = None
    """A module the task needs beyond the base install (skipped with a message without it)."""

    def __post_init__(self) -> None:
        if self.metric not in ("success_rate", "return"):
            raise ValueError(f"metric must be success_rate or return, got {self.metric!r}")
        if self.demos not in ("scripted", "medium"):
            raise ValueError(f"demos must be scripted or medium, got {self.demos!r}")
        for name in ("episodes", "env_steps", "eval_episodes", "eval_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if set(self.bc) != {"flow", "diffusion"} or set(self.algos) != set(ALGOS):
            raise ValueError("bc needs flow and diffusion, algos every one of " + ", ".join(ALGOS))


_DPPO_WINDOW = ("policy.n_obs_steps=1", "policy.horizon=4", "policy.n_action_steps=4")
"""DPPO's window on Hopper and robomimic: one observation, chunks of 4, all executed."""
_PPO_FINETUNE = (
    "learning_rate=1e-4",
    "value_learning_rate=1e-3",
    "update_epochs=5",
    "num_minibatches=4",
    "clip_coef=0.1",
    "target_kl=0.05",
)
"""PPO from a cloned Gaussian: small, early-stopped steps, so it does not unlearn the BC."""


def _bc(
    *overrides: str,
    diffusion_steps: int | None = None,
    flow: tuple[str, ...] = (),
    diffusion: tuple[str, ...] = (),
) -> dict[str, tuple[str, ...]]:
    """BC overrides of both kinds, then each kind's own (``flow``, ``diffusion``); the diffusion
    policy's K when ``diffusion_steps`` is given."""
    steps = () if diffusion_steps is None else (f"policy.num_train_timesteps={diffusion_steps}",)
    return {"flow": (*overrides, *flow), "diffusion": (*overrides, *steps, *diffusion)}


TASKS = {
    "arm-push": TaskBench(
        task="arm-push",
        metric="success_rate",
        demos="scripted",
        episodes=200,
        env_steps=80_000,
        eval_episodes=50,
        eval_envs=10,
        bc=_bc(),
        algos={
            # evaluations every ~16k env steps (1,600 per PPO iteration, 2,560 per FPO's)
            "ppo": (
                *_PPO_FINETUNE,
                "num_envs=8",
                "n_steps=50",
                "critic_warmup_iterations=2",
                "eval_every=10",
                "checkpoint_every=10",
            ),
            "dppo": (  # tests/rl/test_dppo.py's settings (5,120 env steps an iteration)
                *(f"{key}={value}" for key, value in DPPO_PUSH.items()),
                "eval_every=3",
                "checkpoint_every=3",
            ),
            # FPO: its defaults were tuned on arm-push (robopolicy.rl.fpo); DSRL: the quickstart's
            "fpo": ("eval_every=6", "checkpoint_every=6"),
            "dsrl": (*DSRL_PUSH, "eval_every=16000", "checkpoint_every=16000"),
        },
    ),
    "robosuite-lift": TaskBench(
        task="robosuite-lift",
        metric="success_rate",
        demos="scripted",
        episodes=30,
        env_steps=20_000,
        eval_episodes=50,
        eval_envs=10,
        # under-trained clones, as DPPO fine-tunes early pretraining checkpoints: cloned for
        # 1,000 steps or more, the policies lift the cube every time and the rows say nothing
        bc=_bc(
            *_DPPO_WINDOW,
            diffusion_steps=20,
            flow=("max_steps=250", "checkpoint_every=250"),
            diffusion=("max_steps=400", "checkpoint_every=400"),
        ),
        algos={
            # evaluations only before and after (robosuite is slow); 2,000 env steps an iteration
            "ppo": (
                *_PPO_FINETUNE,
                "num_envs=10",
                "n_steps=50",
                "critic_warmup_iterations=2",
                "eval_every=0",
                "checkpoint_every=2",
            ),
            "dppo": (  # DPPO's robomimic settings, sized to the budget
                "num_envs=10",
                "n_steps=50",
                "update_epochs=10",
                "clip_ploss_coef_base=0.001",
                "gamma=0.999",
                "batch_size=2500",
                "critic_warmup_iterations=2",
                "eval_every=0",
                "checkpoint_every=2",
            ),
            "fpo": (
                "num_envs=10",
                "n_steps=50",
                "gamma=0.999",
                "eval_stochastic=false",
                "eval_every=0",
                "checkpoint_every=2",
            ),
            "dsrl": (*DSRL_PUSH, "eval_every=0", "checkpoint_every=5000"),  # 0/1 success, as push
        },
        task_kwargs={"terminate_on_success": True},
        needs="robosuite",
    ),
    "hopper": TaskBench(
        task="hopper",
        metric="return",
        demos="medium",
        episodes=200,
        env_steps=230_000,  # 3 iterations of 40 x 500 decisions (238.7k env steps) for all
        eval_episodes=10,
        eval_envs=10,
        bc=_bc(
            *_DPPO_WINDOW,
            "policy.denoiser.hidden_dims=[512,512,512]",  # DPPO's Hopper MLP
            "policy.denoiser.time_embed_dim=16",
            "max_steps=5000",
            "checkpoint_every=5000",
            diffusion_steps=20,
        ),
        algos={
            # 80,000 env steps an iteration: evaluate and checkpoint after each
            "ppo": (
                *_PPO_FINETUNE,
                "num_envs=40",
                "n_steps=500",
                "eval_every=1",
                "checkpoint_every=1",
            ),
            "dppo": ("eval_every=1", "checkpoint_every=1"),  # the defaults are DPPO's Hopper
            "fpo": (
                "num_envs=40",
                "n_steps=500",
                "critic_warmup_iterations=0",
                "eval_every=1",
                "checkpoint_every=1",
            ),
            "dsrl": (
                "num_envs=8",
                "utd_ratio=0.5",
                "warmup_decisions=2000",
                "eval_every=80000",
                "checkpoint_every=80000",
            ),
        },
    ),
}
"""The full table (module docstring for the budgets)."""

SMOKE_BC = (
    "max_steps=20",
    "checkpoint_every=20",
    "val_every=10",
    "batch_size=32",
    "policy.denoiser.hidden_dims=[32,32,32]",
    "schedule.warmup_steps=2",
)
SMOKE_ALGOS = {
    "ppo": ("num_envs=2", "n_steps=16", "num_minibatches=2", "update_epochs=1", "bc_epochs=1"),
    "dppo": ("num_envs=2", "n_steps=8", "batch_size=16", "update_epochs=1"),
    "fpo": ("num_envs=2", "n_steps=8", "num_minibatches=2", "update_epochs=1"),
    "dsrl": (
        "num_envs=2",
        "warmup_decisions=16",
        "batch_size=16",
        "utd_ratio=1",
        "actor.hidden_dims=[16,16]",
        "critic_hidden_dims=[16,16]",
    ),
}
"""``--smoke``: one or two iterations of tiny networks, no critic warm-up."""


def smoke(bench: TaskBench) -> TaskBench:
    """``bench`` with tiny sizes everywhere (``--smoke``)."""
    no_warmup = ("critic_warmup_iterations=0",)
    algos = {a: (*bench.algos[a], *SMOKE_ALGOS[a]) for a in ALGOS}
    algos |= {a: (*algos[a], *no_warmup) for a in ("ppo", "dppo", "fpo")}
    return dataclasses.replace(
        bench,
        episodes=3,
        env_steps=256,
        eval_episodes=2,
        eval_envs=2,
        bc={kind: (*overrides, *SMOKE_BC) for kind, overrides in bench.bc.items()},
        algos=algos,
        medium_budget=2048,
        medium_overrides=("eval_episodes=1", "eval_envs=1"),
    )
