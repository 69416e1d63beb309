"""Per-key normalizers: round trips, ranges, constant dimensions, exact save/load without pickle."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import robopolicy.data.normalize as normalize_module
from robopolicy.data.normalize import CONFIG_FILE, TENSORS_FILE, Normalizer
from robopolicy.errors import DataError


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    state = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    state[:, 2] = 7.5  # a constant dimension
    action = rng.uniform(10, 500, size=(500, 2)).astype(np.float32)
    image = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    return {"state": state, "action": action, "image": image}


MODES = {"state": "mean_std", "action": "min_max", "image": "identity"}


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(-1e4, 1e4, width=32),
    ),
    mode=st.sampled_from(["min_max", "mean_std", "identity"]),
)
def test_roundtrip_is_identity(data, mode):
    norm = Normalizer.fit({"x": data}, {"x": mode})
    for x in (data, torch.from_numpy(data)):
        y = norm.normalize(x, "x")
        assert type(y) is type(x) and tuple(y.shape) == data.shape
        back = np.asarray(norm.unnormalize(y, "x"))
        np.testing.assert_allclose(back, data, rtol=1e-5, atol=1e-5 * (1 + np.abs(data).max()))
    if mode == "min_max":
        y = norm.normalize(data, "x")
        assert y.min() >= -1 - 1e-5 and y.max() <= 1 + 1e-5


def test_min_max_spans_minus_one_to_one_and_mean_std_standardizes():
    data = make_data()
    norm = Normalizer.fit(data, {"action": "min_max", "state": "mean_std"})
    y = norm.normalize(data["action"], "action")
    np.testing.assert_allclose(y.min(axis=0), -1, atol=1e-6)
    np.testing.assert_allclose(y.max(axis=0), 1, atol=1e-6)
    z = norm.normalize(torch.from_numpy(data["state"]), "state")
    varying = [0, 1, 3]
    torch.testing.assert_close(z[:, varying].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        z[:, varying].std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0
    )


def test_min_max_keeps_its_range_far_from_zero():
    # a range of one float32 step at 1e4 (e.g. a timestamp) still maps exactly onto [-1, 1]
    x = np.array([[1e4], [np.nextafter(np.float32(1e4), np.float32(2e4))]], dtype=np.float32)
    norm = Normalizer.fit({"t": x}, {"t": "min_max"})
    assert norm.normalize(x, "t").ravel().tolist() == [-1.0, 1.0]
    assert np.array_equal(norm.unnormalize(norm.normalize(x, "t"), "t"), x)


@pytest.mark.parametrize("mode", ["min_max", "mean_std"])
def test_constant_dims_are_centred_not_blown_up(mode):
    data = np.full((50, 2), 7.5, dtype=np.float32)
    data[:, 1] = np.linspace(0, 1, 50)
    norm = Normalizer.fit({"x": data}, {"x": mode})
    y = norm.normalize(data, "x")
    assert np.all(np.isfinite(y)) and np.all(y[:, 0] == 0)
    # a value off the constant stays off by the same raw amount
    off = norm.normalize(np.array([[8.0, 0.5]], dtype=np.float32), "x")
    assert off[0, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(norm.unnormalize(y, "x"), data, atol=1e-6)


def test_identity_and_dtypes():
    norm = Normalizer.fit(make_data(), MODES)
    image = make_data()["image"]
    out = norm.normalize(torch.from_numpy(image), "image")
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(image).float())
    assert norm.stats("image") == {}
    assert norm.normalize(np.arange(4, dtype=np.int64).reshape(1, 4), "state").dtype == np.float32
    batch = norm.normalize_dict({"action": torch.zeros(2, 16, 2), "state": torch.zeros(2, 2, 4)})
    assert batch["action"].shape == (2, 16, 2)
    assert set(norm.unnormalize_dict(batch)) == {"action", "state"}


def test_save_load_is_exact_and_never_pickles(tmp_path, monkeypatch):
    norm = Normalizer.fit(make_data(), MODES, eps=1e-3)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)

    norm.save(tmp_path / "norm")
    config = json.loads((tmp_path / "norm" / CONFIG_FILE).read_text())
    assert config["modes"] == MODES and config["eps"] == 1e-3
    tensors = safetensors.torch.load_file(tmp_path / "norm" / TENSORS_FILE)
    assert set(tensors) == {f"{k}/{s}" for k in ("state", "action") for s in normalize_module.STATS}
    for loaded in (Normalizer.load(tmp_path / "norm"), Normalizer.from_bytes(norm.to_bytes())):
        assert loaded.modes == norm.modes and loaded.eps == norm.eps
        for key in ("state", "action"):
            for name, value in norm.stats(key).items():
                assert torch.equal(loaded.stats(key)[name], value)
            x = torch.randn(3, 16, make_data()[key].shape[1])
            assert torch.equal(loaded.normalize(x, key), norm.normalize(x, key))
    restored = Normalizer.from_state_dict(norm.state_dict(), norm.config())
    assert restored.modes == norm.modes


def test_load_errors_name_the_directory(tmp_path):
    with pytest.raises(DataError, match="unreadable normalizer"):
        Normalizer.load(tmp_path)
    with pytest.raises(ValueError, match="no normalizer config"):
        Normalizer.from_bytes(safetensors.torch.save({"a": torch.zeros(1)}))


def test_bad_statistics_and_keys_are_named():
    data = make_data()
    data["state"] = data["state"].astype(np.float64)
    data["state"][3, 1] = np.nan
    with pytest.raises(DataError, match=r"\[state\].*not finite"):
        Normalizer.fit(data, MODES, source="store.zarr")
    with pytest.raises(DataError, match=r"\[velocity\].*no such key"):
        Normalizer.fit(make_data(), {"velocity": "min_max"})
    stats = {s: np.zeros(2) for s in normalize_module.STATS}
    stats["std"] = np.array([1.0, np.nan])
    with pytest.raises(ValueError, match="'std' of key 'q'"):
        Normalizer({"q": "mean_std"}, {"q": stats})
    with pytest.raises(ValueError, match="mode 'zscore' for key 'q'"):
        Normalizer({"q": "zscore"}, {})
    with pytest.raises(ValueError, match="no statistics for key 'q'"):
        Normalizer({"q": "min_max"}, {})
    norm = Normalizer.fit(make_data(), MODES)
    with pytest.raises(KeyError, match="velocity"):
        norm.normalize(np.zeros(2), "velocity")
    with pytest.raises(ValueError, match=r"'action'.*should be 2"):
        norm.normalize(np.zeros((4, 3)), "action")


def test_fit_streams_in_chunks(monkeypatch):
    data = make_data()
    whole = Normalizer.fit(data, MODES)
    monkeypatch.setattr(normalize_module, "_CHUNK_ELEMENTS", 7)
    chunked = Normalizer.fit(data, MODES)
    for key in ("state", "action"):
        for name, value in whole.stats(key).items():
            torch.testing.assert_close(chunked.stats(key)[name], value)
    np.testing.assert_allclose(
        whole.stats("action")["std"].numpy(), data["action"].std(axis=0), rtol=1e-5
    )


def test_to_moves_statistics():
    norm = Normalizer.fit(make_data(), MODES)
    assert norm.to("cpu") is norm and norm.device.type == "cpu"
    meta = Normalizer.fit(make_data(), MODES).to("meta")  # a device other than the CPU
    assert meta.device.type == "meta" and meta.stats("action")["min"].device.type == "meta"
    assert meta.normalize(torch.zeros(2, 2, device="meta"), "action").device.type == "meta"
