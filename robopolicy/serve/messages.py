"""Protocol messages: the request envelope, the checks of an ``infer`` request against the
policy's metadata, and error replies. No torch (the client shares this vocabulary).

See ``protocol.md`` beside this file for the whole protocol. Every check here fails with a
:class:`RequestError` whose ``code`` becomes the error reply's code and whose message names the
field; nothing from a request is ever evaluated, and no reply carries a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
REQUEST_TYPES = ("infer", "health", "metadata")
ENVELOPE = {"type", "id", "timeout_ms", "token"}
INFER_FIELDS = {"obs", "noise", "steps", "prefix", "frozen"}
_ALLOWED = {kind: frozenset(ENVELOPE | (INFER_FIELDS if kind == "infer" else set()))
            for kind in REQUEST_TYPES}  # fmt: skip
TIMESTAMP_KEY = "timestamp"
MAX_ID = 2**63 - 1
FLOAT_DTYPES = ("float16", "float32", "float64")
_FLOATS = tuple(np.dtype(name) for name in FLOAT_DTYPES)

# error codes of replies
MALFORMED = "malformed"  # the frame's body is not a wire message
BAD_REQUEST = "bad_request"  # a field is missing, unknown or of the wrong type
INVALID_INPUT = "invalid_input"  # obs/noise/steps do not fit the policy (the message names it)
UNAUTHORIZED = "unauthorized"  # missing or wrong token; the connection is then closed
EXPIRED = "expired"  # the deadline passed before inference started
OVERLOADED = "overloaded"  # queue or per-connection in-flight limit reached
TOO_LARGE = "too_large"  # frame over the size cap; the connection is then closed
INTERNAL = "internal"  # the policy failed; details stay in the server's log
SHUTTING_DOWN = "shutting_down"  # the server stopped before running the request


class RequestError(Exception):
    """A request the server answers with an error reply ``code``; ``id`` when it was read."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.request_id = code, message, request_id


@dataclasses.dataclass
class Envelope:
    """The fields every request carries."""

    type: str
    id: int
    timeout_ms: float
    token: str | None


@dataclasses.dataclass
class InferInput:
    """A checked ``infer`` request: arrays ready for the policy (floats as float32)."""

    obs: dict[str, np.ndarray]
    """The policy's observation keys, each (B, To, *shape)."""
    noise: np.ndarray | None
    """(B, Tp, Da) float32, or None."""
    steps: int | None
    """Denoising steps, or None for the policy's own."""
    timestamp: np.ndarray | None
    """(B, To) float64 sensing times on the client's clock, or None."""
    batch: int
    """B."""
    prefix: np.ndarray | None = None
    """(B, L, Da) float32 raw-unit actions the chunk must begin with (real-time chunking)."""
    frozen: int | None = None
    """How many of the prefix's actions are committed; None: all L."""

    def group_key(self) -> tuple:
        """Requests with equal keys can be stacked into one forward pass."""
        shapes = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(self.obs.items()))
        held = None if self.prefix is None else (self.prefix.shape[1], self.frozen)
        return shapes, self.noise is None, self.steps, held


def error_reply(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    """The error reply: ``{"type": "error", "id", "code", "message"}``."""
    return {"type": "error", "id": request_id, "code": code, "message": message[:500]}


def valid_id(request_id: Any) -> bool:
    """Whether ``request_id`` is a request id: an int in [0, 2**63)."""
    return type(request_id) is int and 0 <= request_id <= MAX_ID


def parse_envelope(message: Any, max_timeout_ms: float) -> Envelope:
    """Check the envelope of a decoded request (unknown top-level fields are refused)."""
    if not isinstance(message, dict):
        raise RequestError(BAD_REQUEST, "a request is a map")
    request_id = message.get("id")
    if not valid_id(request_id):
        raise RequestError(BAD_REQUEST, "field 'id' must be an int in [0, 2**63)")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in REQUEST_TYPES:
        raise RequestError(BAD_REQUEST, f"field 'type' must be one of {REQUEST_TYPES}", request_id)
    allowed = _ALLOWED[kind]
    if not allowed.issuperset(message):
        extra = sorted(set(message) - allowed)
        raise RequestError(BAD_REQUEST, f"unknown field {extra[0][:64]!r}", request_id)
    timeout = message.get("timeout_ms")
    if not _number(timeout) or not 0 < timeout <= max_timeout_ms:
        raise RequestError(
            BAD_REQUEST, f"field 'timeout_ms' must be a number in (0, {max_timeout_ms}]", request_id
        )
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise RequestError(BAD_REQUEST, "field 'token' must be a string", request_id)
    return Envelope(kind, request_id, float(timeout), token)


def parse_infer(
    message: dict[str, Any], metadata: dict[str, Any], *, max_batch: int, request_id: int
) -> InferInput:
    """Check an ``infer`` request's obs, noise and steps against the policy's ``metadata``."""

    def fail(code: str, text: str) -> RequestError:
        return RequestError(code, text, request_id)

    obs = message.get("obs")
    if not isinstance(obs, dict):
        raise fail(BAD_REQUEST, "field 'obs' must be a map of arrays")
    spec: dict[str, dict[str, Any]] = metadata["obs"]
    n_obs_steps = metadata["n_obs_steps"]
    if any(key not in spec and key != TIMESTAMP_KEY for key in obs):
        extra = sorted(set(obs) - set(spec) - {TIMESTAMP_KEY})
        raise fail(INVALID_INPUT, f"obs has unknown key {extra[0][:64]!r} (want {sorted(spec)})")
    batch: int | None = None
    arrays: dict[str, np.ndarray] = {}
    for key, want in spec.items():
        if key not in obs:
            raise fail(INVALID_INPUT, f"obs lacks {key!r}")
        value = _array(obs[key], f"obs[{key!r}]", want["dtype"], fail)
        if value.ndim != len(want["shape"]) + 1 or list(value.shape[1:]) != want["shape"]:
            raise fail(
                INVALID_INPUT,
                f"obs[{key!r}] has shape {list(value.shape)}, want [B, *{want['shape']}]",
            )
        batch = _same_batch(batch, value, f"obs[{key!r}]", max_batch, fail)
        arrays[key] = value
    if batch is None:
        raise fail(INVALID_INPUT, "the policy declares no observation keys")
    timestamp = None
    if TIMESTAMP_KEY in obs:
        timestamp = _array(obs[TIMESTAMP_KEY], "obs['timestamp']", "float64", fail)
        if timestamp.shape != (batch, n_obs_steps):
            raise fail(
                INVALID_INPUT,
                f"obs['timestamp'] has shape {list(timestamp.shape)}, "
                f"want [{batch}, {n_obs_steps}]",
            )
    noise = message.get("noise")
    if noise is not None:
        want_noise = [batch, metadata["horizon"], metadata["action_dim"]]
        noise = _array(noise, "noise", "float32", fail)
        if list(noise.shape) != want_noise:
            raise fail(INVALID_INPUT, f"noise has shape {list(noise.shape)}, want {want_noise}")
    steps = message.get("steps")
    if steps is not None and (type(steps) is not int or not 1 <= steps <= metadata["max_steps"]):
        raise fail(INVALID_INPUT, f"steps must be an int in [1, {metadata['max_steps']}]")
    prefix, frozen = message.get("prefix"), message.get("frozen")
    if prefix is not None:
        if not metadata.get("inpaint"):
            raise fail(INVALID_INPUT, "this server cannot hold a prefix (serve --backend auto)")
        prefix = _array(prefix, "prefix", "float32", fail)
        horizon, action_dim = metadata["horizon"], metadata["action_dim"]
        shape = list(prefix.shape)
        if len(shape) != 3 or shape[::2] != [batch, action_dim] or not 1 <= shape[1] <= horizon:
            raise fail(
                INVALID_INPUT,
                f"prefix has shape {shape}, want [{batch}, 1..{horizon}, {action_dim}]",
            )
    if frozen is not None:
        if prefix is None:
            raise fail(BAD_REQUEST, "field 'frozen' needs 'prefix'")
        if type(frozen) is not int or not 0 <= frozen <= prefix.shape[1]:
            raise fail(INVALID_INPUT, f"frozen must be an int in [0, {prefix.shape[1]}]")
    return InferInput(arrays, noise, steps, timestamp, batch, prefix, frozen)


def _array(value: Any, name: str, dtype: str, fail: Any) -> np.ndarray:
    """``value`` as an array of ``dtype``; a float dtype accepts any float width and must be
    finite once cast (float32 obs and noise pass unchanged; a float64 1e39 is inf in float32)."""
    if not isinstance(value, np.ndarray):
        raise fail(BAD_REQUEST, f"{name} must be an array, got {type(value).__name__}")
    have = value.dtype  # numpy's dtype.name is a slow Python property: compare dtypes
    if have != _dtype(dtype):
        if dtype not in FLOAT_DTYPES or have not in _FLOATS:
            raise fail(INVALID_INPUT, f"{name} has dtype {have.name}, want {dtype}")
        with np.errstate(over="ignore"):  # an overflowing cast is refused just below
            value = value.astype(dtype)
    if dtype in FLOAT_DTYPES and not np.isfinite(value).all():
        raise fail(INVALID_INPUT, f"{name} has NaN or inf (in {dtype})")
    return value


@functools.cache
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


def _same_batch(batch: int | None, value: np.ndarray, name: str, limit: int, fail: Any) -> int:
    size = int(value.shape[0])
    if not 1 <= size <= limit:
        raise fail(INVALID_INPUT, f"{name} has batch {size}, want 1..{limit}")
    if batch is not None and size != batch:
        raise fail(INVALID_INPUT, f"{name} has batch {size}, others {batch}")
    return size


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
