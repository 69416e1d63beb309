"""Every script of ``examples/`` runs, as a user runs it, at a tiny budget (seconds each).

Each runs as a subprocess in one scratch directory, so the scripts find each other's output
where a user would: ``1_train_policy.py`` leaves ``out/train``, which the fine-tuning,
plotting and serving examples start from. The tests check what each produces: its files and the
figures it prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from robopolicy.data import EpisodeStore
from robopolicy.policies import load_policy, read_card

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 300


def run_example(workdir: Path, script: str, *args: str) -> str:
    """Run ``examples/<script>`` in ``workdir``; its stdout (the test fails on a nonzero exit)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def success_rates(stdout: str) -> list[float]:
    """The success rates a script printed (``success rate 0.50`` or ``0.50 -> 0.75``)."""
    found = re.findall(r"success rate (\d\.\d+)(?: -> (\d\.\d+))?", stdout)
    return [float(x) for pair in found for x in pair if x]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examples")


@pytest.fixture(scope="module")
def trained(workdir: Path) -> str:
    """``1_train_policy.py`` at a tiny budget: 6 demonstrations, 24 steps, 2 episodes."""
    args = ("--demos", "6", "--steps", "24", "--width", "32", "--eval-episodes", "2")
    return run_example(workdir, "1_train_policy.py", *args)


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    tested = [
        "1_train_policy.py",
        "2_finetune_policy.py",
        "3_evaluate_and_plot.py",
        "4_custom_task.py",
        "5_drive_served_policy.py",
    ]
    assert scripts == tested


def test_train_collects_trains_and_evaluates(workdir, trained):
    assert EpisodeStore.open(workdir / "out/demos/arm-push.zarr").n_episodes == 6
    latest = workdir / "out/train/checkpoints/latest"
    assert type(load_policy(latest)).type_name == "flow"
    card = read_card(latest)
    assert card["task"] == "arm-push" and card["step"] == 24
    assert "eval/success_rate" in card["metrics"]
    assert f"checkpoint {latest.resolve()}" in trained
    [rate] = success_rates(trained)
    assert rate == card["metrics"]["eval/success_rate"]
    assert (workdir / "out/train/curves.png").stat().st_size > 0


def test_finetune_runs_dsrl_from_the_trained_checkpoint(workdir, trained):
    tiny = ["--env-steps", "160", "--eval-episodes", "2", "num_envs=2", "warmup_decisions=16"]
    tiny += ["batch_size=16", "eval_every=80", "checkpoint_every=80"]
    stdout = run_example(workdir, "2_finetune_policy.py", *tiny)
    before, after = success_rates(stdout)
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    assert "dsrl: 160 env steps" in stdout
    checkpoint = workdir / "out/finetune/checkpoints/step-0000160"
    card = read_card(checkpoint)
    assert card["task"] == "arm-push" and card["algorithm"] == "dsrl"
    assert card["base_checkpoint"] == str((workdir / "out/train/checkpoints/latest").resolve())
    assert type(load_policy(checkpoint)).type_name == "steered"
    assert (workdir / "out/finetune/curves.png").stat().st_size > 0


def test_evaluate_and_plot_compares_the_checkpoints(workdir, trained):
    stdout = run_example(workdir, "3_evaluate_and_plot.py", "--episodes", "2", "--envs", "2")
    lines = [line for line in stdout.splitlines() if line.startswith("step-")]
    assert [line.split(":")[0] for line in lines] == ["step-0000012", "step-0000024"]
    assert all(0.0 <= rate <= 1.0 for rate in success_rates(stdout))
    png = (workdir / "out/eval/success.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_a_custom_task_is_registered_collected_trained_and_evaluated(workdir):
    tiny = ("--demos", "10", "--steps", "50", "--width", "32", "--episodes", "4")
    stdout = run_example(workdir, "4_custom_task.py", *tiny)
    assert "point-reach: state (4,), action (2,)" in stdout
    store = EpisodeStore.open(workdir / "out/point-reach/demos.zarr")
    assert store.n_episodes == 10 and store.attrs["tasks"] == ["point-reach"]
    assert "expert success 10/10" in stdout  # the scripted expert reaches every goal
    latest = workdir / "out/point-reach/run/checkpoints/latest"
    assert read_card(latest)["task"] == "point-reach" and read_card(latest)["step"] == 50
    [rate] = success_rates(stdout)
    assert rate in (0.0, 0.25, 0.5, 0.75, 1.0)  # of 4 episodes


def test_a_served_policy_drives_the_task(workdir, trained):
    stdout = run_example(workdir, "5_drive_served_policy.py", "--episodes", "2")
    assert "serving flow on 127.0.0.1:" in stdout and "Ta 4" in stdout
    chunks, steps = map(int, re.search(r"(\d+) chunks for (\d+) steps", stdout).groups())
    assert 2 <= steps <= 2 * 80  # two episodes of at most 80 steps
    assert steps / 4 <= chunks <= steps / 4 + 2  # a chunk every Ta = 4 steps, per episode
    [rate] = success_rates(stdout)
    assert rate in (0.0, 0.5, 1.0)
