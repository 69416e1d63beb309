"""The policy server's config: where it listens, what it accepts, how it batches.

Binding anything but a loopback address without a shared token is refused here, so no caller
of :class:`~robopolicy.serve.server.PolicyServer` can expose a policy by accident (R8).
"""

from __future__ import annotations

import dataclasses
import ipaddress

from robopolicy.serve.wire import WireLimits

LOOPBACK_NAMES = ("localhost",)
MIN_TOKEN_LENGTH = 8


@dataclasses.dataclass
class ServerConfig:
    """How a :class:`PolicyServer` listens and what it accepts."""

    host: str = "127.0.0.1"
    """Address to bind. Anything but a loopback address requires ``token``."""
    port: int = 8765
    """TCP port; 0 picks a free one (see :attr:`PolicyServer.address`)."""
    token: str | None = None
    """Shared secret every request must carry in ``token`` (compared in constant time)."""
    max_batch: int = 1
    """Most samples stacked into one forward pass; 1 runs each request alone."""
    batch_wait_ms: float = 0.0
    """Extra wait for more requests to stack (when max_batch > 1). At 0 a pass stacks the
    requests that queued while the previous pass ran, so a lone client never waits."""
    max_request_batch: int = 64
    """Largest B one request may ask for."""
    max_queue: int = 64
    """Most ``infer`` jobs waiting; beyond it requests get ``overloaded``."""
    max_connections: int = 64
    """Most open connections; further ones are closed at once."""
    max_inflight: int = 8
    """Most unanswered ``infer`` requests per connection."""
    max_timeout_ms: float = 60_000.0
    """Largest ``timeout_ms`` a request may give."""
    frame_timeout_s: float = 10.0
    """Time to receive a frame's body once its header arrived; slower senders are cut off."""
    max_write_buffer: int = 64 << 20
    """Unsent reply bytes after which a connection that does not read is closed."""
    limits: WireLimits = dataclasses.field(default_factory=WireLimits)
    """Frame and message size caps."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token must have at least {MIN_TOKEN_LENGTH} characters")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"refusing to bind {self.host!r} without a token: give --token (or bind 127.0.0.1)"
            )
        for name in ("max_batch", "max_request_batch", "max_queue", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_inflight < 1 or not self.batch_wait_ms >= 0:
            raise ValueError("max_inflight must be >= 1 and batch_wait_ms >= 0")
        if not (self.max_timeout_ms > 0 and self.frame_timeout_s > 0):
            raise ValueError("max_timeout_ms and frame_timeout_s must be positive")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost`` or a loopback address)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
