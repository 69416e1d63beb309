"""``robopolicy serve --backend``: the inference engine behind the policy server. Round trips
through a real server return the in-process sample, real-time chunking works over the wire
with the client-side plan, and a driver steps a served policy tick by tick."""

from __future__ import annotations

import contextlib
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.serve import PolicyClient, ServerError
from robopolicy.serve.chunks import Chunk, Plan, PlanConfig, ensemble_weights
from robopolicy.serve.client import DriverConfig, PolicyDriver
from robopolicy.serve.config import ServerConfig
from robopolicy.serve.server import PolicyServer
from robopolicy.serve.wire import encode, frame
from tests.inference.toy import make_toy_policy, needs_onnx, toy_batch
from tests.serve.test_fuzz import CODES, odd_values, read_reply

PERIOD = 0.1  # the engines below run at 10 fps


@contextlib.contextmanager
def serving(engine: Any, **config: Any) -> Iterator[PolicyClient]:
    """A client of an in-process server on ``engine`` (``client.port`` is its port)."""
    server = PolicyServer(engine, ServerConfig(port=0, **config))
    _, port = server.start()
    try:
        with PolicyClient(port=port) as client:
            yield client
    finally:
        server.stop()


def states(batch: int, seed: int) -> dict[str, np.ndarray]:
    return {"state": toy_batch(batch, torch.Generator().manual_seed(seed))["obs"]["state"].numpy()}


def test_round_trip_through_robopolicy_serve_returns_the_in_process_sample(tmp_path):
    needs_onnx()
    from robopolicy.inference.engine import load_for_inference
    from robopolicy.policies import save_policy
    from robopolicy.serve.commands import ServerProcess

    path = save_policy(make_toy_policy("diffusion", width=32), tmp_path / "toy")
    local = load_for_inference(path, "dpmpp", 5, backend="onnx", threads=1)
    obs = states(3, 0)
    noise = np.random.default_rng(0).normal(size=(3, 8, 2)).astype(np.float32)
    options = {"sampler": "dpmpp", "steps": 5, "backend": "onnx", "threads": 1}
    with ServerProcess(path, **options) as server, PolicyClient(port=server.port) as client:
        meta = client.metadata()
        actions, info = client.infer(obs, noise=noise, timeout_s=30)
    assert (meta["sampler"], meta["steps"], meta["backend"], meta["inpaint"]) == (
        "dpmpp",
        5,
        "onnx",
        True,
    )
    np.testing.assert_array_equal(actions, local.run(obs, noise, None))
    assert info["timing"]["inference_ms"] > 0


def test_serve_refuses_a_bad_backend_or_sampler_before_binding(tmp_path, capsys):
    import robopolicy.serve.commands  # noqa: F401  (registers it where entry points are stale)
    from robopolicy.cli import main
    from robopolicy.policies import save_policy

    path = save_policy(make_toy_policy("flow", width=32), tmp_path / "toy")
    for flags, message in (
        (["--backend", "onx"], "did you mean 'onnx'"),
        (["--backend", "torch", "--sampler", "dpmpp"], "no flow sampler 'dpmpp'"),
        *(
            []
            if torch.cuda.is_available()
            else [
                (["--backend", "cuda-graph"], "device 'cuda': this machine has no CUDA GPU"),
                (["--device", "cuda"], "device 'cuda': this machine has no CUDA GPU"),
            ]
        ),
    ):
        assert main(["serve", str(path), "--port", "0", *flags]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(("kind", "sampler"), [("diffusion", "ddim"), ("flow", "euler")])
def test_real_time_chunking_over_the_wire_with_the_plan(kind, sampler):
    """In virtual time: chunk 1 executes for a few ticks; the plan's prefix goes with the
    request for chunk 2, whose committed actions are those chunk 1 planned for their ticks, and
    the reply equals the in-process inpainted sample."""
    config = EngineConfig(sampler, 6, backend="torch")
    engine = InferenceEngine(make_toy_policy(kind, width=32), config, fps=1 / PERIOD)
    obs = states(1, 0)
    stamps = np.array([[-PERIOD, 0.0]])  # To = 2 frames; the last sensed at t = 0
    plan = Plan(PlanConfig(tolerance=0.5))
    rng = np.random.default_rng(0)
    with serving(engine, max_batch=4) as client:
        actions, info = client.infer({**obs, "timestamp": stamps}, timeout_s=30)
        plan.add(Chunk.from_reply(actions, info), 0.0)
        executed = [plan.next(now).action for now in (0.0, 0.1, 0.2)]
        # the next request, sensed at t = 0.2, must wait 2 ticks for its reply
        prefix, frozen = plan.prefix(due=0.2, start=info["start"], delay_steps=2)
        assert frozen == 3 and len(prefix) == 6  # chunk 1's ticks 0.1 .. 0.6, 3 committed
        np.testing.assert_array_equal(prefix[:2], np.stack(executed[1:]))
        noise = rng.normal(size=(1, 8, 2)).astype(np.float32)
        request = {**obs, "timestamp": stamps + 0.2}
        second, info = client.infer(
            request, noise=noise, prefix=prefix[None], frozen=frozen, timeout_s=30
        )
    expected = engine.run_with_prefix(obs, noise, None, prefix[None].astype(np.float32), frozen)
    np.testing.assert_array_equal(second, expected)
    tolerance = 1e-5 if kind == "diffusion" else 0.5  # flow guidance pulls, diffusion replaces
    np.testing.assert_allclose(second[0, :frozen], prefix[:frozen], atol=tolerance)
    plan.add(Chunk.from_reply(second, info), 0.3)
    assert plan.next(0.3).action == pytest.approx(second[0, 2])  # the new chunk's tick 0.3


def recorded(client: PolicyClient) -> list[tuple[dict, dict, np.ndarray]]:
    """Every ``infer`` of ``client`` from now on: ``(obs, prefix fields, actions)``."""
    calls: list[tuple[dict, dict, np.ndarray]] = []
    infer = client.infer

    def record(obs: dict[str, np.ndarray], **fields: Any) -> tuple[np.ndarray, dict]:
        actions, info = infer(obs, **fields)
        calls.append((obs, {k: fields[k] for k in ("prefix", "frozen") if k in fields}, actions))
        return actions, info

    client.infer = record  # type: ignore[method-assign]
    return calls


def tick(t: int) -> dict[str, Any]:
    """Tick ``t``'s toy observation at 10 Hz, in virtual time, with a key the policy ignores."""
    return {"state": states(1, 4)["state"][0, t % 2], "timestamp": t * PERIOD, "unread": 0.0}


def drive(driver: PolicyDriver, ticks: int) -> np.ndarray:
    """(ticks, Da) actions of ``driver`` for ticks 0 .. ticks - 1."""
    return np.stack([driver.step(tick(t)) for t in range(ticks)])


def test_a_driver_executes_ta_actions_of_each_chunk_then_asks_again():
    engine = InferenceEngine(
        make_toy_policy("diffusion", width=32), EngineConfig("ddim", 4, backend="torch"), fps=10
    )
    with serving(engine) as client:
        calls = recorded(client)
        driver = PolicyDriver(client, DriverConfig())
        taken = drive(driver, 10)
        driver.reset()  # a new episode: its clock starts again
        driver.step(tick(0))
    assert len(calls) == 4  # Ta = 4: ticks 0, 4 and 8, then the new episode's tick 0
    assert calls[3][0]["timestamp"].tolist() == [[0.0, 0.0]]
    first, second = calls[0][0], calls[1][0]
    assert set(first) == {"state", "timestamp"} and first["state"].shape == (1, 2, 3)
    assert first["timestamp"].tolist() == [[0.0, 0.0]]  # the first frame, repeated
    assert second["timestamp"] == pytest.approx(np.array([[0.3, 0.4]]))
    for t, action in enumerate(taken):  # tick t: chunk t // 4, from its start = To - 1 on
        np.testing.assert_array_equal(action, calls[t // 4][2][0, 1 + t % 4])


def test_a_driver_blends_a_chunk_a_tick_with_act_weights():
    engine = InferenceEngine(
        make_toy_policy("flow", width=32), EngineConfig("euler", 3, backend="torch"), fps=10
    )
    config = DriverConfig(PlanConfig(blend="ensemble", tolerance=0.5), execute=1)
    with serving(engine) as client:
        calls = recorded(client)
        taken = drive(PolicyDriver(client, config), 4)
    assert len(calls) == 4  # a chunk every tick
    chunks = [actions[0] for _, _, actions in calls]
    for t in range(4):  # chunk c predicts tick t at its index 1 + t - c, oldest first
        predictions = np.stack([chunks[c][1 + t - c] for c in range(t + 1)])
        np.testing.assert_allclose(taken[t], ensemble_weights(t + 1, 0.01) @ predictions)


def test_a_driver_sends_the_plans_prefix_for_real_time_chunking():
    engine = InferenceEngine(
        make_toy_policy("diffusion", width=32), EngineConfig("ddim", 6, backend="torch"), fps=10
    )
    with serving(engine) as client:
        calls = recorded(client)
        taken = drive(PolicyDriver(client, DriverConfig(inpaint=True, delay_steps=1)), 6)
    (_, none, first), (_, fields, second) = calls
    assert none == {} and fields["frozen"] == 2  # the history and one tick of delay
    # ticks 0.3 (executed) to 0.6 (chunk 1's last): its indices 4 .. 7
    np.testing.assert_array_equal(fields["prefix"][0], first[0, 4:8])
    np.testing.assert_allclose(second[0, :2], first[0, 4:6], atol=1e-5)
    np.testing.assert_array_equal(taken[4:], second[0, 1:3])


def test_bad_prefixes_get_errors_and_the_next_request_is_served():
    from robopolicy.serve.commands import SlowEngine  # `robopolicy serve --delay-ms` wraps so

    inner = InferenceEngine(make_toy_policy("diffusion", width=32), EngineConfig(backend="torch"))
    engine = SlowEngine(inner, delay_s=0.001)
    obs = states(2, 1)
    good = np.zeros((2, 3, 2), np.float32)
    bad = [
        ({"prefix": np.zeros((2, 9, 2), np.float32)}, "invalid_input", "prefix has shape"),
        ({"prefix": np.zeros((1, 3, 2), np.float32)}, "invalid_input", "prefix has shape"),
        ({"prefix": np.full((2, 3, 2), np.nan, np.float32)}, "invalid_input", "NaN"),
        ({"prefix": good.astype(np.int32)}, "invalid_input", "dtype"),
        ({"prefix": good, "frozen": 4}, "invalid_input", "frozen must be"),
        ({"frozen": 1}, "bad_request", "needs 'prefix'"),
    ]
    with serving(engine) as client:
        for fields, code, message in bad:
            with pytest.raises(ServerError, match=message) as caught:
                client.infer(obs, timeout_s=30, **fields)
            assert caught.value.code == code
        actions, _ = client.infer(obs, prefix=good, frozen=2, timeout_s=30)
    assert actions.shape == (2, 8, 2)
    np.testing.assert_allclose(actions[:, :2], 0.0, atol=1e-5)


def test_the_policys_own_engine_refuses_a_prefix():
    engine = InferenceEngine(make_toy_policy("flow", width=32), EngineConfig(backend="policy"))
    with serving(engine) as client:
        assert client.metadata()["inpaint"] is False
        with pytest.raises(ServerError, match="cannot hold a prefix"):
            client.infer(states(1, 2), prefix=np.zeros((1, 2, 2), np.float32), timeout_s=30)
        assert client.infer(states(1, 2), timeout_s=30)[0].shape == (1, 8, 2)
        with pytest.raises(ValueError, match="cannot hold a prefix"):
            PolicyDriver(client, DriverConfig(inpaint=True))


def hostile_prefix(rng: np.random.Generator) -> dict[str, Any]:
    """An infer request whose ``prefix`` or ``frozen`` is wrong (or, rarely, right)."""
    batch = int(rng.integers(1, 4))
    request: dict[str, Any] = {"type": "infer", "id": int(rng.integers(0, 2**62))}
    request |= {"timeout_ms": 5000.0, "obs": states(batch, int(rng.integers(100)))}
    shape = [batch, int(rng.integers(1, 9)), 2]
    pick = int(rng.integers(0, 7))
    if pick == 0:
        odd = odd_values(rng)
        request["prefix"] = odd[int(rng.integers(len(odd)))]
    elif pick == 1:
        shape[int(rng.integers(0, 3))] += int(rng.choice([-1, 1, 8]))
        request["prefix"] = np.zeros([max(d, 0) for d in shape], np.float32)
    elif pick == 2:
        dtype = str(rng.choice(["int8", "uint8", "int64", "bool", "float16", "float64"]))
        request["prefix"] = rng.normal(size=shape).astype(dtype)
    elif pick == 3:
        prefix = rng.normal(size=shape).astype(np.float32)
        prefix.flat[int(rng.integers(prefix.size))] = rng.choice([np.nan, np.inf, -np.inf])
        request["prefix"] = prefix
    elif pick == 4:
        request["prefix"] = rng.normal(size=shape).astype(np.float32)
        odd = [-1, shape[1] + 1, 2**64 - 1, 1.0, "1", True, None, [1]]
        request["frozen"] = odd[int(rng.integers(len(odd)))]
    elif pick == 5:
        request["frozen"] = int(rng.integers(0, 4))
    else:
        request["prefix"] = rng.normal(size=shape).astype(np.float32)
        request["frozen"] = int(rng.integers(0, shape[1] + 1))
    return request


def test_hostile_prefixes_get_error_replies_and_the_server_keeps_serving():
    engine = InferenceEngine(
        make_toy_policy("diffusion", width=32), EngineConfig("ddim", 4, backend="torch")
    )
    rng = np.random.default_rng(11)
    outcomes: Counter[str] = Counter()
    with serving(engine, max_batch=8) as client:
        with socket.create_connection(("127.0.0.1", client.port), timeout=30) as sock:
            buffer = bytearray()
            for _ in range(600):
                sock.sendall(frame(encode(hostile_prefix(rng))))
                reply = read_reply(sock, buffer)
                assert reply["type"] == "infer" or reply["code"] in CODES, reply
                outcomes[reply.get("code", "infer")] += 1
        noise = rng.normal(size=(2, 8, 2)).astype(np.float32)
        prefix = rng.normal(size=(2, 5, 2)).astype(np.float32)
        obs = states(2, 3)
        actions, _ = client.infer(obs, noise=noise, prefix=prefix, frozen=2, timeout_s=30)
        assert client.health()["stats"].get("error_internal", 0) == 0
    np.testing.assert_array_equal(actions, engine.run_with_prefix(obs, noise, None, prefix, 2))
    assert min(outcomes["invalid_input"], outcomes["bad_request"], outcomes["infer"]) > 30
