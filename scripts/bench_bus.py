"""Benchmark servo-bus round trips: a sync read of 6 servos through each emulator on a pty.

    python scripts/bench_bus.py [--reads 2000] [--backend auto|posix|pyserial] [--json]

For each protocol (Feetech SCS/STS, Dynamixel 2.0) an emulator serves six servos on a
pseudo-terminal in a thread of this process, and the real bus code sends a sync read of
Present_Position and waits for the six checked replies. Reported per protocol: p50, p99 and max
round-trip latency (µs) and reads per second; also the full driver ``read_state()`` (sync read
plus calibration). A pty moves bytes at memory speed: this measures the software path (framing,
checks, system calls, thread hand-offs), not a serial line's baud rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from hardware.buses.dynamixel import DynamixelBus
from hardware.buses.feetech import FeetechBus
from hardware.calibration import ArmCalibration, GripperCalibration, JointCalibration
from hardware.emulators import DynamixelEmulator, FeetechEmulator
from hardware.servo_arm import DynamixelArm, FeetechArm
from hardware.transport import open_serial

IDS = list(range(1, 7))
PROTOCOLS = {
    "feetech": (FeetechEmulator, FeetechBus, FeetechArm),
    "dynamixel": (DynamixelEmulator, DynamixelBus, DynamixelArm),
}


def calibration() -> ArmCalibration:
    joints = {f"joint{i}": JointCalibration(i, 2048, 1, 0, 4095) for i in IDS[:-1]}
    return ArmCalibration(joints, GripperCalibration(IDS[-1], 2000, 2600))


def latencies(call: Callable[[], object], reads: int, warmup: int = 100) -> np.ndarray:
    for _ in range(warmup):
        call()
    out = np.empty(reads)
    for k in range(reads):
        start = time.perf_counter()
        call()
        out[k] = time.perf_counter() - start
    return out * 1e6


def summary(us: np.ndarray) -> dict[str, float]:
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "reads_per_s": float(len(us) / (us.sum() / 1e6)),
    }


def bench(protocol: str, reads: int, backend: str) -> dict[str, dict[str, float]]:
    emulator_cls, bus_cls, arm_cls = PROTOCOLS[protocol]
    with emulator_cls(ids=IDS) as emulator:
        transport = open_serial(emulator.path, backend=backend)
        try:
            bus = bus_cls(transport)
            register = bus.table.present_position
            sync_read = summary(latencies(lambda: bus.sync_read(IDS, register), reads))
            with arm_cls(calibration=calibration(), transport=transport) as arm:
                read_state = summary(latencies(arm.read_state, reads))
        finally:
            transport.close()
    return {"sync_read": sync_read, "read_state": read_state}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="timed reads per protocol")
    parser.add_argument("--backend", default="auto", choices=["auto", "posix", "pyserial"])
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)

    results = {name: bench(name, args.reads, args.backend) for name in PROTOCOLS}
    report = {
        "servos": len(IDS),
        "reads": args.reads,
        "backend": args.backend,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"sync read of {len(IDS)} servos through a pty emulator, {args.reads} reads each")
    header = ("protocol", "operation", "p50 µs", "p99 µs", "max µs", "reads/s")
    print("{:<10} {:<11} {:>8} {:>8} {:>8} {:>9}".format(*header))
    for name, ops in results.items():
        for op, s in ops.items():
            print(
                f"{name:<10} {op:<11} {s['p50_us']:>8.0f} {s['p99_us']:>8.0f} "
                f"{s['max_us']:>8.0f} {s['reads_per_s']:>9.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
