"""Asks the policy server for the next chunk ahead of time, in its own thread.

The loop never waits on the network: it calls :meth:`Requester.want` when its plan is about to
need a successor (``chunk_lead_s`` before the policy's ``Ta``-th action is done) and picks the
result up with :meth:`Requester.poll`, which never blocks. The requester thread takes the
newest readings from the :class:`~hardware.daemon.adapters.ObsHistory`, sends them with their
sensing times and a deadline (``request_timeout_s``), checks the reply's timing against the
protocol (``start = To - 1``, the first action due at the newest observation's time, one policy
period apart), turns it into joint targets with due times and checks the whole chunk
(:class:`~hardware.daemon.chunks.ChunkChecker`). A late, failed or rejected reply costs
nothing but a counter and a short pause; the loop keeps executing what it has, then holds (the
watchdog). :meth:`Requester.flush` forgets the chunk waiting and drops the reply of the
request in flight when it comes: the teleop session's intervention mode flushes when the
operator takes over and hands back, so nothing asked for before is executed after.

**Real-time chunking** (``rtc``, :mod:`robopolicy.serve.chunks`): where it is on
(:func:`real_time_chunking`), each request carries the prefix of the plan the loop executes
(:attr:`Requester.executing`, the follower's published copy) for the new chunk's ticks, with
the history and the actions due before the reply can take over committed (``frozen``). That
delay is measured at every hand-over (:meth:`Requester.poll`: from the chunk's observation to
the loop taking it) and estimated as a high quantile of the latest ones
(:class:`~robopolicy.serve.chunks.DelayEstimate`). The delivered chunk says how many of its
actions were committed, and the plan keeps its own for their ticks. A server that refuses a
request with a prefix (``invalid_input``, ``bad_request``) turns real-time chunking off for the
run, with a logged warning; the next request goes without one.

One :class:`~robopolicy.serve.client.PolicyClient` lives in this thread (it is not
thread-safe); after a lost connection the next request builds a fresh one from the factory.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from hardware.clock import Clock
from hardware.daemon.adapters import ObsHistory, PolicyAdapter
from hardware.daemon.chunks import ChunkChecker
from hardware.daemon.config import ControlConfig
from hardware.daemon.process import realtime
from hardware.limits import SafetyLimits
from hardware.safety import ForwardKinematics
from robopolicy.errors import RobopolicyError
from robopolicy.serve.chunks import Chunk, DelayEstimate, Plan
from robopolicy.serve.client import ServerError

log = logging.getLogger(__name__)
PREFIX_REFUSALS = ("invalid_input", "bad_request")
"""Error codes of a server refusing a request's real-time chunking fields."""


class ClientLike(Protocol):
    """The part of :class:`~robopolicy.serve.client.PolicyClient` the requester uses."""

    def infer(
        self,
        obs: dict[str, np.ndarray],
        *,
        timeout_s: float,
        prefix: np.ndarray | None = None,
        frozen: int | None = None,
    ) -> tuple[np.ndarray, dict]:
        """Actions (B, Tp, Da) and the reply's info (``start``, ``due``, ``period``, ...);
        ``prefix`` and ``frozen``: real-time chunking (``protocol.md``)."""
        ...

    def metadata(self, *, timeout_s: float) -> dict[str, Any]:
        """The policy's contract (To, Tp, Ta, obs spec, action dim, fps)."""
        ...

    def close(self) -> None: ...


class Requester:
    """Fetches chunks in a background thread (see the module docstring)."""

    def __init__(
        self,
        client_factory: Callable[[], ClientLike],
        adapter: PolicyAdapter,
        history: ObsHistory,
        checker: ChunkChecker,
        config: ControlConfig,
        metadata: dict[str, Any],
        clock: Clock,
        reference: Callable[[], np.ndarray | None] = lambda: None,
    ) -> None:
        self.client_factory, self.adapter, self.history = client_factory, adapter, history
        self.checker, self.config, self.clock = checker, config, clock
        self.reference = reference
        """The joint command being executed (the EE adapter's IK starts there); None before
        the first write, when the newest reading stands in."""
        self.executing: Callable[[], Plan | None] = lambda: None
        """The plan the loop executes (a copy it publishes), where real-time chunking's prefix
        comes from; None: nothing to send (the daemon wires it to its follower)."""
        self.rtc = real_time_chunking(config.rtc, metadata, adapter)
        """Whether requests carry a prefix (turned off for the run if the server refuses one)."""
        self.delay = DelayEstimate(config.rtc_delay_quantile)
        """The inference delay, measured at each hand-over (:meth:`poll`)."""
        self.n_obs_steps = int(metadata["n_obs_steps"])
        self.n_action_steps = int(metadata.get("n_action_steps") or 1)
        self.horizon = int(metadata["horizon"])
        fps = metadata.get("fps") or config.policy_fps
        if not fps:
            raise ValueError("the policy's fps is unknown: serve it with --fps or set policy_fps")
        self.period = 1.0 / float(fps)
        self.stats: collections.Counter[str] = collections.Counter()
        """requests, chunks, rejected, timeouts, connection_errors, server_<code>,
        prefix_requests (with real-time chunking's prefix), rtc_refused, ..."""
        self.rejections: collections.deque[str] = collections.deque(maxlen=100)
        """Why the latest chunks were rejected."""
        self.outcomes: collections.deque[tuple[float, str]] = collections.deque(maxlen=10_000)
        """``(clock time, outcome)`` of the latest requests (see :meth:`request_once`)."""
        self._client: ClientLike | None = None
        self._want = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready: Chunk | None = None
        self._seq = 0
        self._generation = 0
        """Bumped by :meth:`flush`: a reply to a request sent before is stale."""
        self._thread: threading.Thread | None = None

    @classmethod
    def for_policy(
        cls,
        client_factory: Callable[[], ClientLike],
        metadata: dict[str, Any],
        adapter: PolicyAdapter,
        config: ControlConfig,
        limits: SafetyLimits,
        *,
        rate_hz: float,
        clock: Clock,
        fk: ForwardKinematics | None = None,
    ) -> Requester:
        """A requester for the policy of ``metadata`` driving a loop at ``rate_hz``: its
        observation history holds the policy's ``To`` periods and a second more of readings,
        and its chunk checker applies ``limits`` at that rate."""
        fps = metadata.get("fps") or config.policy_fps or 10.0
        history = ObsHistory(math.ceil((int(metadata["n_obs_steps"]) / fps + 1.0) * rate_hz))
        checker = ChunkChecker(limits, 1.0 / rate_hz, fk=fk)
        return cls(client_factory, adapter, history, checker, config, metadata, clock)

    # -- the loop's side (never blocks) -------------------------------------------------------

    def want(self) -> None:
        """Ask for a chunk (idempotent until one is delivered)."""
        self._want.set()

    def pending(self) -> bool:
        """Whether a chunk waits to be polled."""
        return self._ready is not None

    def poll(self) -> Chunk | None:
        """The newest delivered chunk, once; None when there is none. A chunk handed over
        adds its delay (now less its observation's time) to :attr:`delay`."""
        with self._lock:
            chunk, self._ready = self._ready, None
        if chunk is not None:
            self.delay.add(self.clock.monotonic() - chunk.due)
        return chunk

    def flush(self) -> None:
        """Forget the chunk waiting, stop wanting one, and drop the reply of the request in
        flight when it comes (counted as ``stale``): what they carry was asked for before."""
        with self._lock:
            self._generation += 1
            self._ready = None
            self._want.clear()

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="daemon-requester", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (it finishes at most the request in flight) and close the client."""
        self._stop.set()
        self._want.set()
        if self._thread is not None:
            self._thread.join(timeout or self.config.request_timeout_s + 2.0)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        priority = self.config.realtime_priority
        realtime(None if priority is None else max(1, priority - 1))  # just below the loop
        while not self._stop.is_set():
            if not self._want.wait(0.05) or self._stop.is_set():
                continue
            outcome = self.request_once()
            if outcome != "chunk" and not self._stop.is_set():
                self._stop.wait(self.config.retry_s)

    def request_once(self) -> str:
        """One request: ``"chunk"`` (delivered), ``"no_observation"``, ``"timeouts"``,
        ``"connection_errors"``, ``"server_<code>"``, ``"rejected"``, ``"client_error"`` or
        ``"stale"`` (flushed while in flight)."""
        cfg = self.config
        generation = self._generation
        states = self.history.window(
            self.n_obs_steps, self.period, self.clock.monotonic(), cfg.sensor_max_age_s
        )
        if states is None:
            return self._count("no_observation")
        obs = self.adapter.observation(states)
        obs = {k: v[None] for k, v in obs.items()}
        obs["timestamp"] = np.array([[s.sensed_at for s in states]], dtype=np.float64)
        fields = self._prefix_fields(states[-1].sensed_at)
        if self._client is None:
            self._client = self.client_factory()
        self.stats["requests"] += 1
        try:
            actions, info = self._client.infer(obs, timeout_s=cfg.request_timeout_s, **fields)
        except TimeoutError:
            return self._count("timeouts")
        except (ConnectionError, OSError) as exc:
            log.debug("policy connection failed: %s", exc)
            self._client.close()
            self._client = None  # the next request builds a fresh client from the factory
            return self._count("connection_errors")
        except Exception as exc:  # ServerError (an error reply) and anything a client raises
            code = getattr(exc, "code", None)
            if code is None:
                log.warning("policy request failed: %r", exc)
            elif fields and code in PREFIX_REFUSALS:
                self.rtc = False
                self.stats["rtc_refused"] += 1
                log.warning("real-time chunking off: the server refused a prefix (%s)", exc)
            return self._count(f"server_{code}" if code else "client_error")
        frozen = int(fields.get("frozen", 0))
        return self._deliver(actions, info, states[-1].sensed_at, generation, frozen)

    def _prefix_fields(self, due: float) -> dict[str, Any]:
        """The real-time chunking fields of a request whose newest observation is ``due``:
        the executing plan's prefix for the new chunk (empty when off or nothing is planned)."""
        plan = self.executing() if self.rtc else None
        if plan is None:
            return {}
        fields = plan.prefix_fields(due, self.n_obs_steps - 1, self.delay.steps(self.period))
        if fields:
            self.stats["prefix_requests"] += 1
        return fields

    def _deliver(
        self, actions: Any, info: dict[str, Any], sensed_at: float, generation: int, frozen: int
    ) -> str:
        try:
            a = np.asarray(actions, dtype=np.float64)
            start = int(info.get("start", self.n_obs_steps - 1))
            due = info.get("due")
            due0 = float(np.asarray(due).reshape(-1)[0]) if due is not None else sensed_at
            period = float(info.get("period") or self.period)
            self._check_timing(a.shape, start, due0, period, sensed_at)
            reference = self.reference()
            if reference is None:
                reference = self.adapter_reference()
            joint = self.adapter.to_joint(a[0, start:], reference)
        except Exception as exc:  # a reply that cannot be a chunk is a rejected chunk
            return self._reject(f"unusable reply: {exc}")
        self._seq += 1
        committed = min(max(frozen - start, 0), len(joint))  # the chunk begins at ``start``
        chunk = Chunk(
            joint, due0, period, seq=self._seq, execute=self.n_action_steps, committed=committed
        )
        verdict = self.checker.check(chunk)
        if not verdict:
            return self._reject(verdict.reason, logged=True)
        with self._lock:
            stale = generation != self._generation
            if not stale:
                self._ready = chunk
                self._want.clear()
        return self._count("stale" if stale else "chunks")

    def _check_timing(
        self, shape: tuple[int, ...], start: int, due0: float, period: float, sensed_at: float
    ) -> None:
        """Raise unless the reply's timing is the one the protocol promises for this request:
        ``(1, Tp, Da)`` actions executed from ``start = To - 1``, the first due when the newest
        observation was sensed, one policy period apart. A damaged or inconsistent reply would
        otherwise shift the plan in time: early actions, or a plan that never runs out (and so
        never asks again)."""
        if len(shape) != 3 or shape[0] != 1 or shape[1] != self.horizon:
            raise ValueError(f"actions {shape}, expected (1, {self.horizon}, Da)")
        if start != self.n_obs_steps - 1:
            raise ValueError(f"start {start}, expected To - 1 = {self.n_obs_steps - 1}")
        if not abs(due0 - sensed_at) <= self.period:
            raise ValueError(f"due {due0:.6f} is not the observation's time {sensed_at:.6f}")
        if not math.isclose(period, self.period, rel_tol=1e-3):
            raise ValueError(f"period {period} s, the policy's is {self.period} s")

    def adapter_reference(self) -> np.ndarray:
        """The newest reading as an action, when the loop has not commanded anything yet."""
        states = self.history.window(1, self.period, float("inf"), float("inf"))
        if not states:
            raise ValueError("no reading to start from")
        return states[-1].as_action()

    def _reject(self, reason: str, *, logged: bool = False) -> str:
        """Count a rejected reply; ``logged``: the chunk check has logged why already."""
        self.rejections.append(reason)
        if not logged:
            log.warning("policy reply rejected: %s", reason)
        return self._count("rejected")

    def _count(self, outcome: str) -> str:
        self.stats[outcome] += 1
        outcome = "chunk" if outcome == "chunks" else outcome
        self.outcomes.append((self.clock.monotonic(), outcome))
        return outcome


def real_time_chunking(mode: str, metadata: dict[str, Any], adapter: PolicyAdapter) -> bool:
    """Whether requests carry real-time chunking's prefix under ``mode`` (``ControlConfig.rtc``)
    for the policy of ``metadata`` behind ``adapter``: it needs a server that inpaints and
    joint-space actions (the plan holds joint targets). ``"on"`` where it cannot is a
    RobopolicyError, before any motion."""
    if mode == "off":
        return False
    why = None
    if not metadata.get("inpaint"):
        why = "the policy server does not inpaint (serve it with --backend auto, torch or onnx)"
    elif adapter.name != "joint":
        why = f"its prefix would be joint targets, and this policy's actions are {adapter.name}"
    if why is None:
        return True
    if mode == "on":
        raise RobopolicyError(f"rtc=on: {why}")
    if metadata.get("inpaint"):
        log.info("real-time chunking off: %s", why)
    return False


def fetch_metadata(client_factory: Callable[[], ClientLike], timeout_s: float) -> dict[str, Any]:
    """The policy's metadata from a fresh client, retried for up to ``timeout_s`` while no
    server answers; a RobopolicyError when none does, or when the server refuses."""
    deadline = time.monotonic() + timeout_s
    client = client_factory()
    try:
        while True:
            try:
                return client.metadata(timeout_s=min(2.0, timeout_s))
            except (TimeoutError, ConnectionError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise RobopolicyError(f"no policy server answered: {exc}") from None
                time.sleep(0.2)
            except ServerError as exc:  # e.g. a wrong token: retrying will not help
                raise RobopolicyError(f"the policy server refused: {exc}") from None
    finally:
        client.close()
