"""The recorder crash campaign (``docs/RELIABILITY.md`` R12, R13): a recording process is
SIGKILLed at random moments, again and again, each time resuming the same store.

    python -m hardware.testing.recorder_crash [--kills 100] [--seed 0] [--json]

Each round starts ``python -m hardware.testing.recorder_crash --child STORE``, which resumes
the recording (or creates it) and records the deterministic episodes of
:mod:`hardware.testing.recorded_episodes` without pause (every fourth one is first re-recorded,
so discards are killed too), printing ``kept N`` after each commit. The round kills it after a
random delay — most after it reported ready, some while it is still starting, creating, opening
or trimming the store — then checks the store: the episodes are numbered 0, 1, 2, ... (the
resumed process started at the stored count), every newly committed episode reads back
identical to what was recorded (SHA-256 of every key), and no episode the child reported kept
is missing (at most the one in flight is lost). At the end, every committed episode is verified
again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hardware.recorder import Recorder, RecorderConfig
from hardware.testing.recorded_episodes import (
    SETUP,
    episode_digest,
    episode_length,
    make_episode,
    make_frame,
)
from robopolicy.data.store import EpisodeStore


@dataclasses.dataclass
class CrashReport:
    """What a crash campaign did and found; the last three must read zero."""

    kills: int = 0
    """Recording processes SIGKILLed."""
    committed: int = 0
    """Episodes in the store at the end."""
    verified: int = 0
    """Committed episodes that read back identical (all of them, when healthy)."""
    lost: int = 0
    """Episodes a killed process reported kept that the store does not hold."""
    corrupt: int = 0
    """Committed episodes that read back differently from what was recorded."""
    misnumbered: int = 0
    """Rounds where the numbering had a gap or a resumed process did not continue it."""


def run_campaign(
    path: Path, *, kills: int, seed: int = 0, max_delay: float = 1.0, early: float = 0.15
) -> CrashReport:
    """Kill a recording process ``kills`` times at random moments; check the store each time.

    A fraction ``early`` of the kills does not wait for the process to report ready, so some
    land while it creates, opens or trims the store."""
    rng = np.random.default_rng(seed)
    report = CrashReport()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    verified_upto = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-m", "hardware.testing.recorder_crash", "--child", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines = []
        if rng.random() >= early:
            lines.append(child.stdout.readline())
            if not lines[0].startswith("ready"):
                child.kill()
                raise RuntimeError(f"recording process failed to start: {child.communicate()[1]}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=rng.uniform(0.0, max_delay))
        if child.poll() is not None:
            raise RuntimeError(f"recording process died by itself: {child.communicate()[1]}")
        child.send_signal(signal.SIGKILL)
        lines += child.communicate()[0].splitlines()
        report.kills += 1
        ready = [int(line.split()[1]) for line in lines if line.startswith("ready ")]
        if ready and ready[0] != verified_upto:
            report.misnumbered += 1
        kept = [int(line.split()[1]) for line in lines if line.startswith("kept ")]
        if not path.exists():  # killed while creating the store: nothing was committed
            report.lost += len(kept)
            continue
        store = EpisodeStore.open(path)
        n = store.n_episodes
        report.lost += max(0, (max(kept) + 1 if kept else 0) - n)
        numbers = store.episode_meta("episode_number").tolist() if n else []
        if numbers != list(range(n)):
            report.misnumbered += 1
        report.corrupt += _count_corrupt(store, verified_upto, n)
        verified_upto = n
    store = EpisodeStore.open(path)
    report.committed = store.n_episodes
    report.corrupt = _count_corrupt(store, 0, store.n_episodes)
    report.verified = report.committed - report.corrupt
    return report


def _count_corrupt(store: EpisodeStore, start: int, stop: int) -> int:
    return sum(
        episode_digest(store.episode(i)) != episode_digest(make_episode(i))
        for i in range(start, stop)
    )


def _record_forever(path: Path) -> None:
    """The child: resume the recording and record deterministic episodes until killed."""
    recorder = Recorder(RecorderConfig(path), SETUP)
    print("ready", recorder.next_index, flush=True)
    attempt = 0
    while True:
        index = recorder.start_episode()
        attempt += 1
        if attempt % 4 == 0:
            for t in range(3):
                recorder.record(make_frame(index + 1000, t))
            recorder.rerecord()
        for t in range(episode_length(index)):
            if not recorder.record(make_frame(index, t)):
                raise RuntimeError(f"episode {index} frame {t} was dropped")
        outcome = recorder.keep()
        if not outcome.kept:
            raise RuntimeError(f"episode {index} was not kept: {outcome.reason}")
        print("kept", outcome.index, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="recording processes to kill")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _record_forever(args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="recorder-crash-") as tmp:
        report = run_campaign(Path(tmp) / "crash.zarr", kills=args.kills, seed=args.seed)
    figures = dataclasses.asdict(report)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>12}: {value}")
    harm = report.lost + report.corrupt + report.misnumbered
    return 0 if harm == 0 and report.committed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
