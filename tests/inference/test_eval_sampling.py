"""``robopolicy eval`` on the inference engine: --sampler, --steps, --backend, --warm-start and
--device, each named in the JSON report, and a one-line error for each choice it cannot run.

Checkpoints: the untrained arm-push policies of ``push_teacher`` (To 2, Tp 8, Ta 4: an episode
of L steps is ceil(L / 4) chunks). One env runs in process: each evaluation takes a fraction of a
second.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from robopolicy.cli import main
from tests.inference.toy import needs_onnx


def evaluate(capsys, checkpoint, *flags: str, episodes: int = 2, num_envs: int = 1) -> dict:
    args = ["eval", str(checkpoint), "--episodes", str(episodes), "--seed", "5"]
    code = main([*args, "--num-envs", str(num_envs), "--videos", "0", "--json", *flags])
    assert code == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def chunks(figures: dict) -> int:
    """Chunks sampled for the episodes of a one-env evaluation."""
    return sum(math.ceil(e["length"] / 4) for e in figures["per_episode"])


def choice(figures: dict) -> tuple:
    return tuple(figures[k] for k in ("sampler", "steps", "backend", "warm_start", "device"))


def test_the_engine_backends_run_the_chosen_sampler_and_onnx_matches_torch(push_teacher, capsys):
    flow = push_teacher("flow")
    eager = evaluate(capsys, flow, "--backend", "torch", "--steps", "4", "--device", "cpu")
    assert choice(eager) == ("euler", 4, "torch", None, "cpu")
    assert eager["net_evals"] == 4 * chunks(eager)
    midpoint = evaluate(capsys, flow, "--backend", "torch", "--steps", "4", "--sampler", "midpoint")
    assert choice(midpoint)[:3] == ("midpoint", 4, "torch")
    assert midpoint["net_evals"] == 2 * 4 * chunks(midpoint)  # two evaluations per step
    needs_onnx()
    graph = evaluate(capsys, flow, "--backend", "onnx", "--steps", "4")
    assert choice(graph) == ("euler", 4, "onnx", None, "cpu")
    scores = [[e["score"] for e in f["per_episode"]] for f in (eager, graph, midpoint)]
    assert scores[1] == pytest.approx(scores[0], abs=1e-5)  # same seed, same noise, same ODE
    assert scores[2] != pytest.approx(scores[0], abs=1e-5)  # (the scores do follow the actions)


def test_dpmpp_runs_on_a_diffusion_checkpoint_and_auto_picks_the_device(push_teacher, capsys):
    flags = ("--backend", "torch", "--sampler", "dpmpp", "--steps", "3")
    figures = evaluate(capsys, push_teacher("diffusion"), *flags)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert choice(figures) == ("dpmpp", 3, "torch", None, device)
    assert figures["net_evals"] == 3 * chunks(figures)


def test_warm_start_runs_m_steps_except_on_each_episodes_first_chunk(push_teacher, capsys):
    flow, flags = push_teacher("flow"), ("--backend", "torch", "--steps", "4", "--device", "cpu")
    cold = evaluate(capsys, flow, *flags, episodes=4, num_envs=2)
    warm = evaluate(capsys, flow, *flags, "--warm-start", "1", episodes=4, num_envs=2)
    assert choice(warm) == ("euler", 4, "torch", 1, "cpu")
    for figures in (cold, warm):  # two envs side by side, two 80-step episodes each: 40 chunks
        assert [e["length"] for e in figures["per_episode"]] == [80] * 4
    assert cold["net_evals"] == 4 * 40
    assert warm["net_evals"] == 4 * 2 + 1 * 38  # each env's two episodes begin cold
    assert [e["score"] for e in warm["per_episode"]] != [e["score"] for e in cold["per_episode"]]


@pytest.mark.parametrize(
    ("kind", "flags", "message"),
    [
        ("flow", ["--backend", "torch", "--sampler", "dpmpp"], "--sampler: no flow sampler"),
        ("diffusion", ["--sampler", "euler"], "--sampler: sampler must be one of ['ddim', "),
        ("flow", ["--warm-start", "2"], "--warm-start runs on the inference engine"),
        ("flow", ["--backend", "torch", "--steps", "4", "--warm-start", "5"], "--warm-start: "),
        ("diffusion", ["--backend", "torch", "--steps", "101"], "--steps: steps must be in"),
        ("flow", ["--steps", "0"], "--steps must be >= 1"),
        ("flow", ["--backend", "onx"], "--backend onx: no backend 'onx' (did you mean 'onnx'?)"),
        ("flow", ["--backend", "onnx", "no-onnx"], "pip install robopolicy[onnx]"),
        ("flow", ["--device", "cuda", "no-cuda"], "--device cuda: device 'cuda': this machine"),
    ],
)
def test_a_choice_the_checkpoint_cannot_run_is_one_line_naming_the_flag(
    push_teacher, capsys, monkeypatch, kind, flags, message
):
    if "no-onnx" in flags:
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    if "no-cuda" in flags:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    flags = [f for f in flags if not f.startswith("no-")]
    assert main(["eval", str(push_teacher(kind)), "--episodes", "1", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_help_names_every_sampling_flag(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # whatever the terminal's width
    for words in (
        "dpmpp",
        "onnx",
        "robopolicy[onnx]",
        "--warm-start M",
        "warm steps",
        "{auto,cpu,cuda}",
    ):
        assert words in shown
