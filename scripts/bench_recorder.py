"""Benchmark the recording loop: the simulated arm driven at 30 Hz with two simulated cameras,
every tick recorded, images encoded and written off the loop's thread.

    python scripts/bench_recorder.py [--seconds 10] [--fps 30] [--size 96x128] [--json]

Each tick reads the arm, renders both cameras (``overview`` and ``wrist``, MuJoCo offscreen),
sends a slow sine-wave target and hands the frame to the :class:`~hardware.recorder.Recorder`;
then it sleeps to the next tick's deadline. Reported: the achieved loop rate, ticks that ran
past their period (late), frames dropped because the writer was behind, the tick's own work
time (p50 / p99 / max, ms), and how long ``keep()`` waited for the writer to drain at the end.
Run it with ``OMP_NUM_THREADS=1`` on the target machine; a loaded machine shows up as late ticks.
The cameras' ``max_age`` is 1 s here, as the first offscreen render (OSMesa) can be slow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hardware.cameras.sim import SimCamera, SimCameraConfig
from hardware.recorder import Recorder, RecorderConfig, RecordingSetup
from hardware.sim_arm import SimArm


def run(seconds: float, fps: float, height: int, width: int) -> dict:
    arm = SimArm()
    arm.connect()
    cameras = [
        SimCamera(SimCameraConfig(view, height, width, max_age=1.0, view=view), arm=arm)
        for view in ("overview", "wrist")
    ]
    for camera in cameras:
        camera.connect()
    setup = RecordingSetup.of(arm, cameras, fps)
    period = 1.0 / fps
    home = arm.read_state().positions
    work: list[float] = []
    late = 0
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        recorder = Recorder(RecorderConfig(Path(tmp) / "rec.zarr"), setup)
        recorder.start_episode()
        start = time.monotonic()
        deadline = start
        ticks = int(seconds * fps)
        for tick in range(ticks):
            began = time.monotonic()
            state = arm.read_state()
            frame = {camera.config.key: camera.read().image for camera in cameras}
            target = home + 0.2 * np.sin(2 * np.pi * 0.25 * tick * period)
            action = np.append(target, 0.0)
            arm.send_action(action)
            frame.update(
                state=np.append(state.positions, state.gripper).astype(np.float32),
                action=action.astype(np.float32),
                timestamp=np.float64(state.sensed_at),
            )
            recorder.record(frame)
            done = time.monotonic()
            work.append(done - began)
            deadline += period
            if done > deadline:
                late += 1
                deadline = done  # do not try to catch up with a burst
            time.sleep(max(0.0, deadline - done))
        elapsed = time.monotonic() - start
        waited = time.monotonic()
        outcome = recorder.keep()
        waited = time.monotonic() - waited
        recorder.close()
    for camera in cameras:
        camera.disconnect()
    arm.disconnect()
    ms = np.asarray(work) * 1e3
    return {
        "fps_target": fps,
        "fps_achieved": round(ticks / elapsed, 2),
        "ticks": ticks,
        "late_ticks": late,
        "dropped_frames": outcome.dropped,
        "kept_frames": outcome.frames,
        "tick_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "tick_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "tick_ms_max": round(float(ms.max()), 2),
        "keep_wait_s": round(waited, 3),
        "cameras": 2,
        "image": [height, width],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the recording")
    parser.add_argument("--fps", type=float, default=30.0, help="loop rate")
    parser.add_argument("--size", default="96x128", help="camera frames, HEIGHTxWIDTH")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    report = run(args.seconds, args.fps, height, width)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        for name, value in report.items():
            print(f"{name:>14}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
