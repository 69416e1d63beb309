"""Where the denoiser runs: eager torch, an ONNX Runtime graph, or a CUDA graph.

Each backend is a :data:`Net`: ``net(x, t, cond) -> out`` with ``x``/``out`` (B, Tp, Da),
``cond`` (B, Dc) and ``t`` a Python float, in the backend's array type (``xp``: ``"torch"`` or
``"numpy"``). Inputs were checked at the engine's boundary, so backends call the network's
unchecked ``denoise`` directly. ``calls`` counts network evaluations. Backends register by
name with :func:`register_backend` (``build(policy, threads)``, ``policy`` a
:class:`~robopolicy.policies.base.DenoisingPolicy`); :func:`choose_backend` also knows ``auto``.
The engine's ``policy`` backend (the policy's own ``sample``) runs no network here.

- ``torch`` (:class:`TorchNet`): eager, under ``torch.inference_mode``, with the time vector
  preallocated per batch size.
- ``onnx`` (:class:`OnnxNet`): the denoiser exported once (TorchScript-based
  ``torch.onnx.export``, opset 17, dynamic batch) and run by ONNX Runtime's CPU provider with its
  own thread pool; the sampler loop stays in numpy. ``scripts/bench_serve.py`` compares it with
  eager torch (``BENCHMARKS.md``); ``tests/inference`` checks it against eager to 1e-5. Needs
  the ``onnx`` and ``onnxruntime`` packages.
- ``cuda-graph`` (:class:`CudaGraphNet`): on a GPU, one CUDA graph per batch size captured on
  static buffers and replayed. Its test (against eager) runs only where CUDA is available.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robopolicy.config import did_you_mean
from robopolicy.policies.base import DenoisingPolicy

ONNX_OPSET = 17
log = logging.getLogger(__name__)


Net = Any
"""A backend: ``net(x, t, cond) -> out`` with ``xp`` and ``calls`` (module docstring)."""
Builder = Callable[[DenoisingPolicy, "int | None"], Net]
"""``build(policy, threads) -> net``; a ValueError when the backend cannot run the policy."""
BACKENDS: dict[str, Builder] = {}
POLICY = "policy"
"""The engine's backend that runs the policy's own ``sample`` loop (no network here)."""
RESERVED = ("auto", POLICY)
"""Backend names the engine resolves itself, never registered: ``auto`` picks one."""


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator: the class's ``build(policy, threads)`` becomes backend ``name``."""

    def decorate(cls: type) -> type:
        if name in BACKENDS or name in RESERVED:
            raise ValueError(f"backend {name!r} registered twice (or reserved)")
        BACKENDS[name] = cls.build  # type: ignore[attr-defined]
        return cls

    return decorate


def get_backend(name: str) -> Builder:
    """The builder of backend ``name`` (a ValueError with a did-you-mean when unknown)."""
    if name not in BACKENDS:
        names = [*RESERVED, *BACKENDS]
        raise ValueError(f"no backend {name!r}{did_you_mean(name, names)} (have {names})")
    return BACKENDS[name]


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@register_backend("torch")
class TorchNet:
    """Eager torch on the model's device."""

    xp = "torch"

    @classmethod
    def build(cls, policy: DenoisingPolicy, threads: int | None) -> TorchNet:
        return cls(policy.model)

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.calls = 0
        self._times: dict[int, Tensor] = {}

    def __call__(self, x: Tensor, t: float, cond: Tensor) -> Tensor:
        self.calls += 1
        times = self._times.get(x.shape[0])
        if times is None:
            times = self._times[x.shape[0]] = torch.empty(x.shape[0], device=x.device)
        with torch.inference_mode():
            return self.model.denoise(x, times.fill_(t), cond)


class _Denoise(nn.Module):
    """The unchecked ``denoise`` of a denoiser, as the module to export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.model.denoise(x, t, cond)


def export_onnx(model: nn.Module, horizon: int, action_dim: int, cond_dim: int) -> bytes:
    """The denoiser as an ONNX graph (inputs ``x`` (B, Tp, Da), ``t`` (B,), ``cond`` (B, Dc);
    output ``out``; B dynamic)."""
    example = (torch.zeros(2, horizon, action_dim), torch.ones(2), torch.zeros(2, cond_dim))
    buffer = io.BytesIO()
    batch = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and trace notes
        torch.onnx.export(
            _Denoise(model.cpu().eval()),
            example,
            buffer,
            input_names=["x", "t", "cond"],
            output_names=["out"],
            dynamic_axes={"x": batch, "t": batch, "cond": batch, "out": batch},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


@register_backend("onnx")
class OnnxNet:
    """ONNX Runtime on the CPU; numpy in and out."""

    xp = "numpy"

    @classmethod
    def build(cls, policy: DenoisingPolicy, threads: int | None) -> OnnxNet:
        if policy.device.type != "cpu":
            raise ValueError(f"backend onnx runs on the CPU; the policy is on {policy.device}")
        c = policy.config
        shapes = {"horizon": c.horizon, "action_dim": c.action_dim}
        try:
            return cls(
                policy.model,
                **shapes,
                cond_dim=policy.encoder.out_dim,
                threads=threads or available_cores(),
            )
        except ImportError as exc:
            raise ValueError(
                f"backend onnx needs the onnx and onnxruntime packages: pip install "
                f"robopolicy[onnx] ({exc})"
            ) from exc

    def __init__(
        self, model: nn.Module, *, horizon: int, action_dim: int, cond_dim: int, threads: int
    ) -> None:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        graph = export_onnx(model, horizon, action_dim, cond_dim)
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.calls = 0
        self._times: dict[int, np.ndarray] = {}

    def __call__(self, x: np.ndarray, t: float, cond: np.ndarray) -> np.ndarray:
        self.calls += 1
        times = self._times.get(x.shape[0])
        if times is None:
            times = self._times[x.shape[0]] = np.empty(x.shape[0], np.float32)
        times.fill(t)
        feeds = {"x": np.ascontiguousarray(x, np.float32), "t": times, "cond": cond}
        return self.session.run(None, feeds)[0]


@register_backend("cuda-graph")
class CudaGraphNet:
    """One captured CUDA graph per batch size (static input and output buffers)."""

    xp = "torch"

    @classmethod
    def build(cls, policy: DenoisingPolicy, threads: int | None) -> CudaGraphNet:
        if policy.device.type != "cuda":
            raise ValueError(f"backend cuda-graph needs the policy on a GPU, not {policy.device}")
        return cls(policy.model)

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.calls = 0
        self._graphs: dict[tuple[int, int], tuple[Any, Tensor, Tensor, Tensor, Tensor]] = {}

    def _capture(self, x: Tensor, cond: Tensor) -> tuple[Any, Tensor, Tensor, Tensor, Tensor]:
        static_x, static_c = x.clone(), cond.clone()
        static_t = torch.zeros(x.shape[0], device=x.device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm up kernels and allocator outside the graph
                self.model.denoise(static_x, static_t, static_c)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self.model.denoise(static_x, static_t, static_c)
        return graph, static_x, static_t, static_c, static_out

    def __call__(self, x: Tensor, t: float, cond: Tensor) -> Tensor:
        self.calls += 1
        key = (x.shape[0], cond.shape[-1])
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, cond)
        graph, static_x, static_t, static_c, static_out = self._graphs[key]
        static_x.copy_(x)
        static_c.copy_(cond)
        static_t.fill_(t)
        graph.replay()
        return static_out.clone()


def choose_backend(
    policy: DenoisingPolicy, backend: str, *, threads: int | None = None, margin: float = 0.9
) -> tuple[Net, str]:
    """``(net, name)`` for ``policy``'s denoiser on a registered backend, or ``auto``: CUDA graphs
    on a GPU; on the CPU the ONNX graph when its median batch-1 call takes < ``margin`` times
    eager's, else eager (also when onnx/onnxruntime are not installed)."""
    if backend != "auto":
        return get_backend(backend)(policy, threads), backend
    if policy.device.type == "cuda":
        return CudaGraphNet.build(policy, threads), "cuda-graph"
    eager = TorchNet.build(policy, threads)
    if policy.device.type != "cpu":
        return eager, "torch"
    try:
        onnx = OnnxNet.build(policy, threads)
    except ValueError as exc:
        log.info("auto backend: eager torch (%s)", exc)
        return eager, "torch"
    c = policy.config
    x_shape, c_shape = (1, c.horizon, c.action_dim), (1, policy.encoder.out_dim)
    t_onnx = _median_call(onnx, np.zeros(x_shape, np.float32), np.zeros(c_shape, np.float32))
    t_eager = _median_call(eager, torch.zeros(x_shape), torch.zeros(c_shape))
    log.info("denoiser at batch 1: eager %.3f ms, onnx %.3f ms", 1e3 * t_eager, 1e3 * t_onnx)
    return (onnx, "onnx") if t_onnx < margin * t_eager else (eager, "torch")


def _median_call(net: Any, x: Any, cond: Any, repeats: int = 15) -> float:
    """Median seconds of ``net(x, 1.0, cond)`` after three untimed calls; resets ``calls``."""
    times = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        net(x, 1.0, cond)
        if i >= 3:
            times.append(time.perf_counter() - start)
    net.calls = 0
    return float(np.median(times))
