"""Fixed-length windows over episodes, padded at episode edges by repeating the edge frame.

Symbols (as in ``docs/DESIGN.md``): To observation steps, Tp predicted steps (the window
length, ``horizon``), Ta executed steps. A window is Tp consecutive frames of one episode::

    step:    0 ........ To-1 ........................ Tp-1
    obs:     [ To frames  ]                                  obs keys use steps [0, To)
    action:  [ Tp frames (the policy predicts all of them) ] action uses steps [0, Tp)
    "now":             ^ step To-1, the latest observation
    executed:          [ Ta frames ]                         steps [To-1, To-1+Ta)

Windows start from ``-pad_before`` to ``L - Tp + pad_after`` within an episode of L frames, one
per start. Steps that fall before the episode's first frame repeat that frame, steps past its last
frame repeat the last one (Diffusion Policy's padding). The training dataset uses
``pad_before = To - 1`` and ``pad_after = Ta - 1``: with ``Ta <= Tp - To + 1`` the "now" frame of
every window is a real frame of its episode, frames ``0 .. L - 1 - (Tp - To + 1 - Ta)`` are "now"
once each (so ``L - Tp + To + Ta - 1`` windows), and with ``Ta == Tp - To + 1`` every frame is.
A window never crosses into another episode.

Indexing is vectorised: a batch of B windows becomes one ``(B, n)`` integer array of store-wide
frame indices, and gathering a key is a single fancy index ``array[idx]`` -> ``(B, n, *shape)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class WindowIndex:
    """Every window of a set of episodes; row ``i`` describes window ``i``."""

    start: np.ndarray
    """(N,) int64 store-wide frame index of step 0 (before ``first`` for padded windows)."""
    first: np.ndarray
    """(N,) int64 first frame of the window's episode."""
    last: np.ndarray
    """(N,) int64 last frame (inclusive) of the window's episode."""
    episode: np.ndarray
    """(N,) int64 index of the window's episode."""
    length: int
    """Steps per window (Tp)."""

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def frame_indices(self, rows: np.ndarray | int, n_steps: int | None = None) -> np.ndarray:
        """Store-wide frame indices of steps ``[0, n_steps)`` of windows ``rows``.

        Args:
            rows: a window number, or an array of B window numbers.
            n_steps: leading steps to return (default: the whole window).

        Returns:
            ``(n_steps,)`` for one window or ``(B, n_steps)`` int64, edge frames repeated.
        """
        n = self.length if n_steps is None else n_steps
        if not 0 < n <= self.length:
            raise ValueError(f"n_steps must be in [1, {self.length}], got {n}")
        rows = np.asarray(rows)
        steps = self.start[rows][..., None] + np.arange(n)
        return np.clip(steps, self.first[rows][..., None], self.last[rows][..., None])


def episode_bounds(episode_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last frame of each episode from cumulative ``episode_ends``."""
    ends = np.asarray(episode_ends, dtype=np.int64)
    return np.concatenate([[0], ends[:-1]]).astype(np.int64), ends


def make_windows(
    episode_ends: np.ndarray,
    length: int,
    *,
    pad_before: int = 0,
    pad_after: int = 0,
    episode_mask: np.ndarray | None = None,
) -> WindowIndex:
    """All windows of ``length`` steps over the episodes selected by ``episode_mask``.

    Args:
        episode_ends: (E,) cumulative end frame of each episode, as in ``meta/episode_ends``.
        length: steps per window (Tp), at least 1.
        pad_before: padded steps allowed before an episode's first frame (clipped to
            ``[0, length - 1]`` so a window always holds at least one real frame).
        pad_after: padded steps allowed after an episode's last frame (clipped the same way).
        episode_mask: (E,) bool, the episodes to take windows from (default: all).

    Returns:
        The windows in episode order, then start order. An episode shorter than
        ``length - pad_before - pad_after`` contributes none.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    begin, end = episode_bounds(episode_ends)
    if episode_mask is None:
        episode_mask = np.ones(begin.shape, dtype=bool)
    episode_mask = np.asarray(episode_mask, dtype=bool)
    if episode_mask.shape != begin.shape:
        raise ValueError(f"episode_mask has shape {episode_mask.shape}, expected {begin.shape}")
    pad_before = min(max(pad_before, 0), length - 1)
    pad_after = min(max(pad_after, 0), length - 1)
    counts = np.maximum(end - begin - length + pad_before + pad_after + 1, 0) * episode_mask
    episode = np.repeat(np.arange(begin.size, dtype=np.int64), counts)
    # position of each window within its episode's run of windows: 0, 1, ..., counts[e] - 1
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    offset = np.arange(episode.size, dtype=np.int64) - run_start - pad_before
    return WindowIndex(
        start=begin[episode] + offset,
        first=begin[episode],
        last=end[episode] - 1,
        episode=episode,
        length=int(length),
    )


def gather(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[indices]`` along time: ``(T, *shape)`` and ``(..., n)`` -> ``(..., n, *shape)``."""
    # plain fancy indexing: ~4x faster than np.take for image frames, within µs for small ones
    return array[indices]
