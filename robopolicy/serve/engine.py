"""The server's inference engine: a policy behind ``metadata()`` and ``run(...)``.

:class:`PolicyEngine` is the only part of the server that imports torch. The server calls
``run`` from its one inference thread with arrays it has already checked against
``metadata()`` (and stacked, when it batches requests), so an engine only converts, samples
and converts back. Later engines (a chosen sampler, an exported graph, warm start, a distilled
student) implement the same two methods; :class:`Engine` is that seam.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from robopolicy.policies.base import Policy
from robopolicy.serve.messages import PROTOCOL_VERSION

MAX_FLOW_STEPS = 1000


class Engine(Protocol):
    """What the server needs from an inference engine. One whose metadata says ``inpaint``
    also has ``run_with_prefix(obs, noise, steps, prefix, frozen)`` (real-time chunking:
    :class:`robopolicy.inference.engine.InferenceEngine`)."""

    def metadata(self) -> dict[str, Any]:
        """The ``metadata`` reply body: policy type, To/Tp/Ta, obs spec, action dim, fps, ..."""
        ...

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        """(B, Tp, Da) float32 raw-unit actions for checked ``obs`` (each (B, To, ...))."""
        ...


class PolicyEngine:
    """Runs a :class:`~robopolicy.policies.base.Policy` under ``torch.inference_mode``."""

    def __init__(
        self,
        policy: Policy,
        *,
        threads: int | None = None,
        fps: float | None = None,
        name: str = "",
    ) -> None:
        """``threads`` sets torch's intra-op threads (process-wide); ``fps`` is the control
        rate the policy was trained at, reported in metadata when known."""
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.policy = policy.eval()
        self.fps = fps
        self.name = name

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str = "cpu", **kwargs: Any
    ) -> PolicyEngine:
        """Load the checkpoint at ``path`` onto ``device``; its ``card.json`` may give ``fps``."""
        from robopolicy.policies.checkpoint import load_policy, read_card

        card = read_card(path)
        fps = kwargs.pop("fps", None) or card.get("fps")
        return cls(load_policy(path, device=device), fps=fps, name=Path(path).name, **kwargs)

    def metadata(self) -> dict[str, Any]:
        c = self.policy.config
        obs = {k: {"shape": [c.n_obs_steps, *c.shapes[k]], "dtype": "float32"} for k in c.obs_keys}
        for key in c.image_keys:
            obs[key] = {"shape": [c.n_obs_steps, *c.shapes[key]], "dtype": "uint8"}
        steps = getattr(c, "inference_steps", None)
        return {
            "protocol": PROTOCOL_VERSION,
            "name": self.name,
            "policy_type": type(self.policy).type_name,
            "n_obs_steps": c.n_obs_steps,
            "horizon": c.horizon,
            "n_action_steps": c.n_action_steps,
            "action_dim": c.action_dim,
            "obs": obs,
            "fps": None if self.fps is None else float(self.fps),
            "sampler": getattr(c, "sampler", None),
            "steps": steps,
            "max_steps": getattr(c, "num_train_timesteps", None) or MAX_FLOW_STEPS,
            "inpaint": False,
        }

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        device = self.policy.device
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(device) for k, v in obs.items()}
            eps = None if noise is None else torch.from_numpy(noise).to(device)
            actions = self.policy.sample(tensors, noise=eps, steps=steps)
            return actions.to("cpu", torch.float32).numpy()


class SlowEngine:
    """Wraps an engine and sleeps ``delay_s`` before each run: for tests of a slow policy."""

    def __init__(self, inner: Engine, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def metadata(self) -> dict[str, Any]:
        return self.inner.metadata()

    def run(
        self, obs: dict[str, np.ndarray], noise: np.ndarray | None, steps: int | None
    ) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.run(obs, noise, steps)

    def run_with_prefix(self, *args: Any) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.run_with_prefix(*args)  # type: ignore[attr-defined]
