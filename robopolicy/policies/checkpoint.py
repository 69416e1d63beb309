"""Policy checkpoints: a directory that any process can load without the training code.

    <dir>/config.json             {"format": "robopolicy.policy", "version": 4, "policy": {...}}
    <dir>/interface.json          what the policy observes and does: features with units and
                                  sources, the action, fps, To/Tp/Ta (policies/interface.py)
    <dir>/model.safetensors       the policy's weights (EMA weights when training kept them)
    <dir>/normalizer.safetensors  normalizer statistics, and normalizer.json its modes
    <dir>/card.json               what data, what task, which command made it, metrics

The directory is built beside its final name and renamed into place, so a checkpoint is either
complete or absent. ``version`` grows when the layout changes; :data:`MIGRATIONS` brings an
older ``config.json`` up to date, so checkpoints made by older commits keep loading. A
checkpoint older than version 4 has no ``interface.json``: its interface is what its config
tells (shapes, To/Tp/Ta; sources unknown), with the fps of its card where that gives one. Never
pickle: weights are safetensors, everything else JSON.

The interface is a file of its own, not a part of ``config.json``: ``config.json`` holds the
arguments that build the policy, the interface is the policy's contract with the world — the
server publishes it and the control daemon reads it without building anything — and it has its
own bounds and errors.

Loading trusts nothing in the directory: a malformed ``config.json`` or ``interface.json`` is a
DataError naming the file and field (an interface must also agree with the config: the same
keys, shapes and window), and the policy is first built on PyTorch's ``meta`` device (no memory)
and compared tensor by tensor with the shapes in the safetensors header, so a config whose sizes
disagree with its weights — or would need gigabytes — is refused before anything is allocated.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from robopolicy.atomic import atomic_write_json, staged_directory
from robopolicy.config import ConfigError, from_dict, to_dict
from robopolicy.data.normalize import Normalizer
from robopolicy.errors import DataError
from robopolicy.policies.base import POLICIES, Policy, PolicyConfig, load_policy_types
from robopolicy.policies.interface import MAX_FPS, Interface

FORMAT = "robopolicy.policy"
VERSION = 4
CONFIG_FILE = "config.json"
INTERFACE_FILE = "interface.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
MAX_CONFIG_BYTES = 1 << 18
"""Largest ``config.json`` read (ours are a few KB); it bounds the layer lists it may hold."""
MAX_CARD_BYTES = 1 << 24
"""Largest ``card.json`` read."""
MAX_INTERFACE_BYTES = 1 << 20
"""Largest ``interface.json`` read (ours are a few KB; a feature's names make it grow)."""
MAX_UNSAVED_BYTES = 1 << 30
"""Largest total of the tensors a policy builds that its weights file does not hold (noise
schedule tables, pixel statistics): they are sized by the config alone."""


def _flow_unclipped(document: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: flow policies gained ``clip_sample`` (default on); a version-1 flow
    policy, alone or as a steered policy's base, keeps sampling unclipped."""
    for config in (document["policy"], document["policy"].get("base") or {}):
        if config.get("type") == "flow":
            config.setdefault("clip_sample", False)
    return document


def _steps_renamed(document: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3: the step count per sample is ``steps`` in every policy config, once
    ``num_inference_steps`` (diffusion, flow) and ``base_steps`` (steered)."""
    for config in (document["policy"], document["policy"].get("base") or {}):
        for old in ("num_inference_steps", "base_steps"):
            if old in config:
                config["steps"] = config.pop(old)
    return document


def _interface_added(document: dict[str, Any]) -> dict[str, Any]:
    """Version 3 -> 4: checkpoints gained ``interface.json``; ``config.json`` is unchanged (an
    older checkpoint's interface is derived from its config and card: :func:`_read_interface`)."""
    return document


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _flow_unclipped,
    2: _steps_renamed,
    3: _interface_added,
}
"""version -> function turning that version's config.json document into version + 1's."""


def save_policy(
    policy: Policy, path: str | Path, *, card: dict[str, Any] | None = None, overwrite: bool = True
) -> Path:
    """Write ``policy`` as a checkpoint directory at ``path`` (atomically); return the path."""
    path = Path(path)
    with staged_directory(path, overwrite=overwrite) as staging:
        atomic_write_json(
            staging / CONFIG_FILE,
            {"format": FORMAT, "version": VERSION, "policy": to_dict(policy.config)},
        )
        atomic_write_json(staging / INTERFACE_FILE, to_dict(policy.interface))
        weights = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
        save_file(weights, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
        policy.normalizer.save(staging)
        atomic_write_json(staging / CARD_FILE, card or {})
    return path


def read_policy_config(path: str | Path) -> PolicyConfig:
    """The policy config of checkpoint ``path``, migrated to the current version."""
    return _read_config(Path(path))[0]


def _read_config(path: Path) -> tuple[PolicyConfig, int]:
    """The policy config of checkpoint ``path`` migrated to the current version, and the
    version it was saved at."""
    file = path / CONFIG_FILE
    if not file.is_file():
        raise DataError(path, f"not a policy checkpoint (no {CONFIG_FILE})")
    document = _read_json(file, MAX_CONFIG_BYTES, "a policy config")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DataError(file, f"not a {FORMAT} config", key="format")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(
            file, f"expected a version from 1 to {VERSION}, got {version!r}", key="version"
        )
    if version > VERSION:
        raise DataError(file, f"version {version!r} is newer than this robopolicy", key="version")
    if not isinstance(document.get("policy"), dict):
        raise DataError(file, "missing, or not a JSON object", key="policy")
    load_policy_types()
    saved = version
    try:
        while version < VERSION:
            document = MIGRATIONS[version](document)
            version += 1
        return from_dict(PolicyConfig, document["policy"], where="policy."), saved
    except (ConfigError, AttributeError, TypeError, ValueError) as exc:  # ill-typed fields
        raise DataError(file, str(exc) or type(exc).__name__, key="policy") from exc


def _read_interface(
    path: Path, config: PolicyConfig, version: int, card: dict[str, Any]
) -> Interface:
    """The interface of checkpoint ``path`` (saved at ``version``) whose policy has ``config``:
    its ``interface.json``, checked against the config; before version 4, what the config and
    the ``fps`` of its ``card`` tell."""
    file = path / INTERFACE_FILE
    if version < 4:
        return Interface.from_config(config, fps=_card_fps(path, card))
    if not file.is_file():
        raise DataError(path, f"a version-{version} checkpoint without {INTERFACE_FILE}")
    document = _read_json(file, MAX_INTERFACE_BYTES, "an interface")
    try:
        interface = from_dict(Interface, document, where="")
    except ConfigError as exc:
        raise DataError(file, str(exc)) from None
    try:
        interface.check_fits(config)
    except ValueError as exc:
        raise DataError(file, f"disagrees with {CONFIG_FILE}: {exc}") from None
    return interface


def _card_fps(path: Path, card: dict[str, Any]) -> float | None:
    """The ``fps`` an older checkpoint's ``card`` gives (None when it gives none)."""
    fps = card.get("fps")
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= MAX_FPS:
        raise DataError(
            path / CARD_FILE, f"expected a number in (0, {MAX_FPS:g}], got {fps!r}", key="fps"
        )
    return float(fps)


def load_policy(path: str | Path, *, device: str | torch.device = "cpu") -> Policy:
    """Load the policy saved at ``path``, ready to ``sample`` (eval mode) on ``device``. The
    card is read too (an older checkpoint's fps is there), so a damaged one is refused."""
    path = Path(path)
    config, version = _read_config(path)
    card = read_card(path)
    normalizer = Normalizer.load(path)
    cls = POLICIES[_type_of(config)]
    file = path / WEIGHTS_FILE
    try:
        with safe_open(str(file), framework="pt") as header:  # reads the header only
            names = header.keys()  # a safe_open handle is not iterable itself
            shapes = {name: tuple(header.get_slice(name).get_shape()) for name in names}
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:  # missing, corrupt
        raise DataError(file, f"unreadable weights ({exc})") from exc
    _check_fit(path, _build(path, cls, config, normalizer, meta=True), shapes)
    policy = _build(path, cls, config, normalizer, meta=False)
    try:
        weights = load_file(str(file))
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        raise DataError(file, f"unreadable weights ({exc})") from exc
    policy.load_state_dict(weights, strict=True)
    policy.interface = _read_interface(path, config, version, card)
    return policy.to(device).eval()


def _build(
    path: Path, cls: type[Policy], config: PolicyConfig, normalizer: Normalizer, *, meta: bool
) -> Policy:
    """The policy of ``config``; with ``meta``, its tensors have shapes but no memory."""
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return cls(config, normalizer)
    except (ValueError, TypeError, RuntimeError) as exc:  # sizes the networks cannot take
        raise DataError(
            path / CONFIG_FILE, f"cannot build the policy ({exc})", key="policy"
        ) from exc


def _check_fit(path: Path, skeleton: Policy, shapes: dict[str, tuple[int, ...]]) -> None:
    """The weights file holds exactly the tensors of ``skeleton`` (built on ``meta``), each of
    the shape the config makes, and the config's other tensors stay under MAX_UNSAVED_BYTES."""
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    file = path / WEIGHTS_FILE
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise DataError(
            file,
            f"weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}",
        )
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise DataError(
                file,
                f"has shape {list(shapes[name])}, the config in {CONFIG_FILE} makes {list(shape)}",
                key=name,
            )
    unsaved = sum(
        t.numel() * t.element_size()
        for name, t in [*skeleton.named_parameters(), *skeleton.named_buffers()]
        if name not in expected
    )
    if unsaved > MAX_UNSAVED_BYTES:
        raise DataError(
            path / CONFIG_FILE,
            f"the config makes {unsaved:,} bytes of tensors beyond the weights (limit "
            f"{MAX_UNSAVED_BYTES:,})",
            key="policy",
        )


def read_card(path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``card.json`` (empty when absent)."""
    file = Path(path) / CARD_FILE
    if not file.is_file():
        return {}
    card = _read_json(file, MAX_CARD_BYTES, "a checkpoint card")
    if not isinstance(card, dict):
        raise DataError(file, "expected a JSON object")
    return card


def _type_of(config: PolicyConfig) -> str:
    for name, cls in PolicyConfig.variants.items():
        if type(config) is cls:
            return name
    raise DataError(type(config).__name__, "policy config of no registered type")


def _read_json(file: Path, limit: int, what: str) -> Any:
    """The JSON document in ``file``, refused (DataError) past ``limit`` bytes or unreadable."""
    try:
        if file.stat().st_size > limit:
            raise DataError(file, f"over {limit} bytes; not {what}")
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(file, f"unreadable JSON ({exc})") from exc
