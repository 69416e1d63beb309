"""Process and thread settings for a control loop on a small, shared machine."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def realtime(priority: int | None) -> tuple[int, os.sched_param] | None:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority`` (None: leave it); returns the
    old policy and parameters to restore with ``os.sched_setscheduler(0, *old)``, or None."""
    if priority is None:
        return None
    previous = (os.sched_getscheduler(0), os.sched_getparam(0))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:  # no CAP_SYS_NICE: run anyway, and say so
        log.warning("cannot run under SCHED_FIFO %d: %s", priority, exc)
        return None
    return previous


def tune_process(period: float) -> None:
    """Settings for a process that runs the daemon: a GIL switch interval well under a tick
    (Python's 5 ms default would let the requester thread delay a 2 ms tick), and one zarr
    worker thread for the tick log (zarr's default pool adds a thread, and a malloc arena, per
    core: memory that grows for minutes and threads that compete with the loop)."""
    import zarr

    sys.setswitchinterval(min(sys.getswitchinterval(), period / 4))
    zarr.config.set({"threading.max_workers": 1})
