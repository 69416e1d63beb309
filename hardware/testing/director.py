"""The fault campaign's director: injects one session's faults from its own thread, each once
the daemon has recovered from the one before (:mod:`hardware.testing.campaign`).

Each ``inject`` returns when its fault is over; ``_fresh_chunk`` then waits until the daemon
executes a chunk accepted after that moment. Bad replies are followed to where they were
refused: the server's error replies, the client's refusals, the daemon's chunk rejections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hardware.daemon import Daemon, Mode
from hardware.faults import FaultKind
from hardware.testing.fault_switch import FaultSwitch

if TYPE_CHECKING:
    from hardware.testing.campaign import Campaign

FAULTS = (
    "server_frozen",
    "server_killed",
    "link_cut",
    "inference_overrun",
    "nan_action",
    "out_of_range_chunk",
    "stale_sensor",
    "driver_exception",
    "corrupt_reply",
)
"""The fault classes of a session (the e-stop, ``estop_mid_motion``, ends it)."""
RECOVERY = 10.0
"""Seconds a fault's end may take to be followed by a fresh chunk; only a broken daemon waits
this long (a healthy one recovers in a few tenths of a second)."""
GAP = 0.05
"""Seconds of healthy motion after a recovery before the next fault."""


class Director:
    """Injects one session's faults from its own thread, paced by the daemon's recovery."""

    def __init__(
        self,
        campaign: Campaign,
        daemon: Daemon,
        switch: FaultSwitch,
        ended: threading.Event,
        session: int,
    ) -> None:
        self.campaign, self.daemon, self.switch = campaign, daemon, switch
        self.ended, self.session = ended, session
        self.card = campaign.card
        self.done = threading.Event()

    def run(self, order: list[str], pressed: list[float]) -> None:
        loop = self.daemon.loop
        try:
            if loop is None or not self._until(
                lambda: loop.stats.chunks_accepted > 0 and loop.mode is Mode.RUN
            ):
                return
            for kind in order:
                if self.ended.is_set():
                    return
                self.inject(kind)
                end = time.monotonic()
                recovered = self._fresh_chunk()
                self.card.fault(kind, recovered, time.monotonic() - end if recovered else None)
                self.ended.wait(GAP)
            if self._fresh_chunk():  # mid-motion: a chunk has just started
                pressed.append(time.monotonic())
                self.switch.switch(FaultKind.ESTOP)
        finally:
            if not pressed and loop is not None:  # no e-stop to come: end the run now
                loop.request_stop("the director could not go on")
            self.done.set()

    # -- the faults ---------------------------------------------------------------------------

    def inject(self, kind: str) -> None:
        """Inject ``kind`` and return once it is over."""
        campaign, proxy, odd = self.campaign, self.campaign.proxy, self.session % 2 == 1
        if kind == "server_frozen":
            campaign.server.freeze()
            self.ended.wait(0.35)
            campaign.server.thaw()
        elif kind == "server_killed":
            self.card.server_crashes += int(not campaign.server.alive())
            campaign.server.kill()
            campaign.server = campaign.start_server()
            proxy.upstream = campaign.server.address
        elif kind == "link_cut":  # connections closed and refused, or every frame lost
            if odd:
                proxy.drop(True)
                self.ended.wait(0.35)
                proxy.drop(False)
            else:
                proxy.cut(outage=0.3)
                self.ended.wait(0.3)
        elif kind == "inference_overrun":  # a slow policy, or a slow link: late replies
            if odd:
                proxy.delay(0.4)
                self.ended.wait(0.45)
                proxy.delay(0.0)
            else:
                campaign.mode(delay_ms=400)
                self.ended.wait(0.45)
                campaign.mode()
        elif kind == "nan_action":  # refused by the server, then NaN slipped past it on the wire
            self._server_mode("nan_action", "nan", "server_internal", "server")
            self._proxy_fault("nan_action", lambda: proxy.poison(1, "nan"))
        elif kind == "out_of_range_chunk":
            self._server_mode("out_of_range_chunk", "out_of_range" if odd else "jump", "rejected")
            self._proxy_fault("out_of_range_chunk", lambda: proxy.poison(1, "far"))
        elif kind == "corrupt_reply":
            for _ in range(2):
                self._proxy_fault("corrupt_reply", lambda: proxy.flip(1))
        elif kind == "stale_sensor":
            self._driver_fault(FaultKind.STALE, 0.2)
        elif kind == "driver_exception":
            self._driver_fault(FaultKind.WRITE_ERROR, 0.2)
        else:
            raise ValueError(f"unknown fault class {kind!r}")

    def _driver_fault(self, kind: FaultKind, seconds: float) -> None:
        self.switch.switch(kind)
        self.ended.wait(seconds)
        self.switch.switch(None)

    def _server_mode(self, kind: str, mode: str, refusal: str, by: str = "daemon") -> None:
        """The server answers in ``mode`` until it has made two bad chunks (or RECOVERY s);
        every outcome from then until the first good chunk that is ``refusal`` (or a reply
        too late to take) counts as rejected. The requester asks one request at a time, so
        once a good chunk came back no bad reply is still in flight."""
        campaign = self.campaign
        before = campaign.emitted().get(mode, 0)
        begin = time.monotonic()
        campaign.mode(mode=mode)
        self._until(lambda: campaign.emitted().get(mode, 0) >= before + 2)
        campaign.mode()
        off = time.monotonic()
        end = self._until(
            lambda: next((t for t, o in self._outcomes() if t > off and o == "chunk"), None)
        )
        tried = campaign.emitted().get(mode, 0) - before
        seen = [o for t, o in self._outcomes() if begin <= t <= (end or time.monotonic())]
        refused, late = seen.count(refusal), seen.count("timeouts")
        counts = self.card.bad_inputs[kind]
        counts.update(tried=tried, rejected=refused + late)
        counts[f"rejected_{by}"] += refused
        counts["rejected_client_late"] += late

    def _proxy_fault(self, kind: str, arm: Callable[[], None]) -> None:
        """One reply damaged by the proxy, followed to its own outcome. A frame that no longer
        decodes is the client's to refuse (it reconnects and asks again, so the outcome seen is
        the retry's)."""
        proxy = self.campaign.proxy
        seen = len(proxy.events)
        arm()
        if not self._until(lambda: len(proxy.events) > seen):
            return
        at, _, field = proxy.events[seen]
        outcome = self._until(lambda: next((o for t, o in self._outcomes() if t > at), None))
        counts = self.card.bad_inputs[kind]
        counts["tried"] += 1
        by = {
            "rejected": "daemon",
            "connection_errors": "client",
            "timeouts": "client",  # a damaged id: the reply is ignored
            "client_error": "client",
        }.get(str(outcome))
        if field == "undecodable":  # the client drops it and asks again on a fresh connection
            by = "client"
        if by is not None:
            counts["rejected"] += 1
            counts[f"rejected_{by}"] += 1
        elif outcome == "chunk":  # the damage left a valid, within-limits chunk
            counts["passed"] += 1
            counts[f"passed_{field}"] += 1

    # -- waiting ------------------------------------------------------------------------------

    def _outcomes(self) -> list[tuple[float, str]]:
        requester = self.daemon.requester
        return [] if requester is None else list(requester.outcomes)

    def _until(self, condition: Callable[[], Any]) -> Any:
        """``condition()``'s first truthy value, polled until RECOVERY s or the run's end."""
        deadline = time.monotonic() + RECOVERY
        while time.monotonic() < deadline and not self.ended.is_set():
            value = condition()
            if value:
                return value
            self.ended.wait(0.01)
        return None

    def _fresh_chunk(self) -> bool:
        """Wait until the daemon accepts a chunk after now and runs it."""
        loop = self.daemon.loop
        if loop is None:
            return False
        accepted = loop.stats.chunks_accepted
        return bool(
            self._until(lambda: loop.stats.chunks_accepted > accepted and loop.mode is Mode.RUN)
        )
