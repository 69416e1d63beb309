"""Typed configs: JSON round trip, polymorphic variants, overrides, "did you mean"."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from robopolicy.config import FLAT, ConfigError, apply_overrides, build, from_dict, to_dict


@dataclasses.dataclass
class Net:
    variants: ClassVar[dict[str, type]] = {}
    width: int = 64


@dataclasses.dataclass
class Unet(Net):
    dims: tuple[int, ...] = (64, 128)


@dataclasses.dataclass
class Mlp(Net):
    depth: int = 3


Net.variants.update(unet=Unet, mlp=Mlp)


@dataclasses.dataclass
class Optim:
    lr: float = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclasses.dataclass
class Train:
    task: str = "arm-push"
    out: Path = Path("out")
    epochs: int = 10
    seed: int | None = None
    optim: Optim = dataclasses.field(default_factory=Optim)
    net: Net = dataclasses.field(default_factory=Unet)


def test_round_trip_keeps_types_and_variants():
    config = Train(seed=3, net=Mlp(width=32, depth=5))
    data = to_dict(config)
    assert data["net"] == {"type": "mlp", "width": 32, "depth": 5}
    assert data["out"] == "out"
    assert from_dict(Train, data) == config
    assert from_dict(Train, to_dict(Train())).net.dims == (64, 128)


def test_overrides_coerce_and_switch_variants():
    config = apply_overrides(
        Train(),
        [
            "optim.lr=3e-4",
            "epochs=2",
            "net.dims=[8,16,32]",
            "task=pusht",
            "seed=null",
            "out=/tmp/x",
        ],
    )
    assert config.optim.lr == 3e-4 and config.epochs == 2 and config.net.dims == (8, 16, 32)
    assert config.task == "pusht" and config.seed is None and config.out == Path("/tmp/x")
    switched = apply_overrides(config, ["net.type=mlp", "net.depth=7"])
    assert switched.net == Mlp(width=64, depth=7)
    assert isinstance(apply_overrides(Train(), ["optim.lr=1"]).optim.lr, float)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], "did you mean 'lr'"),
        (["optm.lr=1"], "did you mean 'optim'"),
        (["epochs=many"], "expected int"),
        (["optim.lr=-1"], "lr must be positive"),
        (["optim.schedule=cosin"], "did you mean 'cosine'"),
        (["net.type=mpl"], "did you mean 'mlp'"),
        (["net.depth=2"], "did you mean 'dims'|unknown field"),
        (["epochs"], "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Train(), overrides)


def test_unknown_key_in_json():
    with pytest.raises(ConfigError, match=r"optim\.betas: unknown field of Optim"):
        from_dict(Train, {"optim": {"betas": [0.9, 0.95]}})


@dataclasses.dataclass
class Cadence:
    every: int = 10
    keep: int = 2

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"keep must be >= 1, got {self.keep}")


@dataclasses.dataclass
class Run:
    steps: int = 100
    cadence: Cadence = dataclasses.field(default_factory=lambda: Cadence(keep=5), metadata=FLAT)


def test_a_flat_section_reads_and_writes_as_its_owner_fields():
    assert to_dict(Run()) == {"steps": 100, "every": 10, "keep": 5}
    assert from_dict(Run, {"steps": 3, "every": 0}) == Run(3, Cadence(every=0, keep=5))
    assert from_dict(Run, to_dict(Run(cadence=Cadence(1, 1)))) == Run(cadence=Cadence(1, 1))
    assert apply_overrides(Run(), ["every=7"]).cadence == Cadence(every=7, keep=5)
    assert build(Run, every=7, steps=1) == Run(1, Cadence(every=7, keep=5))  # owner's keep
    with pytest.raises(ConfigError, match="did you mean 'every'"):
        apply_overrides(Run(), ["evry=1"])
    with pytest.raises(ConfigError, match="keep must be >= 1"):
        apply_overrides(Run(), ["keep=0"])
    with pytest.raises(ConfigError, match="not a config section"):
        apply_overrides(Run(), ["cadence.every=1"])


def test_every_run_config_spells_the_shared_cadence_flat():
    """What runs save (``rl_config.json``, ``train_config.json``) and the command line's
    ``eval_every=...`` keep the names they had before the cadence was shared."""
    from robopolicy.cadence import CadenceConfig
    from robopolicy.rl.registry import load_algorithms
    from robopolicy.train.config import TrainConfig, train_config_from_dict

    names = {f.name for f in dataclasses.fields(CadenceConfig)}
    for config in [a.config() for a in load_algorithms().values()] + [TrainConfig()]:
        data = to_dict(config)
        assert names <= data.keys() and "cadence" not in data, type(config).__name__
        assert from_dict(type(config), data) == config
    saved = to_dict(TrainConfig(cadence=CadenceConfig(keep_checkpoints=4)))
    saved["keep_last"] = saved.pop("keep_checkpoints")  # as runs saved it before
    assert train_config_from_dict(saved).cadence.keep_checkpoints == 4


def test_an_old_step_name_suggests_steps_and_saved_runs_read_the_new_one():
    """The step count per sample is ``steps`` everywhere: an override spelling an old name fails
    with a "did you mean" naming the new one, and a ``train_config.json`` saved with the policy's
    old ``num_inference_steps`` reads as ``steps``, with the same value."""
    from robopolicy.policies.flow import FlowConfig
    from robopolicy.rl.dppo_config import DPPOConfig
    from robopolicy.rl.dsrl_config import DSRLConfig
    from robopolicy.rl.fpo_config import FPOConfig
    from robopolicy.train.config import TrainConfig, train_config_from_dict

    train = TrainConfig(policy=FlowConfig(steps=4))
    for config, old, new in [
        (DPPOConfig(), "denoising_steps", "steps"),
        (DPPOConfig(), "ft_denoising_steps", "finetune_steps"),
        (FPOConfig(), "sampling_steps", "steps"),
        (DSRLConfig(), "base_steps", "steps"),
        (train, "policy.num_inference_steps", "steps"),
    ]:
        with pytest.raises(ConfigError, match=f"{old}: unknown field \\(did you mean '{new}'"):
            apply_overrides(config, [f"{old}=5"])
    saved = to_dict(train)
    saved["policy"]["num_inference_steps"] = saved["policy"].pop("steps")
    assert train_config_from_dict(saved) == train
