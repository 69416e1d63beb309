"""The server in-process: slow inference, deadlines, late replies, batching, auth, shutdown."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.inference.serving import Engine
from robopolicy.policies import Policy, load_policy
from robopolicy.serve import PolicyClient, ServerError
from robopolicy.serve.commands import SlowEngine
from robopolicy.serve.config import ServerConfig
from robopolicy.serve.server import PolicyServer
from tests.serve.conftest import FIXTURES


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(FIXTURES / "diffusion_mlp")


OWN_LOOP = EngineConfig(backend="policy")  # the policy's own sample(), as `robopolicy serve`


def own(policy: Policy) -> InferenceEngine:
    return InferenceEngine(policy, OWN_LOOP)


@contextlib.contextmanager
def serving(engine: Any, **config: Any) -> Iterator[tuple[PolicyServer, int]]:
    server = PolicyServer(engine, ServerConfig(port=0, **config))
    _, port = server.start()
    try:
        yield server, port
    finally:
        server.stop()


def inputs(batch: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {"state": rng.normal(size=(batch, 2, 3)).astype(np.float32)}
    return obs, rng.normal(size=(batch, 4, 2)).astype(np.float32)


def reference(policy: Policy, obs: dict[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        tensors = {k: torch.from_numpy(v) for k, v in obs.items()}
        return policy.sample(tensors, noise=torch.from_numpy(noise)).numpy()


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list]:
    out: list = []

    def run() -> None:
        try:
            out.append(fn(*args, **kwargs))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_slow_inference_blocks_neither_health_nor_other_clients(policy: Policy) -> None:
    obs, noise = inputs(1, 0)
    with serving(SlowEngine(own(policy), 1.5)) as (_, port):
        busy = PolicyClient(port=port)
        thread, out = in_thread(busy.infer, obs, timeout_s=10, noise=noise)
        time.sleep(0.2)  # the forward pass is now running
        with PolicyClient(port=port) as other:
            latencies = []
            for _ in range(20):
                start = time.perf_counter()
                assert other.health(timeout_s=1.0)["status"] == "ok"
                latencies.append(time.perf_counter() - start)
            start = time.perf_counter()
            with pytest.raises(ServerError, match="invalid_input"):
                other.infer({"state": obs["state"][:, :1]}, timeout_s=1.0)
            rejected_s = time.perf_counter() - start
        thread.join()
        busy.close()
    assert max(latencies) < 0.25 and rejected_s < 0.25, (latencies, rejected_s)  # pass: 1.5 s
    assert np.array_equal(out[0][0], reference(policy, obs, noise))


def test_expired_requests_are_dropped_and_counted(policy: Policy) -> None:
    obs, noise = inputs(1, 1)
    with serving(SlowEngine(own(policy), 0.4)) as (server, port):
        thread, out = in_thread(PolicyClient(port=port).infer, obs, timeout_s=5, noise=noise)
        time.sleep(0.1)
        with PolicyClient(port=port) as late, pytest.raises(TimeoutError):
            late.infer(obs, timeout_s=0.1)
        thread.join()
        until = time.monotonic() + 5
        while "expired" not in server.counts() and time.monotonic() < until:
            time.sleep(0.01)
        assert server.counts()["expired"] == 1
        assert server.counts()["served"] == 1
    assert isinstance(out[0], tuple)


def test_a_late_reply_is_never_taken_for_the_next_request(policy: Policy) -> None:
    first, second = inputs(1, 2), inputs(1, 3)
    with serving(SlowEngine(own(policy), 0.3)) as (_, port), PolicyClient(port=port) as c:
        with pytest.raises(TimeoutError):
            c.infer(first[0], noise=first[1], timeout_s=0.1)
        actions, _ = c.infer(second[0], noise=second[1], timeout_s=5)
        assert c.ignored_replies == 1  # the reply to the first request, dropped by its id
    assert np.array_equal(actions, reference(policy, *second))
    assert not np.array_equal(actions, reference(policy, *first))


class GatedEngine(Engine):
    """An engine whose runs wait until the test opens the gate."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.gate, self.entered = inner, threading.Event(), threading.Event()

    def metadata(self) -> dict[str, Any]:
        return self.inner.metadata()

    def run(self, *args: Any) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        return self.inner.run(*args)


def test_requests_that_queue_together_share_a_forward_pass(policy: Policy) -> None:
    engine = GatedEngine(own(policy))
    requests = [inputs(1, 10 + i) for i in range(4)]
    with serving(engine, max_batch=8) as (_, port), PolicyClient(port=port) as probe:
        thread, first = in_thread(PolicyClient(port=port).infer, inputs(1, 9)[0], timeout_s=10)
        assert engine.entered.wait(10)  # the first request is held at the gate, alone

        def ask(request: tuple[dict[str, np.ndarray], np.ndarray]) -> tuple[np.ndarray, dict]:
            with PolicyClient(port=port) as client:
                return client.infer(request[0], noise=request[1], timeout_s=10)

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(ask, request) for request in requests]
            until = time.monotonic() + 10
            while probe.health()["queued"] < 4 and time.monotonic() < until:
                time.sleep(0.01)  # the worker holds the first request at the gate
            engine.gate.set()
            results = [future.result() for future in futures]
        thread.join()
    assert first[0][1]["timing"]["batch"] == 1
    assert [info["timing"]["batch"] for _, info in results] == [4] * 4
    for (actions, _), (obs, noise) in zip(results, requests, strict=True):
        np.testing.assert_allclose(actions, reference(policy, obs, noise), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "robot.example"])
def test_a_non_loopback_bind_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="without a token"):
        ServerConfig(host=host)
    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        ServerConfig(host=loopback)


def test_with_a_token_unauthenticated_requests_get_unauthorized(policy: Policy) -> None:
    token = "a-long-shared-token"
    with serving(own(policy), host="0.0.0.0", token=token) as (server, port):
        for wrong in (None, "a-wrong-token-of-sorts"):
            with PolicyClient(port=port, token=wrong) as client:
                with pytest.raises(ServerError) as info:
                    client.health()
                assert info.value.code == "unauthorized"
        with PolicyClient(port=port, token=token) as client:
            assert client.health()["status"] == "ok"
            actions, _ = client.infer(inputs(2, 4)[0], timeout_s=5)
        assert actions.shape == (2, 4, 2)
        assert server.counts()["error_unauthorized"] == 2


def test_invalid_inputs_get_replies_naming_the_field(policy: Policy) -> None:
    obs, noise = inputs(2, 5)
    nan = {"state": obs["state"].copy()}
    nan["state"][1, 0, 2] = np.nan
    cases = [
        ({}, {}, "lacks 'state'"),
        ({**obs, "extra": obs["state"]}, {}, "unknown key 'extra'"),
        ({"state": obs["state"][..., :2]}, {}, "obs['state'] has shape"),
        ({"state": obs["state"].astype(np.int32)}, {}, "obs['state'] has dtype int32"),
        (nan, {}, "obs['state'] has NaN"),
        ({**obs, "timestamp": np.zeros((2, 3))}, {}, "obs['timestamp'] has shape"),
        (obs, {"noise": noise[:1]}, "noise has shape"),
        (obs, {"steps": 0}, "steps must be"),
        (obs, {"steps": 21}, "steps must be"),
        ({"state": np.zeros((65, 2, 3), np.float32)}, {}, "batch 65"),
    ]
    with serving(own(policy)) as (_, port), PolicyClient(port=port) as client:
        for bad_obs, extra, text in cases:
            with pytest.raises(ServerError) as info:
                client.infer(bad_obs, timeout_s=2, **extra)
            assert info.value.code == "invalid_input" and text in info.value.message, info.value
        actions, _ = client.infer(obs, noise=noise, timeout_s=2)  # the connection still serves
    assert np.array_equal(actions, reference(policy, obs, noise))


class ThreadRecorder(InferenceEngine):
    """Records the thread that runs it."""

    def run(self, *args: Any) -> np.ndarray:
        self.ran_on = threading.current_thread()
        return super().run(*args)


def test_an_engine_factory_runs_on_the_inference_thread(policy: Policy) -> None:
    built_on = []

    def build() -> ThreadRecorder:
        built_on.append(threading.current_thread())
        return ThreadRecorder(policy, OWN_LOOP)

    obs, noise = inputs(1, 7)
    with serving(build) as (server, port):
        actions, _ = PolicyClient(port=port).infer(obs, noise=noise, timeout_s=5)
        assert built_on == [server.engine.ran_on] and built_on[0] is not threading.main_thread()
    assert np.array_equal(actions, reference(policy, obs, noise))

    def broken() -> InferenceEngine:
        raise ValueError("no such sampler")

    with pytest.raises(ValueError, match="no such sampler"):
        PolicyServer(broken, ServerConfig(port=0))


def test_shutdown_finishes_the_running_pass_and_leaves_no_thread(policy: Policy) -> None:
    before = {t.ident for t in threading.enumerate()}
    obs, noise = inputs(1, 6)
    server = PolicyServer(SlowEngine(own(policy), 0.4), ServerConfig(port=0))
    _, port = server.start()
    running, out_running = in_thread(PolicyClient(port=port).infer, obs, timeout_s=5, noise=noise)
    time.sleep(0.1)
    queued, out_queued = in_thread(PolicyClient(port=port).infer, obs, timeout_s=5)
    time.sleep(0.1)
    server.stop()
    running.join(5)
    queued.join(5)
    assert np.array_equal(out_running[0][0], reference(policy, obs, noise))
    assert isinstance(out_queued[0], ServerError) and out_queued[0].code == "shutting_down"
    left = [t for t in threading.enumerate() if t.ident not in before]
    assert not left, left
