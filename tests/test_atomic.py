"""Atomic file and directory writes."""

from __future__ import annotations

import json

import pytest

from robopolicy.atomic import atomic_write_bytes, atomic_write_json, staged_directory
from robopolicy.errors import DataError


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "card.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2, "name": "ü"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 2, "name": "ü"}
    assert [p.name for p in target.parent.iterdir()] == ["card.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_staged_directory(tmp_path):
    target = tmp_path / "ds"
    with staged_directory(target) as staging:
        assert not target.exists()
        (staging / "f").write_text("1")
    assert (target / "f").read_text() == "1"
    with pytest.raises(DataError, match="already exists"), staged_directory(target):
        pass
    with pytest.raises(RuntimeError), staged_directory(target, overwrite=True) as staging:
        (staging / "f").write_text("2")
        raise RuntimeError
    assert (target / "f").read_text() == "1"
    with staged_directory(target, overwrite=True) as staging:
        (staging / "g").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["g"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
