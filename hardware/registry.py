"""A registry of named classes that imports built-in entries on demand.

Drivers, cameras and teleop devices each keep one: it knows which module holds each built-in
name and imports that module the first time the name is asked for, so listing names (``--help``,
error messages) never imports an SDK. Classes join it through a decorator in their module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar

from robopolicy.config import did_you_mean

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """Classes of one kind by name; ``what`` names the kind in messages (``"driver"``)."""

    def __init__(self, what: str, modules: Mapping[str, str], error: type[Exception]) -> None:
        self.what = what
        self.modules = dict(modules)
        """Where each built-in entry lives, imported the first time it is asked for."""
        self.error = error
        """Raised for an unknown name."""
        self.entries: dict[str, type[T]] = {}

    def add(self, name: str, cls: type[T]) -> None:
        """Register ``cls`` as ``name``; a different class under a taken name is a ValueError."""
        if name in self.entries and self.entries[name] is not cls:
            raise ValueError(f"{self.what} {name!r} is already registered by {self.entries[name]}")
        self.entries[name] = cls

    def names(self) -> tuple[str, ...]:
        """Every known name (built-in and registered), without importing anything."""
        return tuple(sorted(set(self.modules) | set(self.entries)))

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``, importing its module on demand."""
        if name not in self.entries and name in self.modules:
            importlib.import_module(self.modules[name])
        if name not in self.entries:
            raise self.error(f"unknown {self.what} {name!r}{did_you_mean(name, self.names())}")
        return self.entries[name]
