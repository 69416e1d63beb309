"""Typed configs: JSON round trip, polymorphic variants, overrides, "did you mean"."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from robopolicy.config import ConfigError, apply_overrides, from_dict, to_dict


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
