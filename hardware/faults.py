"""Seeded fault injection around any driver (``docs/RELIABILITY.md``).

A :class:`FaultPlan` is a list of ``(at, kind, duration)`` — seconds after ``connect()`` on the
driver's clock — written by hand or drawn from a seed. :class:`FaultyDriver` wraps a driver and,
while a fault is active, changes what the daemon sees:

===============  ===========================================================================
``stale``        ``read_state`` keeps returning the last reading: timestamps stop advancing
``nan_state``    positions (and velocities) read NaN, for ``joint`` or every joint
``latency``      readings arrive ``magnitude`` s late (that much older), writes leave as late
``drop_writes``  writes are silently lost; ``send_action`` still returns as if sent
``write_error``  ``send_action`` raises :class:`~hardware.driver.DriverError`
``encoder_jump`` position of ``joint`` (default 0) reads ``magnitude`` rad off
``estop``        reads report ``estopped``; writes raise :class:`~hardware.driver.EStopError`
===============  ===========================================================================

Every fault that took effect is counted once in ``injected`` (the scorecard's "faults
injected"); ``log`` keeps what happened and when. Same seed, same plan, same clock: same run.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from hardware.driver import ArmState, Driver, DriverError, DriverWrapper, EStopError


class FaultKind(enum.StrEnum):
    STALE = "stale"
    NAN_STATE = "nan_state"
    LATENCY = "latency"
    DROP_WRITES = "drop_writes"
    WRITE_ERROR = "write_error"
    ENCODER_JUMP = "encoder_jump"
    ESTOP = "estop"


READ_FAULTS = (FaultKind.STALE, FaultKind.NAN_STATE, FaultKind.ENCODER_JUMP, FaultKind.ESTOP)
WRITE_FAULTS = (FaultKind.DROP_WRITES, FaultKind.WRITE_ERROR, FaultKind.ESTOP)


@dataclasses.dataclass(frozen=True)
class Fault:
    """One planned fault: active for ``at <= t < at + duration`` (s after connect)."""

    at: float
    kind: FaultKind
    duration: float
    magnitude: float = 0.0
    """Seconds of latency, or radians of an encoder jump; unused by the other kinds."""
    joint: int | None = None
    """The joint a ``nan_state`` or ``encoder_jump`` hits (None: every joint / joint 0)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if not (np.isfinite(self.at) and np.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"fault needs a finite start and a positive duration: {self}")
        if not np.isfinite(self.magnitude):
            raise ValueError(f"fault magnitude must be finite: {self}")

    def active(self, t: float) -> bool:
        return self.at <= t < self.at + self.duration


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """Faults to inject, sorted by start time; JSON-ready through ``to_dict``/``from_dict``."""

    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(sorted(self.faults, key=lambda f: f.at)))

    @classmethod
    def random(
        cls,
        seed: int,
        *,
        horizon: float,
        kinds: Sequence[FaultKind | str] = tuple(FaultKind),
        per_kind: int = 1,
        duration: tuple[float, float] = (0.05, 0.5),
        latency: tuple[float, float] = (0.01, 0.1),
        jump: tuple[float, float] = (0.05, 0.5),
        joints: int = 6,
    ) -> FaultPlan:
        """``per_kind`` faults of each kind, starting uniformly in ``[0, horizon)``; seeded."""
        rng = np.random.default_rng(seed)
        faults = []
        for kind in map(FaultKind, kinds):
            for _ in range(per_kind):
                magnitude = 0.0
                if kind is FaultKind.LATENCY:
                    magnitude = float(rng.uniform(*latency))
                elif kind is FaultKind.ENCODER_JUMP:
                    magnitude = float(rng.uniform(*jump) * rng.choice([-1.0, 1.0]))
                faults.append(
                    Fault(
                        at=float(rng.uniform(0.0, horizon)),
                        kind=kind,
                        duration=float(rng.uniform(*duration)),
                        magnitude=magnitude,
                        joint=int(rng.integers(joints)),
                    )
                )
        return cls(tuple(faults))

    def to_dict(self) -> dict[str, Any]:
        return {"faults": [{**dataclasses.asdict(f), "kind": str(f.kind)} for f in self.faults]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        return cls(tuple(Fault(**f) for f in data["faults"]))


class FaultyDriver(DriverWrapper):
    """``inner`` with the faults of ``plan`` injected on its own clock."""

    def __init__(self, inner: Driver, plan: FaultPlan) -> None:
        super().__init__(inner)
        self.plan = plan
        self.injected: Counter[FaultKind] = Counter()
        """How many planned faults took effect, by kind (each counted once)."""
        self.log: deque[tuple[float, str, str]] = deque(maxlen=10_000)
        """``(t, kind, what happened)`` for the latest calls a fault changed."""
        self._fired: set[int] = set()
        self._by_kind: dict[FaultKind, list[tuple[int, Fault]]] = {}
        for i, fault in enumerate(plan.faults):
            self._by_kind.setdefault(fault.kind, []).append((i, fault))
        self._t0 = 0.0
        self._last: ArmState | None = None
        self._frozen: ArmState | None = None

    def connect(self) -> None:
        was_connected = self.inner.is_connected
        self.inner.connect()
        if not was_connected:
            self._t0 = self.clock.monotonic()
            self._last = self._frozen = None

    @property
    def elapsed(self) -> float:
        """Seconds since connect, on the driver's clock: the plan's time axis."""
        return self.clock.monotonic() - self._t0

    def active(self, kind: FaultKind) -> Fault | None:
        """The fault of ``kind`` active now, if any (not counted)."""
        found = self._find(kind, self.elapsed)
        return None if found is None else found[1]

    def missed(self) -> list[Fault]:
        """Planned faults that never took effect (no read or write fell in their window)."""
        return [f for i, f in enumerate(self.plan.faults) if i not in self._fired]

    def read_state(self) -> ArmState:
        state = self._observe()
        self._delay()  # the reading arrives late: older than the clock by the latency
        return state

    def _observe(self) -> ArmState:
        if self._hit(FaultKind.STALE, "state frozen"):
            if self._frozen is None:
                self._frozen = self._last or self.inner.read_state()
            return self._frozen
        self._frozen = None
        state = self.inner.read_state()
        self._last = state
        positions = state.positions.copy()
        velocities = None if state.velocities is None else state.velocities.copy()
        nan = self._hit(FaultKind.NAN_STATE, "NaN state")
        if nan is not None:
            index = slice(None) if nan.joint is None else nan.joint % len(positions)
            positions[index] = np.nan
            if velocities is not None:
                velocities[index] = np.nan
        jump = self._hit(FaultKind.ENCODER_JUMP, "encoder jump")
        if jump is not None:
            positions[(jump.joint or 0) % len(positions)] += jump.magnitude
        estop = self._hit(FaultKind.ESTOP, "e-stop reported") is not None
        return dataclasses.replace(
            state, positions=positions, velocities=velocities, estopped=state.estopped or estop
        )

    def send_action(self, action: Any) -> np.ndarray:
        self._delay()
        if self._hit(FaultKind.ESTOP, "write refused: e-stop"):
            raise EStopError("injected e-stop: the arm is emergency-stopped")
        if self._hit(FaultKind.WRITE_ERROR, "write raised"):
            raise DriverError("injected write failure")
        if self._hit(FaultKind.DROP_WRITES, "write dropped"):
            return self.spec.clamp(self.check_action(action))
        return self.inner.send_action(action)

    def _delay(self) -> None:
        fault = self._hit(FaultKind.LATENCY, "delayed")
        if fault is not None:
            self.clock.sleep(fault.magnitude)

    def _find(self, kind: FaultKind, t: float) -> tuple[int, Fault] | None:
        for i, fault in self._by_kind.get(kind, ()):
            if fault.active(t):
                return i, fault
        return None

    def _hit(self, kind: FaultKind, what: str) -> Fault | None:
        """The active fault of ``kind``, counted and logged; None when none is active."""
        t = self.elapsed
        found = self._find(kind, t)
        if found is None:
            return None
        i, fault = found
        if i not in self._fired:
            self._fired.add(i)
            self.injected[kind] += 1
        self.log.append((t, str(kind), what))
        return fault
