"""Hostile checkpoints (issue 18): each is one DataError naming the file and field, and one
``error:`` line with exit status 2 from ``robopolicy eval`` and ``serve``, never a traceback;
a config whose sizes would need tens of GB is refused from the safetensors header before any
tensor is allocated."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import robopolicy
from robopolicy.cli import main
from robopolicy.errors import DataError
from robopolicy.policies import read_card, save_policy
from tests.policies.make_fixtures import toy_policy

pytestmark = pytest.mark.usefixtures("one_thread")


def edit(file: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        document = json.loads((path / file).read_text())
        result = change(document)
        (path / file).write_text(json.dumps(document if result is None else result))

    return damage


def policy_field(**fields: object) -> Callable[[Path], None]:
    return edit("config.json", lambda d: d["policy"].update(fields))


def hidden_dims(*dims: int) -> Callable[[Path], None]:
    return edit("config.json", lambda d: d["policy"]["denoiser"].update(hidden_dims=list(dims)))


def extra_weight(path: Path) -> None:
    weights = load_file(str(path / "model.safetensors"))
    save_file({**weights, "backdoor.weight": torch.zeros(3)}, str(path / "model.safetensors"))


BAD_CHECKPOINTS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "version 0": (edit("config.json", lambda d: d.update(version=0)), ("config.json", "[version]")),
    "version as text": (
        edit("config.json", lambda d: d.update(version="2")),
        ("config.json", "[version]"),
    ),
    "version true": (edit("config.json", lambda d: d.update(version=True)), ("[version]",)),
    "no version": (edit("config.json", lambda d: d.pop("version") and None), ("[version]",)),
    "no policy": (
        edit("config.json", lambda d: d.pop("policy") and None),
        ("config.json", "[policy]"),
    ),
    "policy not an object": (
        edit("config.json", lambda d: d.update(policy=[1, 2])),
        ("config.json", "[policy]"),
    ),
    "config a list": (edit("config.json", lambda d: [d]), ("config.json", "[format]")),
    "ill-typed field": (policy_field(horizon="four"), ("config.json", "[policy]", "horizon")),
    "absurd timestep count": (
        policy_field(num_train_timesteps=10**12),
        ("config.json", "[policy]", "num_train_timesteps"),
    ),
    "weight shape mismatch": (
        hidden_dims(24, 24, 24),
        ("model.safetensors", "[model.", "has shape [32, 22]", "the config in config.json makes"),
    ),
    "unexpected weight": (extra_weight, ("model.safetensors", "unexpected ['backdoor.weight']")),
    "missing weights": (
        lambda p: (p / "model.safetensors").unlink(),
        ("model.safetensors", "unreadable weights"),
    ),
    "card not JSON": (lambda p: (p / "card.json").write_text("{"), ("card.json", "unreadable")),
    "card a list": (lambda p: (p / "card.json").write_text("[]"), ("card.json", "JSON object")),
    "normalizer config a list": (
        lambda p: (p / "normalizer.json").write_text("[]"),
        ("unreadable normalizer",),
    ),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "good"
    return save_policy(toy_policy("diffusion"), path, card={"task": "pusht"})


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_hostile_checkpoint_is_one_error_naming_file_and_field(
    case: str, good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, names = BAD_CHECKPOINTS[case]
    path = tmp_path / "ckpt"
    save_policy(robopolicy.load_policy(good), path, card={"task": "pusht"})
    damage(path)
    with pytest.raises(DataError) as caught:  # commands read the card before the policy
        (read_card if case.startswith("card") else robopolicy.load_policy)(path)
    for name in names:
        assert name in str(caught.value), (name, str(caught.value))
    for argv in (["eval", str(path), "--episodes", "1", "--device", "cpu"], ["serve", str(path)]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert "Traceback" not in err and len(lines) == 1, err
        assert all(name in lines[0] for name in names), lines[0]


def test_absurd_dims_are_refused_without_allocating(good: Path, tmp_path: Path) -> None:
    """Each of two 60000 x 60000 layers is 14 GB; under an 8 GB address-space limit, building
    them would fail. The command refuses from the header instead, in one line, quickly. (Run
    in a child process only: should the check ever go, the test fails instead of the machine
    running out of memory.)"""
    path = tmp_path / "ckpt"
    save_policy(robopolicy.load_policy(good), path, card={"task": "pusht"})
    hidden_dims(60_000, 60_000, 60_000)(path)
    limit = 8 << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    for command in (["eval", "--device", "cpu"], ["serve"]):
        done = subprocess.run(
            [sys.executable, "-m", "robopolicy.cli", command[0], str(path), *command[1:]],
            capture_output=True,
            text=True,
            preexec_fn=cap,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "model.safetensors" in lines[0] and "60000" in lines[0]
