"""The fault-injection scorecard (``docs/RELIABILITY.md``): faults injected and survived,
bad inputs tried and rejected, and the harm counts that must read zero."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hardware.limits import SafetyLimits
from robopolicy.atomic import atomic_write_json


def _counters() -> collections.defaultdict[str, collections.Counter[str]]:
    return collections.defaultdict(collections.Counter)


@dataclasses.dataclass
class Scorecard:
    """Counts of one fault-injection campaign; :attr:`harm` must be all zeros."""

    faults: collections.defaultdict[str, collections.Counter[str]] = dataclasses.field(
        default_factory=_counters
    )
    """Per fault class: ``injected`` and ``survived``."""
    recovery_s: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    """Per fault class: seconds from the fault's end to the next fresh chunk, when survived."""
    bad_inputs: collections.defaultdict[str, collections.Counter[str]] = dataclasses.field(
        default_factory=_counters
    )
    """Per kind of bad input: ``tried`` (counted where it was made), ``rejected`` and by whom
    (``rejected_server``, ``rejected_client``, ``rejected_daemon``, ...), and ``passed``:
    damaged replies that still passed every check (valid and within limits), by the field the
    damage landed in (``passed_actions``, ``passed_timing``, ...)."""
    server_crashes: int = 0
    """Policy servers that died without being killed on purpose."""
    daemon_crashes: int = 0
    """Daemon processes that failed to start, or ended without their run summary or with an
    exit status other than a run's (0, 3, 4): a crash, a traceback, a kill."""
    unsafe_commands: int = 0
    """Writes in the daemons' tick logs whose command was non-finite or outside the joint
    limits or the gripper range (:func:`unsafe_writes`)."""
    commands_checked: int = 0
    """Writes the daemons attempted, read from their tick logs; each one checked for
    :attr:`unsafe_commands`."""
    limit_violations: int = 0
    """Consecutive written commands further apart than the step/velocity bounds allow."""
    bad_values_executed: int = 0
    """Ticks whose planned target was non-finite or outside the joint limits."""
    log_ticks_lost: int = 0
    """Ticks recorded by the daemons but missing from their tick logs."""
    episodes_logged: int = 0
    """Tick-log segments committed and read back."""
    ticks_logged: int = 0
    """Ticks read back from the tick logs."""
    sessions: int = 0
    """Daemon runs."""
    seconds: float = 0.0
    """Wall time of the campaign."""

    def fault(self, kind: str, survived: bool, recovery_s: float | None = None) -> None:
        """Count one injected fault of ``kind``."""
        self.faults[kind]["injected"] += 1
        self.faults[kind]["survived"] += int(survived)
        if recovery_s is not None:
            self.recovery_s[kind].append(recovery_s)

    @property
    def harm(self) -> dict[str, int]:
        return {
            "unsafe_commands": self.unsafe_commands,
            "limit_violations": self.limit_violations,
            "bad_values_executed": self.bad_values_executed,
            "server_crashes": self.server_crashes,
            "daemon_crashes": self.daemon_crashes,
            "log_ticks_lost": self.log_ticks_lost,
        }

    @property
    def passed(self) -> bool:
        """Every fault survived and no harm done."""
        survived = all(c["survived"] == c["injected"] for c in self.faults.values())
        return survived and not any(self.harm.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "faults": {
                kind: {**c, "recovery_s_max": round(max(self.recovery_s[kind]), 3)}
                if self.recovery_s[kind]
                else dict(c)
                for kind, c in sorted(self.faults.items())
            },
            "bad_inputs": {k: dict(v) for k, v in sorted(self.bad_inputs.items())},
            "harm": self.harm,
            "passed": self.passed,
            "commands_checked": self.commands_checked,
            "episodes_logged": self.episodes_logged,
            "ticks_logged": self.ticks_logged,
            "sessions": self.sessions,
            "seconds": round(self.seconds, 1),
        }

    def write(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    def table(self) -> str:
        lines = [f"{'fault class':<22} {'injected':>8} {'survived':>8} {'recovery max':>13}"]
        for kind, c in sorted(self.faults.items()):
            times = self.recovery_s[kind]
            slowest = f"{max(times):>11.2f} s" if times else f"{'-':>13}"
            lines.append(f"{kind:<22} {c['injected']:>8} {c['survived']:>8} {slowest}")
        lines += ["", f"{'bad input':<22} {'tried':>8} {'rejected':>8} {'passed':>8}  details"]
        for kind, c in sorted(self.bad_inputs.items()):
            details = "; ".join(
                f"{what} " + ", ".join(f"{k.removeprefix(prefix)} {v}" for k, v in items)
                for what, prefix in (("rejected by", "rejected_"), ("passed in", "passed_"))
                if (items := [(k, v) for k, v in sorted(c.items()) if k.startswith(prefix) and v])
            )
            lines.append(
                f"{kind:<22} {c['tried']:>8} {c['rejected']:>8} {c['passed']:>8}  {details}"
            )
        lines.append("")
        for name, value in self.harm.items():
            lines.append(f"{name.replace('_', ' '):<22} {value:>8}")
        lines.append(f"{'commands checked':<22} {self.commands_checked:>8}")
        lines.append(
            f"{'episodes / ticks logged':<22} {self.episodes_logged:>8} {self.ticks_logged:>8}"
        )
        lines.append(f"{'sessions / seconds':<22} {self.sessions:>8} {self.seconds:>8.1f}")
        return "\n".join(lines)


def violations(
    ticks: dict[str, np.ndarray], limits: SafetyLimits, period: float
) -> tuple[int, int]:
    """From a tick log: (consecutive writes beyond the per-tick step or speed bound, ticks
    whose planned target was non-finite or outside the joint limits)."""
    n = limits.dof
    sent = ticks["sent"][:, :n]
    written = np.isfinite(sent).all(axis=1)
    bound = np.minimum(limits.arrays["max_step"], limits.arrays["max_velocity"] * period) + 1e-9
    steps = np.abs(np.diff(sent[written], axis=0))
    too_far = int((steps > bound).any(axis=1).sum())
    planned = ticks["commanded"][:, :n][ticks["mode"] == 0]
    known = ~np.isnan(planned).all(axis=1)
    planned = planned[known]
    outside = (
        ~np.isfinite(planned)
        | (planned < limits.arrays["lower"])
        | (planned > limits.arrays["upper"])
    )
    return too_far, int(outside.any(axis=1).sum())


def unsafe_writes(
    ticks: dict[str, np.ndarray], limits: SafetyLimits, tolerance: float = 1e-9
) -> tuple[int, int]:
    """From a tick log: (writes, unsafe writes). A tick wrote where its ``write_time`` is
    known; the write is unsafe when the command the daemon gave the driver (``safe``) is
    non-finite or outside the joint limits or the gripper range (beyond ``tolerance``), or when
    what the driver reports it wrote (``sent``) is outside them. (The exit behaviour's ``hold``
    sends the last command written once more: that command is already here.)"""
    wrote = np.isfinite(ticks["write_time"])
    low = np.asarray(limits.action_lower) - tolerance
    high = np.asarray(limits.action_upper) + tolerance
    command, sent = ticks["safe"][wrote], ticks["sent"][wrote]
    unsafe = (
        ~np.isfinite(command).all(axis=1)
        | ((command < low) | (command > high)).any(axis=1)
        | ((sent < low) | (sent > high)).any(axis=1)  # NaN (nothing written) compares False
    )
    return int(wrote.sum()), int(unsafe.sum())
