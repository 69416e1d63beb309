"""What every hostile input must end in, checked the same way for every crafted dataset.

:func:`refused` runs a ``robopolicy`` command in-process and asserts the outcome the issue asks
for: exit status 2, exactly one ``error:`` line naming the file and field, no traceback, and
nothing written, changed or removed anywhere under the test's directory (so no file outside the
destination, no partial destination, and an untouched source).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from robopolicy.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``: relative path -> content hash ("dir" for a
    directory, the target for a link)."""
    out = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            out[name] = f"link {path.readlink()}"
        elif path.is_dir():
            out[name] = "dir"
        else:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(
    argv: Sequence[str],
    root: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    names: Sequence[str],
) -> str:
    """Run ``robopolicy argv``; assert it is refused with one ``error:`` line holding every
    string of ``names`` and that nothing under ``root`` changed. Return the error line."""
    capsys.readouterr()
    before = snapshot(root)
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    after = snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"written, changed or removed: {changed}"
    return lines[0]


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Rewrite the JSON file ``path`` with ``change`` applied to its document (in place, or
    returning a replacement)."""
    document = json.loads(path.read_text())
    result = change(document)
    path.write_text(json.dumps(document if result is None else result))
