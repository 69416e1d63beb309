"""The policy server's config: where it listens, what it accepts, how it batches.

Binding anything but a loopback address without a shared token is refused here, so no caller
of :class:`~robopolicy.serve.server.PolicyServer` can expose a policy by accident (R8).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path

from robopolicy.serve.wire import WireLimits

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)
MIN_TOKEN_LENGTH = 8
TOKEN_ENV = "ROBOPOLICY_SERVE_TOKEN"
COUNTS = (
    "max_batch", "max_request_batch", "max_queue", "max_connections",
    "max_connections_per_peer", "health_slots", "max_inflight", "write_buffer_high",
    "max_receiving_bytes",
)  # fmt: skip
TIMES = (
    "max_timeout_ms", "hello_timeout_s", "idle_timeout_s", "header_timeout_s",
    "frame_timeout_s", "reply_timeout_s",
)  # fmt: skip


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
    """Most regular connection slots. When they are full, a new connection evicts the oldest
    one that has not earned its slot yet, or else takes a reserve slot (``health_slots``)."""
    max_connections_per_peer: int = 32
    """Most regular slots held from one client address."""
    health_slots: int = 4
    """Reserve slots used when every regular slot is earned: they answer ``health`` and
    ``metadata`` (anything else gets ``overloaded``), then close."""
    max_inflight: int = 8
    """Most unanswered ``infer`` requests per connection."""
    max_timeout_ms: float = 60_000.0
    """Largest ``timeout_ms`` a request may give."""
    hello_timeout_s: float = 5.0
    """How long a new connection may wait before its first frame begins."""
    idle_timeout_s: float = 60.0
    """How long a connection that earned its slot may stay silent between frames (with no
    request in flight); the client reconnects on its next request."""
    header_timeout_s: float = 2.0
    """Time to receive a frame's 8-byte header once its first byte arrived."""
    frame_timeout_s: float = 10.0
    """Time to receive a frame's body once its header arrived; slower senders are cut off."""
    reply_timeout_s: float = 10.0
    """How long a client may leave ``write_buffer_high`` bytes of replies unread (its requests
    are not read meanwhile) before it is cut off."""
    write_buffer_high: int = 1 << 20
    """Unsent reply bytes at which the server stops reading that connection's requests."""
    max_receiving_bytes: int = 256 << 20
    """Most body bytes being received at once over all connections (frames larger than the
    64 KiB read buffer count their announced size); a frame past it gets ``overloaded``."""
    limits: WireLimits = dataclasses.field(default_factory=WireLimits)
    """Frame and message size caps."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token must have at least {MIN_TOKEN_LENGTH} characters")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"refusing to bind {self.host!r} without a token: set ${TOKEN_ENV} or give "
                "--token-file (or bind 127.0.0.1)"
            )
        for name in COUNTS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in TIMES:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.batch_wait_ms >= 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost`` or a loopback address)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(flag: str | None, path: str | None, env: str | None) -> str | None:
    """The shared token from ``--token-file`` (its first line), ``--token`` or
    ``$ROBOPOLICY_SERVE_TOKEN``; ``--token`` is logged as visible to other users (``ps``).
    ``ValueError`` for an unreadable or empty file, or both flags at once."""
    if flag and path:
        raise ValueError("give --token or --token-file, not both")
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --token-file {path}: {exc}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"--token-file {path} is empty")
        return token
    if flag:
        log.warning(
            "--token is visible to every user of this machine (ps, /proc); "
            "prefer $%s or --token-file",
            TOKEN_ENV,
        )
        return flag
    return env or None
