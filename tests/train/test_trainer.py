"""The trainer: schedule, EMA, pickle-free state, kill -9 and resume, checkpoint links, configs."""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robopolicy.config import ConfigError, apply_overrides
from robopolicy.policies import load_policy
from robopolicy.train import Trainer
from robopolicy.train.checkpoints import CheckpointDir
from robopolicy.train.config import EmaConfig, ScheduleConfig
from robopolicy.train.ema import Ema, ema_decay
from robopolicy.train.schedule import lr_factor
from robopolicy.train.state import load_tree, rng_states, save_tree, set_rng_states
from tests.train.helpers import make_store, tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("data") / "tiny.zarr")


def test_lr_schedule_warms_up_linearly_then_follows_half_a_cosine():
    cfg = ScheduleConfig(warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, 110, cfg) for s in range(111)]
    assert factors[0] == 0.0 and factors[5] == pytest.approx(0.5) and factors[10] == 1.0
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert lr_factor(500, 110, cfg) == pytest.approx(0.1)
    constant = ScheduleConfig(kind="constant", warmup_steps=4)
    assert [lr_factor(s, 100, constant) for s in (2, 4, 99)] == [0.5, 1.0, 1.0]


def test_ema_decay_and_update_follow_diffusion_policy():
    cfg = EmaConfig(inv_gamma=1.0, power=0.75, max_value=0.9999)
    assert ema_decay(0, cfg) == 0.0 and ema_decay(1, cfg) == 0.0
    assert ema_decay(2, cfg) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(10_001, cfg) == pytest.approx(1 - 10_001**-0.75)
    assert ema_decay(10**9, cfg) == 0.9999
    assert ema_decay(5, EmaConfig(update_after_step=4)) == 0.0
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = Ema(model, cfg)
    expected = model[0].weight.detach().clone()
    for k in range(5):
        with torch.no_grad():
            model[0].weight.add_(1.0)
            model[1].running_mean.add_(1.0)
        d = ema_decay(k, cfg)
        expected = d * expected + (1 - d) * model[0].weight.detach()
        ema.update(model)
        assert ema.decay == d
    torch.testing.assert_close(ema.model[0].weight, expected)
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)  # buffers copied
    assert ema.updates == 5 and not ema.model[0].weight.requires_grad


def _forbid_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "dumps", refuse)
    monkeypatch.setattr(pickle, "dump", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_training_state_round_trips_exactly_without_pickle(tmp_path, monkeypatch):
    _forbid_pickle(monkeypatch)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    np.random.seed(3)
    tree = {
        "optimizer": opt.state_dict(),
        "model": model.state_dict(),
        "rng": rng_states(),
        "misc": {"nan": math.nan, "inf": -math.inf, "tuple": (1, (2, "x")), 7: None},
    }
    draws = (torch.rand(3), np.random.rand(3))  # what the saved generators give next
    save_tree(tmp_path, "state", tree)
    back = load_tree(tmp_path, "state")
    assert back["optimizer"]["param_groups"] == tree["optimizer"]["param_groups"]
    assert isinstance(back["optimizer"]["param_groups"][0]["betas"], tuple)
    for pid, state in tree["optimizer"]["state"].items():
        for key, value in state.items():
            got = back["optimizer"]["state"][pid][key]
            assert got.dtype == value.dtype and torch.equal(got, value)
    assert math.isnan(back["misc"]["nan"]) and back["misc"]["inf"] == -math.inf
    assert back["misc"]["tuple"] == (1, (2, "x")) and back["misc"][7] is None
    # The restored optimizer and generators continue exactly as the originals.
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(back["model"])
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    twin_opt.load_state_dict(back["optimizer"])
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    assert torch.equal(model.weight, twin.weight)
    set_rng_states(back["rng"])
    assert torch.equal(torch.rand(3), draws[0]) and np.array_equal(np.random.rand(3), draws[1])
    with pytest.raises(TypeError, match="object"):
        save_tree(tmp_path, "bad", {"x": object()})


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    latest = out / "checkpoints" / "latest"
    weights = load_file(str(latest / "model.safetensors"))
    trained = load_file(str(latest / "trainer_state" / "state.safetensors"))
    return {**weights, **{k: v for k, v in trained.items() if k.startswith("model/")}}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _assert_complete(checkpoint: Path) -> None:
    policy = load_policy(checkpoint)
    assert policy.sample({"state": torch.zeros(1, 2, 3)}).shape == (1, 4, 2)
    assert load_tree(checkpoint / "trainer_state", "state")["progress"]["step"] > 0


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path, data, monkeypatch):
    _forbid_pickle(monkeypatch)  # checkpoints, trainer state and resuming never pickle
    config = tiny_config(data, epochs=6)
    Trainer(config, progress=False).fit(tmp_path / "whole")
    Trainer(config, progress=False, stop_after=37).fit(tmp_path / "parts")
    assert CheckpointDir(tmp_path / "parts" / "checkpoints").steps()[-1] == 25
    result = Trainer(config, progress=False).fit(tmp_path / "parts", resume=True)
    assert result.step == 84
    _assert_same_weights(tmp_path / "whole", tmp_path / "parts")
    rows = [line for line in (tmp_path / "parts" / "scalars.jsonl").read_text().splitlines()]
    steps = [int(row.split('"step": ')[1].split(",")[0]) for row in rows]
    assert steps == sorted(steps)  # the killed steps were dropped, never shown twice


_RUN = """
import sys
from pathlib import Path
from robopolicy.train import Trainer
from tests.train.helpers import tiny_config
Trainer(tiny_config(Path(sys.argv[1]), epochs=8), progress=False).fit(sys.argv[2], resume=True)
"""


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, data):
    env = {**os.environ, "TINY_POLICY_SLEEP": "0.004", "PYTHONPATH": str(ROOT)}
    killed = subprocess.Popen(
        [sys.executable, "-c", _RUN, str(data), str(tmp_path / "killed")],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    config = tiny_config(data, epochs=8)
    Trainer(config, progress=False).fit(tmp_path / "whole")  # meanwhile, on the other core
    store = CheckpointDir(tmp_path / "killed" / "checkpoints")
    deadline = time.monotonic() + 60
    while not (store.link("latest") and store.link("latest").name >= "step-0000050"):
        assert killed.poll() is None, killed.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.005)
    time.sleep(0.05 * np.random.default_rng().random())  # anywhere between checkpoints
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    latest = store.link("latest")
    _assert_complete(latest)
    assert int(latest.name.split("-")[1]) < 112  # killed before the end
    Trainer(config, progress=False).fit(tmp_path / "killed", resume=True)
    _assert_same_weights(tmp_path / "whole", tmp_path / "killed")
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


def test_latest_and_best_always_name_complete_checkpoints(tmp_path, data):
    scores = iter([0.2, 0.6, 0.4, 0.5, 0.1, 0.3])

    def evaluate(policy):
        assert not policy.training
        return {"success_rate": next(scores), "mean_score": 0.0}

    config = tiny_config(data, epochs=6, eval_every=1, checkpoint_every=0, keep_checkpoints=2)
    result = Trainer(config, evaluate=evaluate, progress=False).fit(tmp_path / "run")
    store = CheckpointDir(tmp_path / "run" / "checkpoints")
    assert result.best.name == "step-0000028"  # the second evaluation (0.6), 14 steps an epoch
    assert result.latest.name == "step-0000084"
    assert store.steps() == [28, 70, 84]  # the last two, and best
    for link in ("latest", "best"):
        assert os.readlink(store.root / link).startswith("step-")  # relative links
        _assert_complete(store.root / link)
    card = load_policy(store.root / "best") and (store.root / "best" / "card.json").read_text()
    assert '"eval/success_rate": 0.6' in card
    # A staging directory left by a killed writer is never named, and is cleaned on resume.
    (store.root / ".step-0000099.partial-dead").mkdir()
    Trainer(config, evaluate=evaluate, progress=False).fit(tmp_path / "run", resume=True)
    assert not (store.root / ".step-0000099.partial-dead").exists()


def test_a_point_of_a_link_is_atomic(tmp_path):
    store = CheckpointDir(tmp_path)
    for step in (1, 2):
        store.write(step, lambda d: (d / "x").write_text("ok"))
        store.point("latest", step)
        assert (tmp_path / "latest" / "x").read_text() == "ok"
    assert os.readlink(tmp_path / "latest") == "step-0000002"
    with pytest.raises(FileNotFoundError):
        store.point("latest", 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_overrides_and_changed_resumes_are_refused(tmp_path, data):
    config = tiny_config(data)
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        apply_overrides(config, ["optim.lrr=1e-3"])
    with pytest.raises(ConfigError, match="did you mean 'optim'"):
        apply_overrides(config, ["optimm.lr=1e-3"])
    assert apply_overrides(config, ["optim.lr=0.003"]).optim.lr == 0.003
    with pytest.raises(ConfigError, match="lr must be positive"):
        apply_overrides(config, ["optim.lr=-1"])
    Trainer(config, progress=False, stop_after=30).fit(tmp_path / "run")
    with pytest.raises(Exception, match="holds a run"):
        Trainer(config, progress=False).fit(tmp_path / "run")
    changed = apply_overrides(config, ["batch_size=8"])
    with pytest.raises(ConfigError, match="batch_size"):
        Trainer(changed, progress=False).fit(tmp_path / "run", resume=True)


def test_a_run_saved_before_the_shared_cadence_resumes(tmp_path, data):
    """Runs saved before the cadence config was shared spell ``keep_last`` and have no
    ``eval_envs`` in ``train_config.json``: they resume, and still refuse a changed setting."""
    config = tiny_config(data, epochs=6)
    Trainer(config, progress=False, stop_after=30).fit(tmp_path / "run")
    file = tmp_path / "run" / "train_config.json"
    saved = json.loads(file.read_text(encoding="utf-8"))
    saved["keep_last"] = saved.pop("keep_checkpoints")
    del saved["eval_envs"]
    file.write_text(json.dumps(saved), encoding="utf-8")
    changed = apply_overrides(config, ["keep_checkpoints=3"])
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        Trainer(changed, progress=False).fit(tmp_path / "run", resume=True)
    assert Trainer(config, progress=False).fit(tmp_path / "run", resume=True).step == 84
