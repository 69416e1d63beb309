"""A behaviour-cloned policy to fine-tune: imperfect ``arm-push`` demos, a short BC run.

``push_bc(kind)`` (``kind`` is ``"diffusion"`` or ``"flow"``) returns the checkpoint directory of
a small policy cloned from imperfect scripted demonstrations — measurably below the clean expert,
which is what fine-tuning tests need. Built once per test session (demos shared by both kinds).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

DEMOS = 150
BC_OVERRIDES = (
    "max_steps=4000",
    "checkpoint_every=4000",
    "val_every=1000",
    "num_threads=1",
    "policy.denoiser.hidden_dims=[256,256,256]",
)


@pytest.fixture(scope="session")
def push_bc(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    from robopolicy.config import apply_overrides
    from robopolicy.train.presets import get_preset
    from robopolicy.train.trainer import Trainer
    from sim.collect import CollectConfig, collect_demos

    root = tmp_path_factory.mktemp("push_bc")
    built: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in built:
            demos = root / "demos.zarr"
            if not demos.exists():
                collect_demos(
                    CollectConfig("arm-push", demos, episodes=DEMOS, seed=0), progress=False
                )
            config = get_preset("arm-push", policy=kind, data=str(demos))
            config = apply_overrides(config, list(BC_OVERRIDES))
            result = Trainer(config).fit(root / kind)
            built[kind] = Path(result.latest).resolve()
        return built[kind]

    return make
