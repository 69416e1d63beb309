"""Inference: the inference engine (and, in :mod:`robopolicy.inference.serving`, the engine
protocol the policy server runs), samplers, warm start, real-time chunking and distillation.

Everything here but ``serving`` loads torch, so its names load on first use (the numpy-only
timing of action chunks is :mod:`robopolicy.serve.chunks`).

    from robopolicy.inference import load_for_inference
    engine = load_for_inference("ckpt", sampler="dpmpp", steps=8)     # backend "auto"
    actions = engine.sample({"state": state})                          # (B, Tp, Da) raw units
"""

from __future__ import annotations

from robopolicy.lazy import lazy_exports

_NAMES = {
    "DistillConfig": "robopolicy.inference.distill",
    "EngineConfig": "robopolicy.inference.engine",
    "InferenceEngine": "robopolicy.inference.engine",
    "SAMPLERS": "robopolicy.sampling.samplers",
    "WarmStart": "robopolicy.inference.warm_start",
    "distill": "robopolicy.inference.distill",
    "load_for_inference": "robopolicy.inference.engine",
    "register_sampler": "robopolicy.sampling.samplers",
    "sample_with_prefix": "robopolicy.inference.inpaint",
}
__all__ = sorted(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
