"""The public Python API: ``robopolicy.__all__`` and ``sim.__all__`` (``examples/`` uses them).

Every name resolves to the object its module defines, none is shadowed by a submodule of the
same name, and ``import robopolicy`` — the serving client with it — loads no torch.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import types

import pytest

import robopolicy
import sim


@pytest.mark.parametrize("package", [robopolicy, sim], ids=["robopolicy", "sim"])
def test_every_public_name_resolves(package):
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert not set(package.__all__) & submodules  # a submodule would shadow the name
    for name in package.__all__:
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), name
        assert value.__name__ == name  # the module's own object, under its own name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = package.nothing


def test_import_robopolicy_and_its_client_load_no_torch():
    code = (
        "import sys, robopolicy, sim; from robopolicy import PolicyClient, PolicyDriver; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
