"""``robopolicy teleop``: record demonstrations by driving an arm from a teleop device.

    robopolicy teleop --robot sim --device keyboard --out demos.zarr --cameras overview,wrist
    robopolicy teleop --robot feetech --port /dev/ttyACM0 --calibration so101.json \\
        --device leader --leader-port /dev/ttyACM1 --leader-calibration leader.json \\
        --cameras front=0,top=/dev/video2 --episodes 20 --task "put the cube in the bowl"
    robopolicy teleop --robot sim --device gamepad --out dagger.zarr --server 127.0.0.1:8765

A session (:mod:`hardware.teleop.session`) records ``--episodes`` episodes into the episode store
``--out``; re-running with the same ``--out`` continues its numbering, and refuses when the robot,
the cameras or the fps differ. Keyboard (also the leader arm's buttons): enter keeps the episode
(between episodes: starts the next), backspace discards it, ``b`` re-records it, escape quits;
the motion keys are in :mod:`hardware.teleop.keyboard`. Ctrl-C or SIGTERM end the session: the
kept episodes stay, the one in flight is discarded. Any
:class:`~hardware.teleop.session.TeleopConfig` field can be set as ``key=value`` after the
options (``reset_seconds=2 max_step=0.02``).

``--server HOST:PORT`` (and ``--token``, as for ``robopolicy control``) turns on intervention
mode (:mod:`hardware.teleop.intervention`): the policy served there drives, and the operator
takes over (``t``; the gamepad's LB) and hands back (``g``; RB) at any moment; every frame
records who drove it as ``intervention``. The SpaceMouse's two buttons are taken (gripper,
keep), so with ``--server`` it gets the keyboard's keys as well, as the leader arm always does.
The policy's settings are ``policy.<field>=value`` overrides (``policy.stop_timeout_s=2``).

``--cameras`` is a comma-separated list of ``[NAME=]SOURCE``: a number or a path is an OpenCV
device (``0``, ``/dev/video2``), anything else a view of the simulated arm (``overview``,
``wrist``; ``--robot sim`` or ``--dry-run``). The status goes to stderr — a status line, and a
window of the camera images when pygame and a display are there; with ``--headless`` JSON lines
only — and the summary to stdout (one JSON document with ``--json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hardware.commands import (
    ROBOT_ARGS,
    SERVER_ARGS,
    client_factory,
    config_from_args,
    driver_from_args,
)
from hardware.teleop.device import device_names
from robopolicy.cli import arg, command, print_json
from robopolicy.errors import RobopolicyError

SIM_CAMERA_MAX_AGE = 1.0
"""``max_age`` (s) of rendered cameras: a frame is as new as the physics, but the first
offscreen render can take this long."""


@command(
    "teleop",
    help="record demonstrations: drive an arm from a teleop device, keep or discard episodes "
    "(with --server a policy drives and the operator takes over at will)",
    args=(
        *ROBOT_ARGS,
        *SERVER_ARGS,
        arg("--device", choices=device_names(), default="keyboard", help="the teleop device"),
        arg("--leader-robot", choices=("feetech", "dynamixel"), default="feetech", help="its bus"),
        arg("--leader-port", default=None, help="the leader arm's serial device"),
        arg("--leader-calibration", default=None, help="the leader arm's calibration JSON"),
        arg("--out", required=True, help="episode store to record into (resumed when present)"),
        arg("--cameras", default="", help="[NAME=]SOURCE,... (OpenCV index or path, sim view)"),
        arg("--camera-size", default="96x128", help="camera frames, HEIGHTxWIDTH"),
        arg("--fps", type=float, default=None, help="control and recording rate (default 30)"),
        arg("--episodes", type=int, default=None, help="episodes to keep (default 1)"),
        arg("--episode-seconds", type=float, default=None, help="keep an episode after this"),
        arg("--reset-seconds", type=float, default=None, help="pause between episodes"),
        arg("--task", default=None, help="what the episodes show, in words"),
        arg("--headless", action="store_true", help="no window; JSON status lines on stderr"),
        arg("--json", action="store_true", help="the summary as one JSON document"),
        arg("overrides", nargs="*", metavar="KEY=VALUE", help="TeleopConfig overrides"),
    ),
)
def teleop(args: argparse.Namespace) -> int:
    from hardware.recorder import RecorderConfig
    from hardware.teleop.intervention import PolicySource
    from hardware.teleop.session import TeleopConfig, TeleopSession

    flags = {
        "fps": args.fps,
        "episodes": args.episodes,
        "episode_seconds": args.episode_seconds,
        "reset_seconds": args.reset_seconds,
    }
    config = config_from_args(TeleopConfig, flags, args.overrides, "teleop config")
    try:
        recorder = RecorderConfig(Path(args.out), task=args.task)
    except ValueError as exc:
        raise RobopolicyError(f"recorder: {exc}") from None
    policy = None
    if args.server:
        factory = client_factory(args.server, args.token, config.policy.request_timeout_s)
        policy = PolicySource(factory)
    driver = driver_from_args(args)
    cameras = make_cameras(args.cameras, args.camera_size, driver)
    view = make_view(args.headless, bool(cameras))
    device = make_teleop_device(args)
    session = TeleopSession(driver, device, cameras, config, recorder, view=view, policy=policy)
    result = session.run()
    summary = result.to_dict()
    if args.json:
        print_json(summary)
    else:
        numbers = f" (episodes {result.kept[0]}..{result.kept[-1]})" if result.kept else ""
        takeovers = f"; {result.takeovers} takeovers" if args.server else ""
        print(
            f"{result.store}: kept {len(result.kept)}{numbers}, {result.frames} frames; "
            f"discarded {result.discarded}{takeovers}; ended by {result.reason}"
        )
    return 0


def make_teleop_device(args: argparse.Namespace) -> Any:
    """The ``--device``; a leader arm takes its buttons from the keyboard, and so does the
    SpaceMouse in intervention mode (its two buttons are taken)."""
    from hardware.teleop import WithEvents, make_device

    if args.device == "spacemouse" and args.server:
        return WithEvents(make_device("spacemouse"), make_device("keyboard"))
    if args.device != "leader":
        return make_device(args.device)
    if not (args.leader_port and args.leader_calibration):
        raise RobopolicyError(
            "--device leader needs --leader-port DEVICE and --leader-calibration FILE"
        )
    leader = make_device(
        "leader",
        robot=args.leader_robot,
        port=args.leader_port,
        calibration=args.leader_calibration,
    )
    return WithEvents(leader, make_device("keyboard"))


def make_cameras(text: str, size: str, driver: Any) -> list[Any]:
    """The cameras of ``--cameras`` (module docstring), frames of ``size`` (HEIGHTxWIDTH)."""
    from hardware.cameras import make_camera

    try:
        height, width = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise RobopolicyError(f"--camera-size must be HEIGHTxWIDTH, got {size!r}") from None
    cameras = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, source = item.rpartition("=")
        try:
            if source.isdigit() or "/" in source:
                from hardware.cameras.opencv import OpenCVCameraConfig

                device: int | str = int(source) if source.isdigit() else source
                name = name or (f"cam{source}" if source.isdigit() else Path(source).name)
                cameras.append(make_camera(OpenCVCameraConfig(name, height, width, device=device)))
            else:
                from hardware.cameras.sim import SimCameraConfig

                config = SimCameraConfig(
                    name or source, height, width, max_age=SIM_CAMERA_MAX_AGE, view=source
                )
                cameras.append(make_camera(config, arm=_sim_arm(driver, source)))
        except ValueError as exc:
            raise RobopolicyError(f"--cameras {item!r}: {exc}") from None
    return cameras


def make_view(headless: bool, cameras: bool) -> Any:
    """JSON lines when headless; else a status line, in a window of the images if possible."""
    from hardware.teleop.view import HeadlessView, TerminalView, WindowView, window_available

    if headless:
        return HeadlessView()
    if cameras and window_available():
        return WindowView(TerminalView())
    return TerminalView()


def _sim_arm(driver: Any, view: str) -> Any:
    from hardware.sim_arm import SimArm

    arm = getattr(driver, "sim", driver)  # a dry run's MirroredSim moves a SimArm
    if not isinstance(arm, SimArm):
        raise RobopolicyError(
            f"camera view {view!r} renders the simulated arm: use --robot sim or --dry-run, "
            "or give an OpenCV device (a number or a path)"
        )
    return arm
