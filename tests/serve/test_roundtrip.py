"""``robopolicy serve`` in a subprocess: exact round trips, a torch-free client, clean exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from robopolicy.policies import load_policy
from robopolicy.serve import PolicyClient
from tests.serve.conftest import FIXTURES, LAUNCH, ServerProcess


@pytest.fixture(scope="module")
def sample_in_process():
    policy = load_policy(FIXTURES / "diffusion_mlp")

    def sample(state: np.ndarray, noise: np.ndarray, steps: int | None = None) -> np.ndarray:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the server runs (--threads 1)
        try:
            with torch.inference_mode():
                obs = {"state": torch.from_numpy(state)}
                return policy.sample(obs, noise=torch.from_numpy(noise), steps=steps).numpy()
        finally:
            torch.set_num_threads(threads)

    return sample


def test_round_trip_returns_exactly_the_in_process_sample(server, sample_in_process) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    rng = np.random.default_rng(0)
    with PolicyClient(server.host, server.port) as client:
        meta = client.metadata()
        assert (meta["policy_type"], meta["n_obs_steps"], meta["horizon"]) == ("diffusion", 2, 4)
        assert meta["obs"] == {"state": {"shape": [2, 3], "dtype": "float32"}}
        stored = np.asarray(expected["obs"], np.float32), np.asarray(expected["noise"], np.float32)
        actions, _ = client.infer({"state": stored[0]}, noise=stored[1], timeout_s=5)
        assert np.array_equal(actions, sample_in_process(*stored, None))
        # the stored checkpoint's own sample, to test_stored_checkpoints' float32 tolerance
        want = np.asarray(expected["diffusion_mlp"]["sample"], np.float32)
        np.testing.assert_allclose(actions, want, rtol=1.3e-6, atol=1e-5)
        for batch, steps in ((1, None), (3, 2), (2, 20)):
            state = rng.normal(size=(batch, 2, 3)).astype(np.float32)
            noise = rng.normal(size=(batch, 4, 2)).astype(np.float32)
            times = np.arange(batch * 2, dtype=np.float64).reshape(batch, 2)
            actions, info = client.infer(
                {"state": state, "timestamp": times}, noise=noise, steps=steps, timeout_s=5
            )
            assert actions.dtype == np.float32
            assert np.array_equal(actions, sample_in_process(state, noise, steps))
            assert info["start"] == 1 and np.array_equal(info["due"], times[:, -1])
            assert info["timing"]["inference_ms"] > 0 and info["timing"]["queue_ms"] >= 0


CLIENT_WITHOUT_TORCH = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None  # any import of torch now fails
    import numpy as np
    from robopolicy.serve import PolicyClient

    host, port, data = sys.argv[1], int(sys.argv[2]), json.loads(sys.stdin.read())
    with PolicyClient(host, port) as client:
        assert client.health()["status"] == "ok"
        state = np.asarray(data["state"], np.float32)
        noise = np.asarray(data["noise"], np.float32)
        actions, info = client.infer({"state": state}, noise=noise, timeout_s=5)
    loaded = [name for name, module in sys.modules.items() if name.startswith("torch") and module]
    print(json.dumps({"actions": actions.tolist(), "torch": loaded}))
    """
)


def test_the_client_works_without_torch(server, sample_in_process) -> None:
    rng = np.random.default_rng(1)
    state = rng.normal(size=(2, 2, 3)).astype(np.float32)
    noise = rng.normal(size=(2, 4, 2)).astype(np.float32)
    result = subprocess.run(
        [sys.executable, "-c", CLIENT_WITHOUT_TORCH, server.host, str(server.port)],
        input=json.dumps({"state": state.tolist(), "noise": noise.tolist()}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["torch"] == []
    assert np.array_equal(np.asarray(out["actions"], np.float32), sample_in_process(state, noise))


def test_sigterm_stops_the_server_cleanly() -> None:
    proc = ServerProcess(str(FIXTURES / "flow_mlp"), "--port", "0", "--threads", "1")
    with PolicyClient(proc.host, proc.port) as client:
        actions, _ = client.infer({"state": np.zeros((1, 2, 3), np.float32)}, timeout_s=5)
        assert actions.shape == (1, 4, 2)
        assert proc.stop() == 0
        with pytest.raises(ConnectionError):
            client.health(timeout_s=2)
    log = proc.stderr()
    assert "Traceback" not in log and "policy server stopped" in log


def test_the_command_refuses_a_public_bind_without_a_token() -> None:
    env = {**os.environ, "ROBOPOLICY_SERVE_TOKEN": ""}
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH, "serve", str(FIXTURES / "flow_mlp"), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "without a token" in result.stderr and "Traceback" not in result.stderr
