"""The quickstart's fine-tuning stage: DSRL steers the best cloned policy, then the same evaluation.

DSRL (:mod:`robopolicy.rl.dsrl`) is the fastest method that works on ``arm-push``: it keeps the
cloned policy frozen and learns, by SAC, which initial noise to give it. ``finetune_stage``
steers the best behaviour-cloning checkpoint for ``QuickstartConfig.finetune_env_steps``
environment steps into ``<out>/<base>-dsrl/`` (a DSRL run directory: steered checkpoints every
:data:`CHECKPOINT_EVERY` env steps, so a killed quickstart resumes inside the stage; curves
against env steps), then evaluates the final steered checkpoint exactly as the cloned policies
were evaluated (:func:`sim.evaluate.evaluate_policy`, the same seeds, envs and videos), and
writes ``eval.json`` there::

    {"name": "diffusion+dsrl", "base_policy": "diffusion", "success_rate": ..., ...,
     "env_steps": 24032, "steps": 10, "train_s": ..., "run": ..., "checkpoint": ...,
     "base_checkpoint": ..., "dsrl_eval_before": {...}, "dsrl_eval_after": {...}}

``dsrl_eval_before`` is DSRL's own measure of the base on the same seeds through the
deterministic sampler it steers (``steps`` of the base per sample, Gaussian noise), so a gain can
be told apart from the change of sampler. A run whose ``eval.json`` covers the budget is not
repeated (one written before the rename spells ``steps`` ``base_steps``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from robopolicy.atomic import atomic_write_json
from robopolicy.rl.dsrl_config import ARM_PUSH

log = logging.getLogger(__name__)
TASK = "arm-push"
CHECKPOINT_EVERY = 4000
"""Env steps between the stage's checkpoints (and its evaluations, the curve's points)."""
SETTINGS = (*ARM_PUSH, f"eval_every={CHECKPOINT_EVERY}", f"checkpoint_every={CHECKPOINT_EVERY}")
"""DSRL's ``arm-push`` settings (those of ``tests/rl/test_dsrl.py``'s slow test; the reasons
are in :mod:`robopolicy.rl.dsrl`); the budget and the evaluation come from the quickstart's
config, its ``finetune_overrides`` go last."""


def finetune_stage(out: Path, base: str, bc: dict[str, Any], config: Any) -> dict[str, Any]:
    """Steer policy ``base`` (its BC figures ``bc``, with ``checkpoint``) with DSRL, evaluate
    the result like the cloned policies; return the figures (module docstring)."""
    from robopolicy.config import apply_overrides, renamed
    from robopolicy.policies import load_policy
    from robopolicy.rl.dsrl import DSRLConfig, finetune
    from sim.evaluate import evaluate_policy
    from sim.rollout import SimRollouts

    run = out / f"{base}-dsrl"
    report = run / "eval.json"
    if report.exists():
        figures = renamed(json.loads(report.read_text(encoding="utf-8")))
        if figures["env_steps"] >= config.finetune_env_steps:
            log.info("fine-tuned and evaluated already (%d env steps)", figures["env_steps"])
            return figures
    base_checkpoint = str(Path(bc["checkpoint"]).resolve())
    dsrl = apply_overrides(
        DSRLConfig(),
        [
            *SETTINGS,
            f"total_env_steps={config.finetune_env_steps}",
            f"eval_episodes={config.eval_episodes}",
            f"eval_seed={config.eval_seed}",
            f"eval_envs={config.num_envs}",
            *config.finetune_overrides,
        ],
    )
    card = {"task": TASK, "command": f"robopolicy quickstart --out {out}"}
    result = finetune(
        dsrl, checkpoint=base_checkpoint, rollouts=SimRollouts(TASK), out=run, card=card
    )
    figures = evaluate_policy(
        load_policy(result["checkpoint"]),
        TASK,
        episodes=config.eval_episodes,
        seed=config.eval_seed,
        num_envs=config.num_envs,
        videos=config.videos,
        video_dir=run / "videos",
        task_kwargs={"render_size": config.render_size} if config.render_size else None,
    )
    figures.pop("per_episode")
    figures |= {
        "name": f"{base}+dsrl",
        "base_policy": base,
        "base_checkpoint": base_checkpoint,
        "run": str(run),
        "checkpoint": result["checkpoint"],
        "env_steps": result["env_steps"],
        "steps": dsrl.steps,
        "train_s": result["seconds"] - result["timing"]["eval"],
        "dsrl_eval_before": result["eval_before"],
        "dsrl_eval_after": result["eval_after"],
    }
    atomic_write_json(report, figures)
    return figures
