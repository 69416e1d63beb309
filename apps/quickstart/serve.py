"""The quickstart's serving stage: serve its chosen policy on loopback and measure the latency.

``serve_stage(out, result)`` starts a policy server (a subprocess on a free 127.0.0.1 port, the
inference engine with ``backend="auto"``: the exported ONNX graph where it is faster) on the
checkpoint of ``result["policies"][name]``, where ``name`` is ``result["served_policy"]`` when
given, else ``result["bc_policy"]``. A DSRL-steered policy is served by its own ``sample``
(``backend="policy"``): the inference engine runs a denoiser's sampler, and a steered policy's
latent actor runs before it. The stage sends ``requests`` batch-1 ``infer`` requests through
the torch-free :class:`~robopolicy.serve.PolicyClient` with real ``arm-push`` observations (one
episode's reset, To frames) and returns the figures for the report (also written to
``<out>/serving.json``)::

    {"policy": "flow", "checkpoint": ..., "sampler": "euler", "steps": 10, "backend": "onnx",
     "requests": 200, "p50_ms": ..., "p99_ms": ..., "server_inference_p50_ms": ..., ...}

``p50_ms``/``p99_ms`` are client round trips (encode, loopback, queue, inference, reply);
``server_inference_p50_ms`` is the server's own inference time, so the difference is the
server's overhead. For a steered policy ``sampler`` reads ``steered ddim`` (or ``steered euler``
…): the base's deterministic sampler from the actor's latent, ``steps`` of it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
TASK = "arm-push"


def _observation(n_obs_steps: int, keys: list[str]) -> dict[str, np.ndarray]:
    """One batch-1 observation of the task: a reset, its frame repeated To times."""
    from sim.registry import make_task

    env = make_task(TASK)
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    return {k: np.repeat(np.asarray(obs[k], np.float32)[None, None], n_obs_steps, 1) for k in keys}


def serve_stage(
    out: Path,
    result: dict[str, Any],
    *,
    requests: int = 200,
    sampler: str | None = None,
    steps: int | None = None,
    backend: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Serve the chosen policy of ``result`` and time ``requests`` requests (module docstring);
    ``sampler``/``steps`` default to the policy's own."""
    from robopolicy.atomic import atomic_write_json
    from robopolicy.policies.checkpoint import read_policy_config
    from robopolicy.policies.steered import SteeredConfig
    from robopolicy.serve import PolicyClient
    from robopolicy.serve.commands import ServerProcess

    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    kind = result.get("served_policy") or result["bc_policy"]
    checkpoint = Path(result["policies"][kind]["checkpoint"])
    policy_config = read_policy_config(checkpoint)
    if isinstance(policy_config, SteeredConfig):
        backend = "policy"
    options = {"sampler": sampler, "steps": steps, "backend": backend, "threads": threads}
    log.info("serving the %s policy on loopback: %d requests", kind, requests)
    with ServerProcess(checkpoint, **options) as server, PolicyClient(port=server.port) as client:
        meta = client.metadata()
        obs = _observation(meta["n_obs_steps"], list(meta["obs"]))
        for _ in range(min(10, requests)):  # warm up the connection and the engine
            client.infer(obs, timeout_s=30)
        round_trips, inference = [], []
        for _ in range(requests):
            start = time.perf_counter()
            _, info = client.infer(obs, timeout_s=30)
            round_trips.append(1e3 * (time.perf_counter() - start))
            inference.append(info["timing"]["inference_ms"])
    if isinstance(policy_config, SteeredConfig):
        meta |= _steered_sampler(policy_config)
    figures = {
        "policy": kind,
        "checkpoint": str(checkpoint),
        "sampler": meta["sampler"],
        "steps": meta["steps"],
        "backend": meta.get("backend", "policy"),
        "requests": requests,
        "p50_ms": float(np.percentile(round_trips, 50)),
        "p99_ms": float(np.percentile(round_trips, 99)),
        "server_inference_p50_ms": float(np.percentile(inference, 50)),
    }
    log.info(
        "served %s (%s, %d steps, %s): p50 %.2f ms, p99 %.2f ms",
        kind,
        figures["sampler"],
        figures["steps"],
        figures["backend"],
        figures["p50_ms"],
        figures["p99_ms"],
    )
    atomic_write_json(out / "serving.json", figures)
    return figures


def _steered_sampler(config: Any) -> dict[str, Any]:
    """``sampler`` and ``steps`` of a steered policy: its base's deterministic sampler (DDIM
    with eta 0 for a diffusion base, the flow's integrator) for the steered policy's ``steps``
    (None: the base's)."""
    base = config.base
    sampler = "ddim" if base.sampler in ("ddpm", "ddim") else base.sampler
    return {"sampler": f"steered {sampler}", "steps": config.steps or base.steps}
