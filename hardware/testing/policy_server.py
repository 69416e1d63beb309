"""A fast fake policy server for the daemon's tests: a joint-space "wave" policy behind the real
:class:`~robopolicy.serve.server.PolicyServer` (same wire, checks and deadlines), without torch,
so it starts in well under a second and can be killed and restarted often.

    python -m hardware.testing.policy_server --port 0 --center 0,0.1,0.5,0,-0.6,0,0.5 \\
        --control /tmp/control.json

The policy observes ``state`` (To, Da) and answers ``Tp`` actions on a slow sine wave around
``--center``; the wave's phase comes from this host's monotonic clock (the daemon's clock too,
on one Linux machine), so consecutive chunks join up. ``--control`` names a JSON file read
before every inference (when it changed) to inject faults:

- ``{"mode": "nan"}``: actions with NaN — the server refuses them (``internal`` error);
- ``{"mode": "out_of_range"}``: every target 3 rad beyond the centre (outside the limits);
- ``{"mode": "jump"}``: the second half of the chunk jumps 1 rad on joint 0;
- ``{"delay_ms": 400}``: each inference sleeps that long first (an overrun).

Each bad chunk it emits is counted in ``<control>.<pid>.counts.json`` (the scorecard's "bad
inputs tried", at their source).

Like ``robopolicy serve`` it prints ``{"event": "listening", "host", "port", "pid"}`` once bound.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.atomic import atomic_write_json
from robopolicy.inference.serving import Engine
from robopolicy.serve.config import ServerConfig
from robopolicy.serve.server import PolicyServer

OBS_STEPS, HORIZON, ACTION_STEPS, FPS = 2, 8, 4, 10.0
"""The wave policy's contract: To 2, Tp 8, Ta 4 at 10 Hz (as the built-in tasks' policies)."""
FREQUENCY = 0.25
"""Hz of the wave."""


class WaveEngine(Engine):
    """The fake policy (module docstring): an :class:`~robopolicy.inference.serving.Engine`
    without inpainting."""

    def __init__(
        self, center: np.ndarray, *, amplitude: float = 0.15, control: Path | None = None
    ) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        """The action the wave moves around (Da)."""
        self.amplitude = amplitude
        """Half the wave's swing on every joint (the last entry, the gripper, too)."""
        self.control = control
        """The fault control file (module docstring), or None."""
        self._mtime: int | None = None
        self._faults: dict[str, Any] = {}
        self.emitted: dict[str, int] = {}
        """Bad chunks sent, by mode."""

    def metadata(self) -> dict[str, Any]:
        dim = len(self.center)
        return {
            "name": "wave",
            "policy_type": "wave",
            "n_obs_steps": OBS_STEPS,
            "horizon": HORIZON,
            "n_action_steps": ACTION_STEPS,
            "action_dim": dim,
            "obs": {"state": {"shape": [OBS_STEPS, dim], "dtype": "float32"}},
            "fps": FPS,
            "sampler": None,
            "steps": None,
            "max_steps": 1,
        }

    def faults(self) -> dict[str, Any]:
        """The control file's contents (re-read when it changes)."""
        if self.control is None:
            return {}
        try:
            mtime = self.control.stat().st_mtime_ns
            if mtime != self._mtime:
                self._faults = json.loads(self.control.read_text() or "{}")
                self._mtime = mtime
        except (OSError, ValueError):
            self._faults = {}
        return self._faults

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        faults = self.faults()
        delay = float(faults.get("delay_ms", 0.0))
        if delay > 0:
            time.sleep(delay / 1e3)
        batch = obs["state"].shape[0]
        t = time.monotonic() + (np.arange(HORIZON) - (OBS_STEPS - 1)) / FPS
        phase = 2 * math.pi * FREQUENCY * t[:, None] + np.arange(len(self.center))[None]
        actions = self.center + self.amplitude * np.sin(phase)
        mode = faults.get("mode", "normal")
        if mode == "nan":
            actions[HORIZON // 2, 0] = np.nan
        elif mode == "out_of_range":
            actions = actions + 3.0
        elif mode == "jump":
            actions[HORIZON // 2 :, 0] += 1.0
        if mode != "normal" and self.control is not None:
            self.emitted[mode] = self.emitted.get(mode, 0) + batch
            counts = self.control.with_name(f"{self.control.name}.{os.getpid()}.counts.json")
            atomic_write_json(counts, self.emitted)  # read while the server runs
        return np.broadcast_to(actions, (batch, *actions.shape)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--center", required=True, help="comma-separated action centre (Da)")
    parser.add_argument("--amplitude", type=float, default=0.15)
    parser.add_argument("--control", type=Path, default=None)
    args = parser.parse_args(argv)
    center = np.array([float(x) for x in args.center.split(",")])
    engine = WaveEngine(center, amplitude=args.amplitude, control=args.control)
    server = PolicyServer(engine, ServerConfig(host=args.host, port=args.port))

    def ready(host: str, port: int) -> None:
        print(
            json.dumps({"event": "listening", "host": host, "port": port, "pid": os.getpid()}),
            flush=True,
        )

    server.run(ready)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
