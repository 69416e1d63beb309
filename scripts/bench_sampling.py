"""Window-sampling throughput (samples/s) of the training dataset on the Push-T replay buffer.

Variants: ``lowdim`` (obs ``state``, action) and ``image`` (obs ``img`` uint8 + ``state``, action),
To=2, Tp=16, Ta=8. Each is read through a ``DataLoader`` two ways: ``batched`` (a batch sampler,
one fancy index per key per batch: :func:`robopolicy.data.dataset.batch_loader`) and ``per_item``
(``__getitem__`` per window, then the default collate). Results go to stdout as a table, or as one
JSON document with ``--json``; progress goes to stderr.

    python scripts/bench_sampling.py [PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig, batch_loader

DEFAULT_PATH = (
    Path(__file__).resolve().parents[1].parent / "shared/data/pusht/pusht_cchi_v7_replay.zarr"
)
VARIANTS = {"lowdim": ((), ("state",)), "image": (("img",), ("state",))}


def measure(loader: DataLoader, seconds: float) -> tuple[float, int]:
    """Samples per second over whole passes of ``loader`` for about ``seconds`` (first batch,
    which pays for worker start-up, not counted)."""
    samples, start = 0, None
    while True:
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            samples += batch["action"].shape[0]
            if time.perf_counter() - start >= seconds:
                return samples / (time.perf_counter() - start), samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH), help="Push-T zarr store")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per row")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows: list[dict[str, Any]] = []
    for variant, (image_keys, obs_keys) in VARIANTS.items():
        t0 = time.perf_counter()
        dataset = SequenceDataset(
            SequenceDatasetConfig(
                args.path, obs_keys=obs_keys, image_keys=image_keys, n_obs_steps=2, horizon=16
            )
        )
        load_s = time.perf_counter() - t0
        print(f"{variant}: {len(dataset)} windows loaded in {load_s:.1f} s", file=sys.stderr)
        for batch_size in args.batch_sizes:
            for workers in args.workers:
                # persistent workers: measure steady state, not a start-up per pass
                loader_args = dict(num_workers=workers, persistent_workers=workers > 0)
                for path in ("batched", "per_item"):
                    if path == "batched":
                        loader = batch_loader(dataset, batch_size, **loader_args)
                    else:
                        loader = DataLoader(dataset, batch_size, shuffle=True, **loader_args)
                    rate, n = measure(loader, args.seconds)
                    row = dict(
                        variant=variant, path=path, batch_size=batch_size, num_workers=workers,
                        samples_per_s=round(rate), samples=n, load_s=round(load_s, 2),
                    )  # fmt: skip
                    rows.append(row)
                    print(f"  {row}", file=sys.stderr)

    if args.json:
        print(
            json.dumps(
                {
                    "path": args.path,
                    "n_obs_steps": 2,
                    "horizon": 16,
                    "n_action_steps": 8,
                    "rows": rows,
                }
            )
        )
    else:
        print(f"{'variant':8} {'path':9} {'batch':>5} {'workers':>7} {'samples/s':>11}")
        for r in rows:
            print(
                f"{r['variant']:8} {r['path']:9} {r['batch_size']:>5} {r['num_workers']:>7} "
                f"{r['samples_per_s']:>11,}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
