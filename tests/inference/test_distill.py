"""Distillation: a few hundred steps give a student closer to the teacher's many-step samples
than the teacher's own few-step samples; ``robopolicy distill`` writes an ordinary checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from robopolicy.inference.distill import DistillConfig, distill
from tests.inference.toy import toy_batch


@pytest.mark.parametrize(("kind", "steps"), [("diffusion", 1), ("flow", 2)])
def test_a_short_distillation_beats_the_teachers_own_few_steps(toy, kind, steps):
    config = DistillConfig(
        steps=steps, train_steps=250, batch_size=96, lr=3e-3, teacher_steps=8, eval_size=128
    )
    student, figures = distill(toy(kind), lambda g: toy_batch(96, g), config)
    assert figures["student_rms"] < 0.6 * figures["teacher_k_step_rms"], figures
    c = student.config
    assert c.steps == steps
    obs = toy_batch(4, torch.Generator().manual_seed(9))["obs"]
    assert student.sample(obs).shape == (4, 8, 2)


def test_distill_command_writes_an_ordinary_checkpoint(push_teacher, tmp_path, capsys):
    import robopolicy.inference.commands  # noqa: F401  (registers it where entry points are stale)
    from robopolicy.cli import main
    from robopolicy.policies import load_policy, read_card

    teacher = push_teacher("diffusion")
    overrides = ["train_steps=10", "batch_size=16", "teacher_steps=3", "eval_size=8"]
    out = tmp_path / "student"
    code = main(["distill", str(teacher), "--out", str(out), "--steps", "2", *overrides, "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["student_rms"] >= 0
    student = load_policy(out)
    assert student.config.steps == 2 and student.config.prediction_type == "sample"
    card = read_card(out)
    assert card["task"] == "arm-push" and card["distill_config"]["train_steps"] == 10
    assert card["distilled_from"] == str(teacher.resolve())
