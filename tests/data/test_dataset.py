"""The torch dataset of padded windows: contents, batching, splits, loading and errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig, batch_loader
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from tests.data.test_sampler import reference_windows

LENGTHS = [5, 9, 3, 12]


def make_store(path, lengths=LENGTHS, image=lambda t: t % 256, image_dtype=np.float32):
    """Frame t of the store holds state [t, -t], action [t, t + 0.5] and an image of value f(t)."""
    store = EpisodeStore.create(path, fps=10)
    begin = 0
    for n in lengths:
        t = np.arange(begin, begin + n)
        pixels = np.broadcast_to(image(t)[:, None, None, None], (n, 8, 8, 3))
        store.append_episode(
            {
                "state": np.stack([t, -t], axis=1).astype(np.float32),
                "action": np.stack([t, t + 0.5], axis=1).astype(np.float64),
                "img": np.ascontiguousarray(pixels, dtype=image_dtype),
            }
        )
        begin += n
    return path


def config(path, **kwargs):
    args = dict(obs_keys=["state"], image_keys=["img"], n_obs_steps=2, horizon=4, n_action_steps=2)
    return SequenceDatasetConfig(path, **{**args, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_obs_steps=5, horizon=4), "n_obs_steps"),
        (dict(n_obs_steps=2, horizon=4, n_action_steps=4), "n_action_steps"),
        (dict(horizon=0), "horizon"),
        (dict(obs_keys=["img"]), "repeat"),
        (dict(obs_keys=[], image_keys=[]), "at least one"),
        (dict(val_ratio=1.0), "val_ratio"),
        (dict(max_train_episodes=0), "max_train_episodes"),
        (dict(derived_keys={"pos": "state"}), "'pos'.*not SOURCE"),
        (dict(derived_keys={"pos": "pos[:2]"}), "'pos' cannot come from itself"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        config("x.zarr", **kwargs)


def test_samples_are_padded_windows_in_raw_units(tmp_path):
    ds = SequenceDataset(config(make_store(tmp_path / "s.zarr")))
    ref = [frames for _, _, frames in reference_windows(LENGTHS, 4, 1, 1)]
    assert len(ds) == len(ref)
    batch = ds[np.arange(len(ds))]
    assert batch["obs"]["state"].shape == (len(ref), 2, 2)
    assert batch["obs"]["img"].shape == (len(ref), 2, 8, 8, 3)
    assert batch["obs"]["img"].dtype == torch.uint8
    assert batch["action"].shape == (len(ref), 4, 2) and batch["action"].dtype == torch.float32
    ref = torch.tensor(ref, dtype=torch.float32)
    assert torch.equal(batch["obs"]["state"][..., 0], ref[:, :2])
    assert torch.equal(batch["obs"]["img"][:, :, 0, 0, 0].float(), ref[:, :2])
    assert torch.equal(batch["action"][..., 1], ref + 0.5)
    for i in (0, 7, len(ds) - 1, -1):  # one window equals its row of the batch
        item = ds[i]
        assert torch.equal(item["action"], batch["action"][i])
        assert torch.equal(item["obs"]["img"], batch["obs"]["img"][i])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_loaders_cover_each_now_frame_once(tmp_path):
    # with Ta = Tp - To + 1 every frame is "now" (step To - 1) of exactly one window
    ds = SequenceDataset(config(make_store(tmp_path / "s.zarr"), n_action_steps=3))
    assert len(ds) == sum(LENGTHS)
    gen = torch.Generator().manual_seed(0)
    now = [b["obs"]["state"][:, -1, 0] for b in batch_loader(ds, 8, shuffle=True, generator=gen)]
    assert sorted(torch.cat(now).tolist()) == list(range(sum(LENGTHS)))
    collated = next(iter(DataLoader(ds, batch_size=8)))
    batched = next(iter(batch_loader(ds, 8, shuffle=False)))
    assert torch.equal(collated["action"], batched["action"])
    assert torch.equal(collated["obs"]["img"], batched["obs"]["img"])


def test_validation_split_by_episode(tmp_path):
    path = make_store(tmp_path / "s.zarr", lengths=[6] * 10)
    ds = SequenceDataset(config(path, val_ratio=0.3, seed=1))
    val = ds.get_validation_dataset()
    assert val.arrays is ds.arrays
    train_eps, val_eps = set(ds.windows.episode.tolist()), set(val.windows.episode.tolist())
    assert len(val_eps) == 3 and len(train_eps) == 7 and not train_eps & val_eps
    assert len(ds) + len(val) == len(SequenceDataset(config(path)))
    again = SequenceDataset(config(path, val_ratio=0.3, seed=1)).get_validation_dataset()
    assert set(again.windows.episode.tolist()) == val_eps
    small = SequenceDataset(config(path, val_ratio=0.3, seed=1, max_train_episodes=2))
    assert len(set(small.windows.episode.tolist())) == 2


def test_normalizer_from_the_dataset(tmp_path):
    ds = SequenceDataset(config(make_store(tmp_path / "s.zarr")))
    norm = ds.get_normalizer({"action": "min_max", "state": "mean_std", "img": "identity"})
    n = sum(LENGTHS)
    assert norm.stats("action")["min"].tolist() == [0, 0.5]
    assert norm.stats("action")["max"].tolist() == [n - 1, n - 0.5]
    assert norm.stats("state")["mean"].tolist() == pytest.approx([(n - 1) / 2, -(n - 1) / 2])
    assert norm.normalize(ds[0]["action"], "action").abs().max() <= 1


def test_images_convert_to_uint8(tmp_path, caplog):
    ds = SequenceDataset(config(make_store(tmp_path / "u8.zarr", image_dtype=np.uint8)))
    assert ds.arrays["img"].dtype == np.uint8
    with caplog.at_level(logging.WARNING):
        ds = SequenceDataset(config(make_store(tmp_path / "r.zarr", image=lambda t: t + 0.25)))
    assert "rounded" in caplog.text
    assert ds.arrays["img"][:, 0, 0, 0].tolist() == list(range(sum(LENGTHS)))
    bad = make_store(tmp_path / "unit.zarr", image=lambda t: (t % 2) * 0.5)
    with pytest.raises(DataError, match=r"\[img\].*\[0, 1\]"):
        SequenceDataset(config(bad))
    bad = make_store(tmp_path / "big.zarr", image=lambda t: t * 10.0)
    with pytest.raises(DataError, match=r"\[img\].*outside \[0, 255\]"):
        SequenceDataset(config(bad))


def test_missing_key_and_short_store_are_named(tmp_path):
    path = make_store(tmp_path / "s.zarr")
    with pytest.raises(DataError, match=r"\[velocity\].*no such key"):
        SequenceDataset(config(path, obs_keys=["velocity"]))
    with pytest.raises(DataError, match=r"\[act\].*no such key"):
        SequenceDataset(config(path, action_key="act"))
    with pytest.raises(DataError, match="no training episode has the 16 frames"):
        SequenceDataset(config(path, horizon=16, n_obs_steps=1, n_action_steps=1))


def test_derived_keys_slice_another_key_unless_the_store_has_them(tmp_path):
    path = make_store(tmp_path / "s.zarr")
    derived = {"x": "state[:1]", "neg": "state[-1:]", "img": "state[0:1]"}
    ds = SequenceDataset(config(path, obs_keys=["x", "neg", "state"], derived_keys=derived))
    state = ds.arrays["state"]
    np.testing.assert_array_equal(ds.arrays["x"], state[:, :1])
    np.testing.assert_array_equal(ds.arrays["neg"], state[:, 1:])
    assert ds.arrays["img"].dtype == np.uint8  # the store's own image key, not derived
    assert ds[3]["obs"]["x"].shape == (2, 1)
    with pytest.raises(DataError, match=r"\[x\].*state\[5:None\].*empty"):
        SequenceDataset(config(path, obs_keys=["x"], derived_keys={"x": "state[5:]"}))
    with pytest.raises(DataError, match=r"\[x\].*no such key"):
        SequenceDataset(config(path, obs_keys=["x"], derived_keys={"x": "velocity[:1]"}))


def test_pusht_windows(pusht_zarr):
    cfg = SequenceDatasetConfig(pusht_zarr, obs_keys=["state", "keypoint"], n_action_steps=8)
    ds = SequenceDataset(cfg)
    # each episode of L frames gives L - (Tp - To - Ta + 1) = L - 7 windows
    assert len(ds) == 25_650 - 7 * 206 == 24_208
    sample = ds[100]
    assert sample["obs"]["state"].shape == (2, 5)
    assert sample["obs"]["keypoint"].shape == (2, 9, 2)
    assert sample["action"].shape == (16, 2)
    batch = ds[np.arange(64)]
    assert batch["obs"]["state"].shape == (64, 2, 5) and batch["action"].shape == (64, 16, 2)
    # the first window of episode 0 repeats frame 0 for its padded first step
    assert torch.equal(ds[0]["obs"]["state"][0], ds[0]["obs"]["state"][1])
    split = SequenceDataset(SequenceDatasetConfig(pusht_zarr, val_ratio=0.02, seed=42))
    val = split.get_validation_dataset()
    assert len(set(val.windows.episode.tolist())) == 4
    assert len(split) + len(val) == 24_208
