"""Imported at start-up by every Python process whose ``PYTHONPATH`` holds this folder: a dynamic
loader that finds no GL library (EGL, OSMesa, GL, GLES), as on a machine that has none
(``tests/sim/test_no_gl.py``)."""

import ctypes
import re

_GL = re.compile(r"(^|/)lib(EGL|OSMesa|GL|GLX|OpenGL|GLESv\d)\b")
_load = ctypes.CDLL.__init__


def _refuse(self, name, *args, **kwargs):
    if name and _GL.search(str(name)):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")
    _load(self, name, *args, **kwargs)


ctypes.CDLL.__init__ = _refuse
