"""Policy checkpoints: a directory that any process can load without the training code.

    <dir>/config.json             {"format": "robopolicy.policy", "version": 1, "policy": {...}}
    <dir>/model.safetensors       the policy's weights (EMA weights when training kept them)
    <dir>/normalizer.safetensors  normalizer statistics, and normalizer.json its modes
    <dir>/card.json               what data, what task, which command made it, metrics

The directory is built beside its final name and renamed into place, so a checkpoint is either
complete or absent. ``version`` grows when the layout changes; :data:`MIGRATIONS` brings an
older ``config.json`` up to date, so checkpoints made by older commits keep loading. Never
pickle: weights are safetensors, everything else JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robopolicy.atomic import atomic_write_json, staged_directory
from robopolicy.config import from_dict, to_dict
from robopolicy.data.normalize import Normalizer
from robopolicy.errors import DataError
from robopolicy.policies.base import POLICIES, Policy, PolicyConfig, load_policy_types

FORMAT = "robopolicy.policy"
VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"


def _flow_unclipped(document: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: flow policies gained ``clip_sample`` (default on); a version-1 flow
    policy, alone or as a steered policy's base, keeps sampling unclipped."""
    for config in (document["policy"], document["policy"].get("base") or {}):
        if config.get("type") == "flow":
            config.setdefault("clip_sample", False)
    return document


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _flow_unclipped}
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
        weights = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
        save_file(weights, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
        policy.normalizer.save(staging)
        atomic_write_json(staging / CARD_FILE, card or {})
    return path


def read_policy_config(path: str | Path) -> PolicyConfig:
    """The policy config of checkpoint ``path``, migrated to the current version."""
    path = Path(path)
    file = path / CONFIG_FILE
    if not file.is_file():
        raise DataError(path, f"not a policy checkpoint (no {CONFIG_FILE})")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(file, f"unreadable JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DataError(file, f"not a {FORMAT} config", key="format")
    version = document.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise DataError(file, f"version {version!r} is newer than this robopolicy", key="version")
    while version < VERSION:
        document = MIGRATIONS[version](document)
        version += 1
    load_policy_types()
    return from_dict(PolicyConfig, document["policy"], where="policy.")


def load_policy(path: str | Path, *, device: str | torch.device = "cpu") -> Policy:
    """Load the policy saved at ``path``, ready to ``sample`` (eval mode) on ``device``."""
    path = Path(path)
    config = read_policy_config(path)
    normalizer = Normalizer.load(path)
    policy = POLICIES[_type_of(config)](config, normalizer)
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:  # missing, corrupt
        raise DataError(path / WEIGHTS_FILE, f"unreadable weights ({exc})") from exc
    missing, unexpected = policy.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise DataError(
            path / WEIGHTS_FILE,
            f"weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}",
        )
    return policy.to(device).eval()


def read_card(path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``card.json`` (empty when absent)."""
    file = Path(path) / CARD_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def _type_of(config: PolicyConfig) -> str:
    for name, cls in PolicyConfig.variants.items():
        if type(config) is cls:
            return name
    raise DataError(type(config).__name__, "policy config of no registered type")
