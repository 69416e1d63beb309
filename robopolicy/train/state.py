"""Training state without pickle: a nested tree of tensors and plain values as safetensors + JSON.

A tree is what ``optimizer.state_dict()``, ``model.state_dict()`` and the RNG getters return:
dicts (any hashable JSON-able keys, e.g. Adam's integer parameter ids), lists, tuples, tensors,
numpy arrays, numbers, strings, booleans and None. :func:`save_tree` writes

    <dir>/<name>.safetensors   every tensor, named by its path in the tree ("optimizer/state/0/…")
    <dir>/<name>.json          the tree, with each tensor replaced by {"__tensor__": its name}

and :func:`load_tree` gives back an equal tree: the same tensors bit for bit (dtype and shape
included), tuples as tuples, integer keys as integers, NaN and infinities as floats. Anything
else (a class instance, a function) is a TypeError at save time; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robopolicy.atomic import atomic_write_json
from robopolicy.errors import DataError

FORMAT = "robopolicy.train_state"
VERSION = 1
_TENSOR, _TUPLE, _ITEMS, _ARRAY, _FLOAT = (
    "__tensor__",
    "__tuple__",
    "__items__",
    "__ndarray__",
    "__float__",
)


def save_tree(directory: str | Path, name: str, tree: Any) -> None:
    """Write ``tree`` as ``<name>.safetensors`` and ``<name>.json`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    document = {"format": FORMAT, "version": VERSION, "tree": _encode(tree, "", tensors)}
    save_file(tensors, str(directory / f"{name}.safetensors"), metadata={"format": FORMAT})
    atomic_write_json(directory / f"{name}.json", document, indent=None)


def load_tree(directory: str | Path, name: str) -> Any:
    """Read back what :func:`save_tree` wrote."""
    directory = Path(directory)
    file = directory / f"{name}.json"
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        tensors = load_file(str(directory / f"{name}.safetensors"))
    except (OSError, ValueError) as exc:
        raise DataError(file, f"unreadable training state ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DataError(file, f"not a {FORMAT} document")
    if document.get("version") != VERSION:
        raise DataError(file, f"training state version {document.get('version')!r} unsupported")
    return _decode(document["tree"], tensors)


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = path or "."
        tensors[key] = value.detach().cpu().clone().contiguous()
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        return {_ARRAY: value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return _encode(value.item(), path, tensors)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
        if plain:
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, bool | int | str | float | tuple) and k is not None:
                raise TypeError(f"training state key {k!r} at {path or '/'} is not JSON-able")
            items.append([_encode(k, "", {}), _encode(v, f"{path}/{k}", tensors)])
        return {_ITEMS: items}
    raise TypeError(f"training state value at {path or '/'} of type {type(value).__name__}")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        return tensors[value[_TENSOR]]
    if _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if _ITEMS in value:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value[_ITEMS]}
    if _ARRAY in value:
        return np.array(value["data"], dtype=np.dtype(value[_ARRAY])).reshape(value["shape"])
    if _FLOAT in value:
        return float(value[_FLOAT])
    return {k: _decode(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def rng_states() -> dict[str, Any]:
    """The global generators of torch (CPU), numpy and Python, as a tree."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
