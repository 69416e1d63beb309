"""Tiny policies trained once per session on the toy sinusoid task (:mod:`tests.inference.toy`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from robopolicy.policies import Policy
from tests.inference.toy import train_toy_policy


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the machine is shared, and small nets run fastest so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy() -> Callable[[str], Policy]:
    """``toy(kind)``: a diffusion or flow policy fitted to the toy chunks (built on first use)."""
    built: dict[str, Policy] = {}

    def make(kind: str) -> Policy:
        if kind not in built:
            built[kind] = train_toy_policy(kind, steps=600, width=64)
        return built[kind]

    return make


@pytest.fixture(scope="session")
def push_teacher(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``push_teacher(kind)``: an untrained small ``arm-push`` policy checkpoint whose card names
    a 3-episode demo store (shapes, normalizer and card as the trainer makes them)."""
    from robopolicy.config import apply_overrides
    from robopolicy.data.dataset import SequenceDataset
    from robopolicy.policies import save_policy
    from robopolicy.policies.build import make_policy
    from robopolicy.train.presets import get_preset
    from sim.collect import CollectConfig, collect_demos

    root = tmp_path_factory.mktemp("push")
    store = root / "demos.zarr"
    collect_demos(CollectConfig("arm-push", store, episodes=3, seed=0), progress=False)
    built: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in built:
            train = get_preset("arm-push", policy=kind, data=str(store))
            small = ["policy.denoiser.hidden_dims=[32,32,32]", "data.val_ratio=0"]
            train = apply_overrides(train, small)
            teacher = make_policy(train.policy, SequenceDataset(train.dataset_config()))
            card = {"task": "arm-push", "data": str(store)}
            built[kind] = save_policy(teacher, root / kind, card=card)
        return built[kind]

    return make
