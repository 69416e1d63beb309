"""A writer SIGKILLed at random moments leaves a valid store: committed episodes intact."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robopolicy.data.store import EpisodeStore
from tests.data.test_store import make_episode

WRITER = """
import sys
from pathlib import Path
from robopolicy.data.store import EpisodeStore
from tests.data.test_store import make_episode

path = Path(sys.argv[1])
store = (EpisodeStore.open(path, mode="a") if path.exists()
         else EpisodeStore.create(path, fps=10))
print("ready", flush=True)
while True:
    i = store.n_episodes
    store.append_episode(make_episode(20 + i % 7, i), episode_meta={"task_index": i % 3})
"""


def expected(index: int) -> dict[str, np.ndarray]:
    return make_episode(20 + index % 7, index)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_at_most_the_episode_in_flight(tmp_path):
    path = tmp_path / "crash.zarr"
    rng = np.random.default_rng(0)
    committed = 0
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        store = EpisodeStore.open(path)
        assert store.n_episodes >= committed, "a committed episode was lost"
        committed = store.n_episodes
        assert store.episode_meta("task_index").tolist() == [i % 3 for i in range(committed)]
        for index in range(committed):
            got = store.episode(index)
            for key, value in expected(index).items():
                np.testing.assert_array_equal(got[key], value, err_msg=f"episode {index} {key}")
    assert committed > 8, "the writer never got going; the test proved nothing"
