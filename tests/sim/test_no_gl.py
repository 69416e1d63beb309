"""A machine with no GL library at all: the main job completes without videos, and what cannot
work without rendering fails with one clear line. Each test runs the command line in a fresh
process whose dynamic loader finds no EGL, OSMesa or GL (``tests/sim/no_gl/sitecustomize.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.gl import HINT

NO_GL = Path(__file__).parent / "no_gl"


def run_without_gl(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``robopolicy ARGS`` with every GL library hidden and no backend chosen in advance."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "PYOPENGL_PLATFORM")}
    for name in ("MUJOCO_GL", "ROBOPOLICY_GL"):
        environ.pop(name, None)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NO_GL), environ.get("PYTHONPATH")]))
    environ |= env
    command = [sys.executable, "-m", "robopolicy", *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_quickstart_completes_without_gl_and_says_videos_were_skipped(tmp_path):
    out = tmp_path / "qs"
    done = run_without_gl("quickstart", "--tiny", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    skipped = result["videos_skipped"]
    assert skipped.startswith("no offscreen GL backend works here") and HINT in skipped
    assert "egl: no library" in skipped and "osmesa: no library" in skipped
    for figures in [*result["policies"].values(), result["finetuned"]]:
        assert figures["videos"] == [] and figures["videos_skipped"] == skipped
    assert 0.0 <= result["bc_success"] <= 1.0 and 0.0 <= result["finetuned_success"] <= 1.0
    assert (out / "demos.zarr").is_dir() and (out / "curves.png").stat().st_size > 0
    assert f"- No videos: {skipped}" in (out / "report.md").read_text()
    assert done.stderr.count("videos skipped:") == 1  # one line, not one per evaluation
    assert "Traceback" not in done.stderr and "OpenGL_accelerate" not in done.stderr


def test_camera_observations_without_gl_fail_in_one_line(tmp_path):
    out = tmp_path / "images.zarr"
    args = ("collect", "--task", "arm-push", "--episodes", "1", "--cameras", "front")
    done = run_without_gl(*args, "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: no offscreen GL backend")
    assert HINT in done.stderr and not out.exists()


def test_a_backend_the_user_names_is_the_only_one_tried(tmp_path):
    done = run_without_gl(
        "collect", "--task", "arm-push", "--episodes", "1", "--cameras", "wrist",
        "--out", str(tmp_path / "x.zarr"), MUJOCO_GL="osmesa",
    )  # fmt: skip
    assert done.returncode == 2 and "(osmesa: no library)" in done.stderr
