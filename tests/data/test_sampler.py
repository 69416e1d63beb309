"""Window indices with edge padding, and the train/validation split by episode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robopolicy.data.sampler import gather, make_windows
from robopolicy.data.split import split_episodes


def reference_windows(lengths, length, pad_before, pad_after, mask=None):
    """Windows built the slow, obvious way: pad each episode by repeating its edge frames, then
    take every run of ``length`` consecutive frames of the padded episode."""
    pad_before, pad_after = min(pad_before, length - 1), min(pad_after, length - 1)
    out, begin = [], 0
    for e, n in enumerate(lengths):
        frames = list(range(begin, begin + n))
        padded = [frames[0]] * pad_before + frames + [frames[-1]] * pad_after
        if mask is None or mask[e]:
            for s in range(len(padded) - length + 1):
                out.append((e, s - pad_before, padded[s : s + length]))
        begin += n
    return out


def test_padding_repeats_edge_frames_hand_written():
    # episode 0 = frames 0..2, episode 1 = frames 3..7; Tp=4, pad_before=1, pad_after=2
    windows = make_windows(np.array([3, 8]), 4, pad_before=1, pad_after=2)
    expected = [
        [0, 0, 1, 2],
        [0, 1, 2, 2],
        [1, 2, 2, 2],
        [3, 3, 4, 5],
        [3, 4, 5, 6],
        [4, 5, 6, 7],
        [5, 6, 7, 7],
        [6, 7, 7, 7],
    ]
    assert windows.frame_indices(np.arange(len(windows))).tolist() == expected
    assert windows.episode.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert windows.frame_indices(np.arange(len(windows)), 2).tolist() == [w[:2] for w in expected]
    assert windows.frame_indices(6).tolist() == [5, 6, 7, 7]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    length=st.integers(1, 8),
    pad_before=st.integers(0, 9),
    pad_after=st.integers(0, 9),
    data=st.data(),
)
def test_windows_match_padded_reference(lengths, length, pad_before, pad_after, data):
    mask = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(lengths), max_size=len(lengths)))
    )
    ends = np.cumsum(lengths)
    windows = make_windows(
        ends, length, pad_before=pad_before, pad_after=pad_after, episode_mask=mask
    )
    ref = reference_windows(lengths, length, pad_before, pad_after, mask)
    assert len(windows) == len(ref)
    got = windows.frame_indices(np.arange(len(windows)))
    # every (episode, start) appears exactly once, with the reference's frames
    pairs = list(
        zip(windows.episode.tolist(), (windows.start - windows.first).tolist(), strict=True)
    )
    assert len(set(pairs)) == len(pairs)
    assert pairs == [(e, s) for e, s, _ in ref]
    assert got.tolist() == [frames for _, _, frames in ref]
    # never crosses an episode: every frame belongs to the window's episode
    if len(windows):
        episode_of_frame = np.searchsorted(ends, got, side="right")
        assert (episode_of_frame == windows.episode[:, None]).all()
        assert mask[windows.episode].all()


def test_short_episodes_give_no_windows_and_pads_are_clipped():
    windows = make_windows(np.array([2, 10]), 5)
    assert set(windows.episode.tolist()) == {1} and len(windows) == 4
    # pads beyond length - 1 are clipped: each window keeps at least one real frame
    windows = make_windows(np.array([1]), 3, pad_before=10, pad_after=10)
    assert windows.frame_indices(np.arange(len(windows))).tolist() == [[0, 0, 0]] * 3


def test_gather_is_one_fancy_index():
    data = np.arange(20, dtype=np.float32).reshape(10, 2)
    windows = make_windows(np.array([4, 10]), 3, pad_before=1)
    idx = windows.frame_indices(np.array([0, 5]))
    out = gather(data, idx)
    assert out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out[0], data[[0, 0, 1]])
    np.testing.assert_array_equal(out[1], data[[5, 6, 7]])


def test_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        make_windows(np.array([4]), 0)
    with pytest.raises(ValueError, match="episode_mask"):
        make_windows(np.array([4, 8]), 2, episode_mask=np.array([True]))
    with pytest.raises(ValueError, match="n_steps"):
        make_windows(np.array([4]), 2).frame_indices(0, 3)


# ---------------------------------------------------------------------- split


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 300), ratio=st.floats(0, 0.99), seed=st.integers(0, 2**31))
def test_split_is_disjoint_seeded_and_keeps_a_train_episode(n, ratio, seed):
    split = split_episodes(n, ratio, seed)
    assert not (split.train & split.val).any()
    assert (split.train | split.val).all()
    assert split.train.sum() >= 1
    if ratio > 0 and n > 1:
        assert split.val.sum() == min(max(1, round(n * ratio)), n - 1)
    again = split_episodes(n, ratio, seed)
    assert (again.val == split.val).all() and (again.train == split.train).all()


def test_split_depends_on_seed_and_downsamples_train():
    a, b = split_episodes(206, 0.02, seed=42), split_episodes(206, 0.02, seed=43)
    assert a.val.sum() == 4 and not (a.val == b.val).all()
    small = split_episodes(206, 0.02, seed=42, max_train_episodes=90)
    assert small.train.sum() == 90
    assert (small.val == a.val).all() and not (small.train & small.val).any()
    assert set(small.train_episodes) <= set(a.train_episodes)
    assert split_episodes(1, 0.5).val.sum() == 0
    assert split_episodes(10, 0.0).val_episodes.size == 0


@pytest.mark.parametrize(
    "kwargs", [dict(n_episodes=0), dict(val_ratio=1.0), dict(max_train_episodes=0)]
)
def test_split_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        split_episodes(**{"n_episodes": 5, **kwargs})
