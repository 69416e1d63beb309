"""Replay a recorded teleop episode in simulation (``docs/RELIABILITY.md`` R17).

A frame of a :mod:`hardware.teleop.session` recording holds the state sensed at ``timestamp``
and the action written in answer to it in the same tick. :func:`replay_episode` gives them to
the control daemon's replay (:func:`hardware.daemon.replay.replay_ticks`) as a tick log: a fresh
simulated arm starts at the first frame's state and velocity, each action is written at its
frame's time, and every later state is compared with the simulated one. The real write came
after the read by the tick's own work (no time at all on a virtual clock), which a recording
does not hold: replays of real-time recordings differ by that much motion.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hardware.daemon.replay import ReplayReport, replay_ticks
from robopolicy.data.store import EpisodeStore


def episode_ticks(episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A recorded episode's frames as the tick columns :func:`replay_ticks` reads."""
    sensed = np.asarray(episode["timestamp"], dtype=np.float64)
    unknown = np.full((len(sensed), 1), np.nan)  # a driver that reports no velocities
    return {
        "sensed_at": sensed,
        "measured": np.asarray(episode["state"], dtype=np.float64),
        "velocity": np.asarray(episode.get("velocity", unknown), dtype=np.float64),
        "sent": np.asarray(episode["action"], dtype=np.float64),
        "write_time": sensed,
    }


def replay_episode(path: str | Path, index: int) -> ReplayReport:
    """Replay episode ``index`` of the recording at ``path`` on a fresh simulated arm."""
    store = EpisodeStore.open(path)
    keys = [k for k in ("timestamp", "state", "action", "velocity") if k in store.keys]
    episode = store.episode(index, keys=keys)
    return replay_ticks(episode_ticks(episode), where=f"{path} episode {index}")
