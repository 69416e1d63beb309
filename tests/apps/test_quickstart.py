"""The main job end to end (tiny), and the train / eval command lines around it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from robopolicy.cli import main
from robopolicy.policies import load_policy, read_card
from sim.gl import rendering_problem


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["quickstart", "--tiny", "--out", str(out), "--json"]) == 0
    return out, json.loads(stdout.getvalue())


def test_tiny_quickstart_writes_report_figures_and_checkpoints(tiny_run):
    out, result = tiny_run
    assert 0.0 <= result["bc_success"] <= 1.0 and result["bc_policy"] in ("flow", "diffusion")
    for kind in ("flow", "diffusion"):
        figures = result["policies"][kind]
        assert result[f"{kind}_success"] == figures["success_rate"]
        low, high = figures["success_rate_ci95"]
        assert low <= figures["success_rate"] <= high
        assert figures["episodes"] == 2 and figures["step"] == 24
        latest = out / kind / "checkpoints" / "latest"
        policy = load_policy(latest)
        assert type(policy).type_name == kind
        card = read_card(latest)
        assert card["task"] == "arm-push" and card["step"] == 24
        assert card["data"] == str((out / "demos.zarr").resolve())
        assert "quickstart" in card["command"] and "val/loss" in card["metrics"]
        assert (out / kind / "curves.png").stat().st_size > 0
        if not rendering_problem():
            assert [Path(v).name for v in figures["videos"]] == ["episode-100000.mp4"]
    assert set(result["expert"]) == {"imperfect", "clean"}
    report = (out / "report.md").read_text()
    assert "| flow |" in report and "| diffusion |" in report and "curves.png" in report

    # fine-tuning: DSRL steered the best cloned policy, evaluated on the same episodes
    tuned, best = result["finetuned"], result["bc_policy"]
    assert tuned["name"] == result["finetuned_policy"] == f"{best}+dsrl"
    assert tuned["base_policy"] == best and tuned["env_steps"] >= 160
    assert result["finetuned_success"] == tuned["success_rate"]
    assert 0.0 <= tuned["success_rate"] <= 1.0 and tuned["train_s"] > 0
    assert tuned["episodes"] == result["policies"][best]["episodes"] == 2
    assert tuned["seed"] == result["policies"][best]["seed"] == 100_000
    assert tuned["dsrl_eval_before"]["episodes"] == tuned["dsrl_eval_after"]["episodes"] == 2
    steered = load_policy(tuned["checkpoint"])
    assert type(steered).type_name == "steered" and steered.config.steps == 2
    card = read_card(tuned["checkpoint"])
    assert card["algorithm"] == "dsrl" and card["base_checkpoint"] == tuned["base_checkpoint"]
    assert tuned["base_checkpoint"] == str(Path(result["policies"][best]["checkpoint"]).resolve())
    assert (out / f"{best}-dsrl" / "curves.png").stat().st_size > 0
    assert f"## Fine-tuning: {best}+dsrl" in report and f"| after: {best}+dsrl |" in report
    better = tuned["success_rate"] > result["bc_success"]
    assert result["served_policy"] == (tuned["name"] if better else best)

    serving = result["serving"]  # the last stage served the chosen policy on loopback
    assert serving["policy"] == result["served_policy"] and serving["requests"] == 20
    assert 0 < serving["server_inference_p50_ms"] <= serving["p50_ms"] <= serving["p99_ms"]
    assert "Served on 127.0.0.1" in report
    assert (out / "curves.png").stat().st_size > 0
    saved = json.loads((out / "quickstart.json").read_text())
    assert saved["bc_success"] == result["bc_success"]
    assert saved["finetuned_success"] == result["finetuned_success"]


def test_quickstart_resumes_without_redoing_finished_stages(tiny_run, capsys):
    out, first = tiny_run
    reports = [out / "flow" / "eval.json", out / f"{first['bc_policy']}-dsrl" / "eval.json"]
    mtimes = [path.stat().st_mtime_ns for path in reports]
    assert main(["quickstart", "--tiny", "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["policies"] == first["policies"]  # nothing retrained or re-evaluated
    assert again["finetuned"] == first["finetuned"]  # nor fine-tuned again
    assert [path.stat().st_mtime_ns for path in reports] == mtimes
    assert again["demos"]["new_episodes"] == 0


def test_a_steered_policy_is_served_by_its_own_sample(tiny_run, tmp_path):
    from apps.quickstart.serve import serve_stage

    _, result = tiny_run
    tuned = result["finetuned"]
    chosen = {"served_policy": tuned["name"], "policies": {tuned["name"]: tuned}}
    figures = serve_stage(tmp_path, chosen, requests=5, threads=1)
    base = "ddim" if tuned["base_policy"] == "diffusion" else "euler"
    assert figures["policy"] == tuned["name"] and figures["backend"] == "policy"
    assert (figures["sampler"], figures["steps"]) == (f"steered {base}", 2)
    assert 0 < figures["server_inference_p50_ms"] <= figures["p50_ms"] <= figures["p99_ms"]


def test_eval_command_reports_success_with_an_interval(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    checkpoint = out / "flow" / "checkpoints" / "latest"
    args = ["eval", str(checkpoint), "--episodes", "2", "--seed", "3", "--num-envs", "2"]
    assert main([*args, "--videos", "0", "--json"]) == 0  # the task comes from the card
    figures = json.loads(capsys.readouterr().out)
    assert figures["task"] == "arm-push" and figures["episodes"] == 2
    assert len(figures["success_rate_ci95"]) == 2 and "mean_max_score" in figures
    assert [e["seed"] for e in figures["per_episode"]] == [3, 4]
    assert (figures["sampler"], figures["steps"]) == ("euler", 10)  # the checkpoint's own
    assert main([*args, "--videos", "0", "--json", "--sampler", "midpoint", "--steps", "2"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["sampler"], figures["steps"]) == ("midpoint", 2)
    assert main([*args, "--sampler", "midpont"]) == 2
    assert "--sampler: sampler must be one of ['euler', 'midpoint']" in capsys.readouterr().err


def test_train_command_overrides_and_help(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    base = ["train", "--task", "arm-push", "--data", str(out / "demos.zarr")]
    code = main([*base, "--out", str(tmp_path / "bad"), "optim.lrr=0.1"])
    assert code == 2 and "did you mean 'lr'" in capsys.readouterr().err
    code = main([*base, "--out", str(tmp_path / "bad"), "--preset", "arm-psh"])
    assert code == 2 and "did you mean 'arm-push'" in capsys.readouterr().err
    small = ["max_steps=3", "policy.denoiser.hidden_dims=[8,8,8]", "batch_size=16"]
    code = main([*base, "--out", str(tmp_path / "ok"), "--no-eval", "--json", *small])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["step"] == 3 and summary["latest"].endswith("step-0000003")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    for name in ("arm-push", "arm-pick-place", "pusht", "pusht-image"):
        assert name in shown
