"""The fault campaign's director: injects one session's faults into a daemon running in its own
process, each once the daemon has recovered from the one before
(:mod:`hardware.testing.campaign`).

The director reaches the daemon three ways, as the parties of a real failure would: the policy
server (frozen, killed, answering late or badly), the fault proxy on the policy link (cut,
dropped, delayed, damaged replies), and the test-only fault channel into the daemon's process
(:mod:`hardware.testing.fault_channel`) for driver faults and for the daemon's progress: its
mode, its counters and the outcome of each of its requests.

Each ``inject`` returns when its fault is over; ``_fresh_chunk`` then waits until the daemon
executes a chunk accepted after that moment. A driver fault stays on until the daemon has
spent ``EFFECT_TICKS`` ticks in its effect (holding, or failing writes), so it is known to have
hit. Bad replies are followed to where they were refused: the server's error replies, the
client's refusals, the daemon's chunk rejections.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hardware.daemon.status import Mode
from hardware.testing.fault_channel import ChannelClient
from hardware.testing.processes import DaemonProcess

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
    "nan_sensor",
    "driver_exception",
    "corrupt_reply",
)
"""The fault classes of a session (the e-stop, ``estop_mid_motion``, ends it)."""
DRIVER_FAULTS = {
    "stale_sensor": ("stale", "sensor_hold_ticks"),
    "nan_sensor": ("nan_state", "sensor_hold_ticks"),
    "driver_exception": ("write_error", "write_errors"),
}
"""Fault class -> (the fault switched in the daemon, the daemon's counter of its effect)."""
RECOVERY = 10.0
"""Seconds a fault's end may take to be followed by a fresh chunk; only a broken daemon waits
this long (a healthy one recovers in a few tenths of a second)."""
GAP = 0.05
"""Seconds of healthy motion after a recovery before the next fault."""
EFFECT_TICKS = 10
"""Ticks the daemon spends in a driver fault's effect before the fault is switched off."""
POLL = 0.02
"""Seconds between looks at the daemon's progress."""


class Director:
    """Injects one session's faults, paced by the daemon's recovery (module docstring)."""

    def __init__(
        self, campaign: Campaign, daemon: DaemonProcess, channel: ChannelClient, session: int
    ) -> None:
        self.campaign, self.daemon, self.channel = campaign, daemon, channel
        self.session = session
        self.card = campaign.card

    def run(self, order: list[str]) -> float | None:
        """Inject the faults of ``order``, then press the e-stop mid-motion; returns the time it
        took effect in the daemon, or None when the run could not go on (the daemon is then
        stopped with SIGTERM)."""
        pressed = None
        try:
            if not self._until(lambda: self._running(0)):
                return None
            for kind in order:
                if not self._alive():
                    return None
                hit = self.inject(kind)
                end = time.monotonic()
                recovered = self._fresh_chunk()
                survived = hit and recovered
                self.card.fault(kind, survived, time.monotonic() - end if survived else None)
                time.sleep(GAP)
            if self._fresh_chunk():  # mid-motion: a chunk has just started
                pressed = self.channel.switch("estop")
            return pressed
        except ConnectionError:  # the daemon has gone: the scorecard will say how
            return None
        finally:
            if pressed is None and self._alive():
                self.daemon.proc.send_signal(signal.SIGTERM)

    # -- the faults ---------------------------------------------------------------------------

    def inject(self, kind: str) -> bool:
        """Inject ``kind`` and return once it is over; whether it took effect."""
        campaign, proxy, odd = self.campaign, self.campaign.proxy, self.session % 2 == 1
        if kind in DRIVER_FAULTS:
            return self._driver_fault(*DRIVER_FAULTS[kind])
        if kind == "server_frozen":
            campaign.server.freeze()
            time.sleep(0.35)
            campaign.server.thaw()
        elif kind == "server_killed":
            self.card.server_crashes += int(not campaign.server.alive())
            campaign.server.kill()
            campaign.server = campaign.start_server()
            proxy.upstream = campaign.server.address
        elif kind == "link_cut":  # connections closed and refused, or every frame lost
            if odd:
                proxy.drop(True)
                time.sleep(0.35)
                proxy.drop(False)
            else:
                proxy.cut(outage=0.3)
                time.sleep(0.3)
        elif kind == "inference_overrun":  # a slow policy, or a slow link: late replies
            if odd:
                proxy.delay(0.4)
                time.sleep(0.45)
                proxy.delay(0.0)
            else:
                campaign.mode(delay_ms=400)
                time.sleep(0.45)
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
        else:
            raise ValueError(f"unknown fault class {kind!r}")
        return True

    def _driver_fault(self, fault: str, counter: str) -> bool:
        """``fault`` on in the daemon until it has counted ``EFFECT_TICKS`` more ``counter``
        (or ``RECOVERY`` s), then off; whether it took effect."""
        target = self._counters()[counter] + EFFECT_TICKS
        self.channel.switch(fault)
        try:
            return bool(self._until(lambda: self._counters()[counter] >= target))
        finally:
            self.channel.switch(None)

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
        end = self._until(lambda: next((t for t, o in self._outcomes(off) if o == "chunk"), None))
        tried = campaign.emitted().get(mode, 0) - before
        seen = [o for t, o in self._outcomes(begin) if t <= (end or time.monotonic())]
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
        outcome = self._until(lambda: next((o for _, o in self._outcomes(at)), None))
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

    # -- the daemon's progress ----------------------------------------------------------------

    def _alive(self) -> bool:
        return self.daemon.proc.poll() is None

    def _outcomes(self, since: float) -> list[tuple[float, str]]:
        """The daemon's request outcomes after ``since`` (same clock as ``time.monotonic``)."""
        return [(t, o) for t, o in self.channel.status(since)["outcomes"]]

    def _counters(self) -> dict[str, Any]:
        """The daemon's mode and counters now (no outcomes)."""
        return self.channel.status(time.monotonic())

    def _running(self, accepted: int) -> bool:
        """Whether the daemon has accepted more than ``accepted`` chunks and executes one."""
        status = self._counters()
        return status["chunks_accepted"] > accepted and status["mode"] == Mode.RUN

    def _until(self, condition: Callable[[], Any]) -> Any:
        """``condition()``'s first truthy value, polled until RECOVERY s or the daemon's end."""
        deadline = time.monotonic() + RECOVERY
        while time.monotonic() < deadline and self._alive():
            value = condition()
            if value:
                return value
            time.sleep(POLL)
        return None

    def _fresh_chunk(self) -> bool:
        """Wait until the daemon accepts a chunk after now and runs it."""
        accepted = self._counters()["chunks_accepted"]
        return bool(self._until(lambda: self._running(accepted)))
