"""Serving: the policy server, its torch-free client and the wire between them.

``from robopolicy.serve import PolicyClient`` imports numpy and msgpack only; the server
(:mod:`robopolicy.serve.server`) is imported on demand and serves an engine of
:mod:`robopolicy.inference` (the dependency runs that way only).
``protocol.md`` beside this file is the protocol on one page.
"""

from robopolicy.serve.client import PolicyClient, ServerError
from robopolicy.serve.wire import WireError, WireLimits

__all__ = ["PolicyClient", "ServerError", "WireError", "WireLimits"]
