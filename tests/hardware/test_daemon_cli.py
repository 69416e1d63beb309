"""``robopolicy control`` end to end: the real ``robopolicy serve`` on a stored fixture (an
end-effector policy, so the arm's IK is in the loop) with ``--delay-ms`` making every inference
overrun, a dry run of a UR arm (SimArm behind the UR's limits) on the fake server, and the
mistakes a user can fix, refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hardware.commands import TESTING_FAULT_CHANNEL
from hardware.daemon.config import ControlConfig
from hardware.daemon.daemon import limits_for
from hardware.daemon.log import read_ticks
from hardware.daemon.mirror import MirroredSim
from hardware.sim_arm import arm6_spec
from hardware.testing.processes import DaemonProcess, fake_server, policy_server
from hardware.testing.scorecard import violations
from hardware.ur_arm import ur_spec
from robopolicy.cli import main as cli
from tests.hardware.daemon_helpers import CENTER

FIXTURE = Path(__file__).resolve().parents[1] / "policies" / "fixtures" / "diffusion_mlp"


def run(tmp_path: Path, server: str, *args: str) -> tuple[dict, dict]:
    daemon = DaemonProcess(
        [
            "--server",
            server,
            "--json",
            "--duration",
            "2",
            "--rate",
            "100",
            "--out",
            str(tmp_path / "ticks.zarr"),
            "--estop-latch",
            str(tmp_path / "estop"),
            *args,
        ]
    )
    assert daemon.wait(120) == 0, daemon.stderr()[-3000:]
    return json.loads(daemon.stdout()), read_ticks(tmp_path / "ticks.zarr")


@pytest.mark.slow
def test_control_with_the_real_server_an_ee_policy_and_overrunning_inference(
    tmp_path: Path,
) -> None:
    server = policy_server(FIXTURE, "--fps", "10", "--delay-ms", "150")
    try:
        summary, ticks = run(tmp_path, f"{server.host}:{server.port}", "--robot", "sim")
    finally:
        server.stop()
    stats = summary["stats"]
    assert summary["reason"] == "duration" and stats["chunks_accepted"] >= 3
    assert stats["dropped_actions"] >= 2 * stats["chunks_accepted"]  # 150 ms late: 2 overdue
    limits = limits_for(arm6_spec(), ControlConfig())
    assert violations(ticks, limits, 0.01) == (0, 0)
    moved = np.ptp(ticks["sent"][:, :6][np.isfinite(ticks["sent"][:, 0])], axis=0).max()
    assert moved > 0.01  # the IK turned the policy's ee targets into motion


@pytest.mark.slow
def test_a_dry_run_drives_simarm_behind_a_real_arms_limits(tmp_path: Path) -> None:
    spec = ur_spec()
    center = MirroredSim(spec).to_real(CENTER[:6])  # where the dry-run arm starts, UR units
    server = fake_server(center, "--amplitude", "0.25")  # within one period's reach of it
    try:
        summary, ticks = run(tmp_path, f"{server.host}:{server.port}", "--robot", "ur", "--dry-run")
    finally:
        server.stop()
    assert summary["reason"] == "duration" and summary["stats"]["chunks_accepted"] > 5
    assert ticks["sent"].shape[1] == spec.action_size == 6  # the UR's joints, no gripper
    sent = ticks["sent"][np.isfinite(ticks["sent"][:, 0])]
    assert (sent >= np.array(spec.lower)).all() and (sent <= np.array(spec.upper)).all()
    limits = limits_for(spec, ControlConfig())
    assert violations(ticks, limits, 0.01) == (0, 0)
    assert np.ptp(ticks["measured"][:, 0]) > 0.1  # the simulated arm followed


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give the policy server as --server HOST:PORT"),
        (["--server", "localhost"], "--server must be HOST:PORT"),
        (["--server", "127.0.0.1:9", "--robot", "feetech"], "needs --calibration FILE"),
        (["--server", "127.0.0.1:9", "--rate", "1000"], "rate_hz must be in"),
        (["--server", "127.0.0.1:9", "stop_timeout=2"], "did you mean 'stop_timeout_s'"),
        (["--server", "127.0.0.1:9", "--exit", "explode"], "exit_behaviour must be one of"),
    ],
    ids=["no-server", "bad-address", "no-calibration", "rate", "typo", "exit"],
)
def test_control_refuses_what_the_user_can_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """One ``error:`` line naming the fix, exit status 2, and the arm never touched."""
    assert cli(["control", "--estop-latch", str(tmp_path / "estop"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_control_will_not_start_while_the_estop_is_latched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latch = ["--estop-latch", str(tmp_path / "estop")]
    assert cli(["control", "--estop", *latch]) == 0
    assert json.loads(capsys.readouterr().out)["estop"] == "latched"
    # refused before any policy server is asked (nothing listens on port 9)
    assert cli(["control", "--server", "127.0.0.1:9", *latch]) == 2
    assert "clear-estop" in capsys.readouterr().err
    assert cli(["control", "--clear-estop", *latch]) == 0
    assert json.loads(capsys.readouterr().out)["was"]["source"] == "operator"


def test_the_testing_fault_channel_never_reaches_a_real_arm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault campaign's channel into the daemon is refused for any driver but SimArm."""
    monkeypatch.setenv(TESTING_FAULT_CHANNEL, "1")
    latch = ["--estop-latch", str(tmp_path / "estop")]
    real = ["--robot", "ur", "--port", "192.0.2.1"]  # never contacted: refused before connecting
    assert cli(["control", "--server", "127.0.0.1:9", *real, *latch]) == 2
    assert "fault channel drives a simulated arm only" in capsys.readouterr().err
