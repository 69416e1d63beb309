"""``robopolicy data ...``: inspect, convert and view episode datasets."""

from __future__ import annotations

import argparse
import logging

from robopolicy.cli import arg, command, group, print_json

log = logging.getLogger(__name__)

group("data", help="inspect, convert and view episode datasets")


@command(
    "data info",
    help="episodes, frames, fps, and each key's shape, dtype and min/max/mean/std",
    args=[
        arg("path", help="a dataset in any supported format"),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ],
)
def data_info(args: argparse.Namespace) -> int:
    from robopolicy.data.info import dataset_info

    info = dataset_info(args.path)
    if args.json:
        print_json(info)
        return 0
    print(f"{info['path']}  ({info['format']})")
    print(f"episodes {info['episodes']}   frames {info['frames']}   fps {info['fps']}")
    width = max((len(k) for k in info["keys"]), default=3)
    for key, entry in info["keys"].items():
        shape = "x".join(map(str, entry["shape"])) or "scalar"
        print(
            f"  {key:<{width}}  {shape:>12} {entry['dtype']:>8}  "
            f"min {_brief(entry.get('min'))}  max {_brief(entry.get('max'))}  "
            f"mean {_brief(entry.get('mean'))}  std {_brief(entry.get('std'))}"
        )
    return 0


def _brief(values: list[float] | None) -> str:
    if values is None:
        return "-"
    shown = ", ".join(f"{v:.4g}" for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}]"


@command(
    "data convert",
    help="convert a diffusion_policy zarr, LeRobot v2.1/v3.0 or robomimic HDF5 dataset",
    args=[
        arg("src", help="source dataset (format detected)"),
        arg("dst", help="destination path (must not exist unless --overwrite)"),
        arg(
            "--to",
            choices=["zarr", "lerobot"],
            default="zarr",
            help="destination format: the native zarr store or LeRobot v3.0 (default: zarr)",
        ),
        arg(
            "--drop-bad-episodes",
            action="store_true",
            help="leave out episodes that fail validation and report them, instead of failing",
        ),
        arg(
            "--require-video",
            action="store_true",
            help="fail if any video file of the source is missing (default: warn and skip)",
        ),
        arg("--overwrite", action="store_true", help="replace an existing destination"),
        arg(
            "--fps",
            type=float,
            default=None,
            help="frame rate to record when the source has none (e.g. 10 for Push-T)",
        ),
        arg("--json", action="store_true", help="print one JSON document on stdout"),
    ],
)
def data_convert(args: argparse.Namespace) -> int:
    from robopolicy.data.convert import convert

    report = convert(
        args.src,
        args.dst,
        to=args.to,
        drop_bad_episodes=args.drop_bad_episodes,
        require_video=args.require_video,
        overwrite=args.overwrite,
        fps=args.fps,
    )
    summary = {
        "source_format": report.source_format,
        "format": args.to,
        "dst": args.dst,
        "episodes_written": report.written,
        "episodes_dropped": [{"episode": i, "reason": why} for i, why in report.dropped],
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {report.written} episodes ({report.source_format} -> {args.to}) to {args.dst}"
        )
        for index, why in report.dropped:
            print(f"  dropped episode {index}: {why}")
    return 0


@command(
    "data view",
    help="write an mp4 of an episode's cameras with its state and action curves, and a PNG",
    args=[
        arg("path", help="a dataset in any supported format"),
        arg("--episode", type=int, default=0, help="episode index (default 0)"),
        arg(
            "--out",
            default=None,
            help="output directory (default: ./episode_<N>_view next to the working directory)",
        ),
        arg("--json", action="store_true", help="print the written paths as JSON"),
    ],
)
def data_view(args: argparse.Namespace) -> int:
    from robopolicy.data.view import write_episode_view

    written = write_episode_view(args.path, args.episode, args.out)
    if args.json:
        print_json({k: str(v) for k, v in written.items()})
    else:
        for kind, path in written.items():
            print(f"{kind}: {path}")
    return 0
