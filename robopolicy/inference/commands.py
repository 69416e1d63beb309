"""``robopolicy distill CKPT --out DIR [--steps 1|2|4] [KEY=VALUE ...]``: a few-step student.

Trains on the teacher's training data (the checkpoint card's ``data``, or ``--data``) with the
teacher's window and the split its ``train_config`` names, then writes an ordinary checkpoint
at ``--out`` (``load_policy`` and ``robopolicy eval`` work on it; its config has the student's
step count). Figures (student vs. the teacher's own k-step samples, both against the teacher's
many-step samples) go to stdout, as one JSON document with ``--json``; progress to stderr.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from robopolicy.cli import arg, command, print_json
from robopolicy.errors import RobopolicyError

log = logging.getLogger(__name__)


@command(
    "distill",
    help="distill a many-step diffusion or flow checkpoint into a 1-4-step student "
    "(consistency distillation for diffusion, shortcut-style for flow); every DistillConfig "
    "field is overridable as KEY=VALUE (e.g. train_steps=3000 lr=1e-3)",
    args=(
        arg("checkpoint", metavar="CKPT", help="teacher checkpoint directory"),
        arg("--out", required=True, help="where the student checkpoint goes"),
        arg("--steps", type=int, choices=(1, 2, 3, 4), default=None, help="student steps (1)"),
        arg("--data", default=None, help="episode store (default: the card's data)"),
        arg("overrides", nargs="*", metavar="KEY=VALUE", help="DistillConfig overrides"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ),
)
def distill_command(args: argparse.Namespace) -> int:
    import torch

    from robopolicy.config import apply_overrides, to_dict
    from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig
    from robopolicy.inference.distill import DistillConfig, distill, recipe_of
    from robopolicy.policies import load_policy, read_card, save_policy

    started = time.perf_counter()
    teacher_path = Path(args.checkpoint)
    config = apply_overrides(DistillConfig(), list(args.overrides))
    if args.steps is not None:
        config = apply_overrides(config, [f"steps={args.steps}"])
    card = read_card(teacher_path)
    data = args.data or card.get("data")
    if not data:
        raise RobopolicyError(f"{teacher_path}: its card names no training data; give --data")
    teacher = load_policy(teacher_path)
    try:
        recipe_of(teacher)
    except ValueError as exc:
        raise RobopolicyError(str(exc)) from None
    c = teacher.config
    split = card.get("train_config", {}).get("data", {})
    dataset = SequenceDataset(
        SequenceDatasetConfig(
            path=data,
            obs_keys=c.obs_keys,
            image_keys=c.image_keys,
            action_key=split.get("action_key", "action"),
            n_obs_steps=c.n_obs_steps,
            horizon=c.horizon,
            n_action_steps=c.n_action_steps,
            val_ratio=split.get("val_ratio", 0.0),
            seed=split.get("split_seed", 42),
        )
    )
    size = min(config.batch_size, len(dataset))

    def batches(generator: torch.Generator) -> dict:
        return dataset[torch.randint(0, len(dataset), (size,), generator=generator)]

    log.info(
        "distilling %s (%d windows) into a %d-step student",
        teacher_path,
        len(dataset),
        config.steps,
    )
    student, figures = distill(teacher, batches, config, progress=True)
    seconds = round(time.perf_counter() - started, 1)
    student_card = {
        key: card[key] for key in ("task", "fps", "data", "train_config") if key in card
    } | {
        "command": args.command_line,
        "distilled_from": str(teacher_path.resolve()),
        "distill_config": to_dict(config),
        "metrics": figures,
        "seconds": seconds,
    }
    save_policy(student, args.out, card=student_card)
    summary = {"out": str(Path(args.out).resolve()), "steps": config.steps, **figures}
    summary["seconds"] = seconds
    if args.json:
        print_json(summary)
    else:
        print(
            f"{summary['out']}: {config.steps}-step student in {seconds} s; RMS to the teacher's "
            f"{figures['teacher_steps_ref']:.0f}-step samples {figures['student_rms']:.4f} "
            f"(teacher's own {config.steps} steps: {figures['teacher_k_step_rms']:.4f})"
        )
    return 0
