"""The server's inference thread: a bounded job queue, deadlines, batching, one engine.

The thread owns the engine; nothing else calls it. The server runs its network loop on this
thread too (:mod:`robopolicy.serve.reactor`: it leads the loop while idle) and calls
:meth:`InferenceWorker.run_pending` when requests were submitted. That takes the oldest job,
gathers jobs that can share its forward pass
(:meth:`~robopolicy.serve.messages.InferInput.group_key` equal, at most ``max_batch``
samples, waiting at most ``batch_wait_ms`` for them), drops those whose deadline has passed
(``expired``), runs the rest as one batch and hands every reply to ``post``, until no job is
left.

Given a factory rather than an engine, the worker builds the engine on that same thread: torch
keeps an intra-op thread pool per OS thread, and a policy built and warmed up on one thread but
run on another paid for two pools on the same cores (a 4M-parameter UNet ran about 2x slower at
2 threads; BENCHMARKS.md).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from robopolicy.serve import messages as m
from robopolicy.serve.config import ServerConfig

if TYPE_CHECKING:
    from robopolicy.inference.serving import Engine

log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False, slots=True)
class Job:
    """One checked ``infer`` request waiting for the engine."""

    conn: Any
    """Where the reply goes (opaque here)."""
    id: int
    input: m.InferInput
    received: float
    """``time.monotonic()`` when its frame was read."""
    deadline: float
    """``received + timeout_ms``: past it, the job is dropped before inference."""


def _log_failure(done: Future[None]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.error("the inference thread stopped", exc_info=exc)


class InferenceWorker:
    """Runs jobs on ``engine`` in its own thread; ``post(job, reply)`` delivers replies.

    ``engine`` may be a callable that returns the engine: it is then called on the inference
    thread (its exceptions reach the caller here)."""

    def __init__(
        self,
        engine: Engine | Callable[[], Engine],
        config: ServerConfig,
        post: Callable[[Job, dict[str, Any]], None],
        count: Callable[..., None],
    ) -> None:
        self.config, self.post, self.count = config, post, count
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="robopolicy-serve-infer")
        if not hasattr(engine, "metadata"):
            try:
                engine = self._thread.submit(engine).result()
            except BaseException:
                self._thread.shutdown(wait=False)
                raise
        self.engine: Engine = engine  # type: ignore[assignment]
        meta = self.engine.metadata()
        self.start_index = meta["n_obs_steps"] - 1
        self.period = 1.0 / meta["fps"] if meta.get("fps") else None
        self.chunk = (meta["horizon"], meta["action_dim"])
        self._jobs: collections.deque[Job] = collections.deque()
        self._arrived = threading.Condition()  # for batch_wait_ms only
        self._closing = False

    def serve(self, loop: Callable[[], None]) -> Future[None]:
        """Run ``loop`` (the server's) on the inference thread."""
        running = self._thread.submit(loop)
        running.add_done_callback(_log_failure)
        return running

    def queued(self) -> int:
        return len(self._jobs)

    def has_jobs(self) -> bool:
        return bool(self._jobs)

    def submit(self, job: Job) -> None:
        """Queue ``job`` (from the thread leading the network loop);
        :class:`~robopolicy.serve.messages.RequestError` when full or closing."""
        if self._closing:
            raise m.RequestError(m.SHUTTING_DOWN, "server stopping", job.id)
        if len(self._jobs) >= self.config.max_queue:
            raise m.RequestError(m.OVERLOADED, "inference queue full", job.id)
        self._jobs.append(job)
        if self.config.batch_wait_ms > 0:
            with self._arrived:
                self._arrived.notify()

    def close(self, timeout: float = 30.0, running: Future[None] | None = None) -> list[Job]:
        """Stop taking jobs; wait for ``running`` (the loop on the inference thread) to end;
        return the jobs never started."""
        self._closing = True
        finished = running is None or not wait([running], timeout).not_done
        self._thread.shutdown(wait=finished)  # a hung engine is left behind, not waited on
        dropped = list(self._jobs)
        self._jobs.clear()
        return dropped

    def run_pending(self) -> None:
        """Run every queued job, batch by batch (inference thread)."""
        while self._jobs and not self._closing:
            jobs = self._next_batch()
            now = time.monotonic()
            live = []
            for job in jobs:
                if job.deadline > now:
                    live.append(job)
                    continue
                self.count("expired")
                late = f"deadline passed {1e3 * (now - job.deadline):.1f} ms before inference"
                self.post(job, m.error_reply(job.id, m.EXPIRED, late))
            if live:
                self._infer(live, now)

    def _next_batch(self) -> list[Job]:
        """The oldest job and those that can share its forward pass."""
        first = self._jobs.popleft()
        limit = self.config.max_batch
        batch, size = [first], first.input.batch
        if size >= limit:
            return batch
        key = first.input.group_key()
        until = time.monotonic() + self.config.batch_wait_ms / 1e3
        while not self._closing:
            for job in list(self._jobs):
                if job.input.group_key() == key and size + job.input.batch <= limit:
                    self._jobs.remove(job)
                    batch.append(job)
                    size += job.input.batch
            left = until - time.monotonic()
            if size >= limit or left <= 0:
                break
            with self._arrived:
                self._arrived.wait(left)
        return batch

    def _infer(self, jobs: list[Job], started: float) -> None:
        inputs = [job.input for job in jobs]
        first = inputs[0]
        obs, noise, prefix = first.obs, first.noise, first.prefix
        if len(inputs) > 1:  # stack the batch (steps, frozen and shapes agree: group_key)
            obs = {k: np.concatenate([i.obs[k] for i in inputs]) for k in obs}
            if noise is not None:
                noise = np.concatenate([i.noise for i in inputs if i.noise is not None])
            if prefix is not None:
                prefix = np.concatenate([i.prefix for i in inputs if i.prefix is not None])
        total = sum(i.batch for i in inputs)
        steps, frozen = first.steps, first.frozen
        try:
            if prefix is None:
                actions = self.engine.run(obs, noise, steps)
            else:  # parse_infer takes a prefix only where the engine inpaints
                actions = self.engine.run_with_prefix(obs, noise, steps, prefix, frozen)
            if actions.shape != (total, *self.chunk) or not np.isfinite(actions).all():
                raise ValueError(f"bad actions from the engine: {actions.shape} or non-finite")
        except Exception as exc:  # log it here; the client learns only the kind of failure
            log.exception("inference failed")
            for job in jobs:
                self.count(f"error_{m.INTERNAL}")
                text = f"inference failed ({type(exc).__name__})"
                self.post(job, m.error_reply(job.id, m.INTERNAL, text))
            return
        inference_ms = 1e3 * (time.monotonic() - started)
        self.count("served", len(jobs))
        offset = 0
        for job in jobs:
            size = job.input.batch
            reply: dict[str, Any] = {
                "type": "infer",
                "id": job.id,
                "actions": actions[offset : offset + size],
                "start": self.start_index,
                "period": self.period,
                "timing": {
                    "queue_ms": 1e3 * (started - job.received),
                    "inference_ms": inference_ms,
                    "batch": total,
                },
            }
            if job.input.timestamp is not None:
                reply["due"] = job.input.timestamp[:, -1].astype(np.float64)
            offset += size
            self.post(job, reply)
