"""Forward-pass time of the networks in ``robopolicy.models`` on CPU, at batch 1 and 64.

Rows: the conditional UNet-1D at a small and a medium size, DPPO's residual MLP (its gym size),
the small transformer denoiser (Tp=16, Da=2, Dc=40, as low-dim Push-T), and the image encoder on
one 96x96 camera with To=2 (84x84 crops, ResNet-18 at width 32 and at the paper's 64). Each figure
is the median of timed ``forward`` calls in eval mode under ``torch.inference_mode`` after a
warm-up. A table goes to stdout, or one JSON document with ``--json``; progress goes to stderr.

    python scripts/bench_models.py [--repeats 20] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from robopolicy.models import (
    MLPDenoiserConfig,
    ObsEncoder,
    ObsEncoderConfig,
    TransformerDenoiserConfig,
    UNet1DConfig,
    build_denoiser,
)

TP, DA, DC, TO = 16, 2, 40, 2
DENOISERS = [
    ("unet1d small (64,128,256) k5", UNet1DConfig(down_dims=(64, 128, 256))),
    ("unet1d medium (256,512,1024) k5", UNet1DConfig(down_dims=(256, 512, 1024))),
    ("mlp (512,512,512) residual", MLPDenoiserConfig(activation="relu")),
    ("transformer d128 L4 H4", TransformerDenoiserConfig()),
]
ENCODERS = [
    ("image encoder 96x96 width 32", ObsEncoderConfig(backbone_width=32)),
    ("image encoder 96x96 width 64", ObsEncoderConfig(backbone_width=64)),
]
BATCHES = (1, 64)


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``call()`` in milliseconds, after two warm-up calls."""
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def rows(repeats: int) -> list[dict[str, Any]]:
    out = []
    for name, config in DENOISERS:
        net = build_denoiser(config, action_dim=DA, horizon=TP, cond_dim=DC).eval()
        row: dict[str, Any] = {"name": name, "params": sum(p.numel() for p in net.parameters())}
        for batch in BATCHES:
            x, t, cond = (
                torch.randn(batch, TP, DA),
                torch.full((batch,), 10.0),
                torch.randn(batch, DC),
            )
            row[f"ms_b{batch}"] = median_ms(lambda n=net, a=(x, t, cond): n(*a), repeats)
        print(f"  {name}", file=sys.stderr)
        out.append(row)
    for name, config in ENCODERS:
        enc = ObsEncoder(
            config, lowdim_dim=2, image_shapes={"image.top": (96, 96, 3)}, n_obs_steps=TO
        )
        enc.eval()
        row = {"name": name, "params": sum(p.numel() for p in enc.parameters())}
        for batch in BATCHES:
            lowdim = torch.randn(batch, TO, 2)
            images = {"image.top": torch.randint(0, 256, (batch, TO, 96, 96, 3), dtype=torch.uint8)}
            row[f"ms_b{batch}"] = median_ms(lambda e=enc, a=(lowdim, images): e(*a), repeats)
        print(f"  {name}", file=sys.stderr)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"timing on {torch.get_num_threads()} threads ...", file=sys.stderr)
    with torch.inference_mode():
        results = rows(args.repeats)
    setup = {"torch": torch.__version__, "threads": torch.get_num_threads(), "Tp": TP, "Da": DA}
    setup |= {"Dc": DC, "To": TO, "repeats": args.repeats}
    if args.json:
        print(json.dumps({"setup": setup, "rows": results}, indent=2))
        return 0
    print(f"{'network':34} {'params':>10} {'batch 1 ms':>11} {'batch 64 ms':>12}")
    for row in results:
        params = f"{row['params'] / 1e6:.2f}M"
        print(f"{row['name']:34} {params:>10} {row['ms_b1']:>11.2f} {row['ms_b64']:>12.2f}")
    print(f"({', '.join(f'{k}={v}' for k, v in setup.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
