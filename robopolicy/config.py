"""Typed dataclass configs: JSON-ready dicts both ways, and ``key.path=value`` overrides.

Every component has one dataclass config, validated in ``__post_init__``. This module is the one
layer that turns them into JSON (checkpoints, ``config.json``) and back, and applies command-line
overrides, with a "did you mean" for every unknown key::

    config = from_dict(TrainConfig, json.loads(text))
    config = apply_overrides(config, ["policy.horizon=16", "optim.lr=3e-4"])

A field whose type is a config base with a ``variants`` class attribute (name -> subclass) is
polymorphic: its dict carries ``"type"`` to pick the subclass, and overriding ``x.type`` starts
``x`` afresh from that variant's defaults. A nested config field with :data:`FLAT` metadata is
spelled flat: its fields read and write as the owner's own. A field renamed since runs and
checkpoints were saved is listed in :data:`RENAMED`: its old name is refused, with the new one
suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from robopolicy.errors import RobopolicyError

C = TypeVar("C")
TYPE_KEY = "type"
FLAT = {"flat": True}
"""Metadata of a nested config field whose fields are spelled as its owner's own, in dicts and
overrides alike (``eval_every=0``, not ``cadence.eval_every=0``; tyro's ``OmitArgPrefixes``); a
key the data leaves out keeps the owner's default of that field. Its names must not clash with
the owner's."""


RENAMED = {
    "keep_last": "keep_checkpoints",
    "num_inference_steps": "steps",
    "base_steps": "steps",
    "denoising_steps": "steps",
    "ft_denoising_steps": "finetune_steps",
    "sampling_steps": "steps",
}
"""Old field name -> the name that replaced it: :func:`did_you_mean` suggests the new name for the
old, and :func:`renamed` reads what runs saved before (``train_config.json``, ``rl_config.json``,
the quickstart's ``eval.json``). Checkpoints migrate by version instead
(``robopolicy/policies/checkpoint.py``)."""


def follows(name: str) -> dict[str, str]:
    """Metadata of a field whose None stands for field ``name``'s value (a diffusion policy's
    ``steps``: None is K). ``__post_init__`` resolves it; :func:`to_dict` writes None again while
    the two agree, so a dict round trip (``policy.num_train_timesteps=20`` on the command line)
    keeps it following ``name``."""
    return {"follows": name}


class ConfigError(RobopolicyError):
    """A config that cannot be built: unknown key, wrong type or a value its class refuses."""


def did_you_mean(name: str, choices: Sequence[str], *, always_list: bool = False) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (the new name of a renamed field,
    :data:`RENAMED`), or a list of them; with ``always_list``, the list follows the suggestion
    too."""
    listed = f"choices: {', '.join(sorted(choices))}" if choices else ""
    close = [RENAMED[name]] if RENAMED.get(name) in choices else []
    close = close or difflib.get_close_matches(name, list(choices), n=1)
    if close:
        return f" (did you mean {close[0]!r}?{' ' + listed if always_list else ''})"
    return f" ({listed})" if listed else ""


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON values (tuples as lists, paths as strings)."""
    out: dict[str, Any] = {}
    variants = getattr(type(config), "variants", None)
    if variants:
        out[TYPE_KEY] = _variant_name(type(config))
    for field in dataclasses.fields(config):
        value = _plain(getattr(config, field.name))
        leader = field.metadata.get("follows")
        if leader is not None and value == getattr(config, leader):
            value = None
        for key, item in value.items() if field.metadata.get("flat") else [(field.name, value)]:
            if key in out:
                raise ConfigError(f"{type(config).__name__}: two fields spell {key!r}")
            out[key] = item
    return out


def renamed(data: Mapping[str, Any]) -> dict[str, Any]:
    """A dict saved before a rename (a run's config, a report) with its keys of old names
    (:data:`RENAMED`) spelled anew."""
    data = dict(data)
    for old, new in RENAMED.items():
        if old in data and new not in data:
            data[new] = data.pop(old)
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _variant_name(cls: type) -> str:
    for name, variant in getattr(cls, "variants", {}).items():
        if variant is cls:
            return name
    raise ConfigError(f"{cls.__name__} is not registered in its base's variants")


def from_dict(cls: type[C], data: Mapping[str, Any], *, where: str = "") -> C:
    """Build ``cls`` from ``data``; unknown keys and bad values are a ConfigError naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected an object, got {data!r}")
    data = dict(data)
    variants = getattr(cls, "variants", None)
    if variants:
        name = data.pop(TYPE_KEY, None)
        if name is None:
            if cls in variants.values():
                name = _variant_name(cls)
            else:
                raise ConfigError(f"{where or cls.__name__}: missing {TYPE_KEY!r}")
        if name not in variants:
            raise ConfigError(f"{where}{TYPE_KEY}: unknown {name!r}{did_you_mean(name, variants)}")
        cls = variants[name]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    known = _gather_flat(fields, hints, data)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"{where}{key}: unknown field of {cls.__name__}{did_you_mean(key, known)}"
            )
        if fields[key].metadata.get("flat"):  # its errors name the keys as spelled
            kwargs[key] = from_dict(hints[key], value, where=where)
        else:
            kwargs[key] = _coerce(hints[key], value, f"{where}{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def _gather_flat(
    fields: dict[str, dataclasses.Field], hints: dict[str, Any], data: dict[str, Any]
) -> list[str]:
    """Move the keys of every :data:`FLAT` field's config in ``data`` under that field's name,
    over its default (the owner's); returns the names ``data`` may spell."""
    known = []
    for name, field in fields.items():
        if not field.metadata.get("flat"):
            known.append(name)
            continue
        names = [f.name for f in dataclasses.fields(hints[name]) if f.init]
        known += names
        given = {key: data.pop(key) for key in names if key in data}
        if given:
            data[name] = to_dict(_default(field)) | given
    return known


def build(cls: type[C], **fields: Any) -> C:
    """``cls(**fields)`` with the fields of its :data:`FLAT` configs given flat, as its dicts
    spell them, over the owner's defaults: ``build(DPPOConfig, eval_every=0, num_envs=8)``."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.metadata.get("flat"):
            names = [f.name for f in dataclasses.fields(hints[field.name]) if f.init]
            given = {key: fields.pop(key) for key in names if key in fields}
            if given:
                fields[field.name] = dataclasses.replace(_default(field), **given)
    return cls(**fields)


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` (plain JSON) as the field type ``hint`` expects."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits no type")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(
                f"{where}: {value!r} is not one of {list(args)}"
                f"{did_you_mean(str(value), [str(a) for a in args])}"
            )
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=f"{where}.")
    if origin in (tuple, list, Sequence):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str | Path):
        return Path(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # "name=7" on the command line parses as a number
    if (isinstance(hint, type) and not isinstance(value, hint)) or (
        hint in (int, float) and isinstance(value, bool)
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true, null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """``config`` with each ``dotted.key=value`` applied; a ConfigError names a bad key."""
    data = to_dict(config)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r}: expected key=value")
        node, parts = data, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{where}: not a config section{did_you_mean(part, node)}")
            node = child
        last = parts[-1]
        if last not in node:
            raise ConfigError(f"{key}: unknown field{did_you_mean(last, node)}")
        value = parse_value(text)
        if last == TYPE_KEY and value != node[last]:
            node.clear()  # a new variant starts from its own defaults
        node[last] = value
        data = to_dict(from_dict(type(config), data))
    return from_dict(type(config), data)
