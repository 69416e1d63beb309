"""``robopolicy data view``: one episode as a PNG of its curves and an mp4 of cameras and curves.

The PNG has one subplot per numeric non-image key (``state``, ``action``, then the rest), one
line per dimension, labelled with the feature's names when the dataset records them. Each mp4
frame shows the cameras side by side above the state and action curves, with a cursor at the
current time. The curve panel is drawn once with matplotlib (Agg) and the cursor per frame with
numpy, so a few hundred frames take seconds. Time is in seconds when the dataset has a
``timestamp`` key or an fps, and in frames otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robopolicy.data.formats.base import IMAGE_PREFIX, DatasetInfo, detect_format
from robopolicy.data.video import VideoSettings, encode_video
from robopolicy.errors import DataError

log = logging.getLogger(__name__)

TIME_KEY = "timestamp"
FIRST_KEYS = ("state", "action")
"""Keys plotted first, and the ones the video shows under the cameras."""
LAST_IN_VIDEO = frozenset({"reward", "done", "sim_state"})
BOOKKEEPING = frozenset({TIME_KEY, "frame_index", "episode_index", "index", "task_index"})
"""Per-frame counters not worth a plot."""
DEFAULT_FPS = 10.0
DPI = 100
MAX_LINES = 64
MAX_LEGEND = 12
CAMERA_HEIGHT = (240, 360)
"""Cameras are scaled (nearest neighbour) to a common height within this range, in pixels."""
MAX_VIDEO_WIDTH = 1440
"""Many cameras are scaled down further to keep the row of cameras within this width."""
PNG_SIZE = (1000, 200)
"""PNG width and height per subplot, in pixels."""
VIDEO_ROW = 170
"""Height of one subplot in the video's curve panel, in pixels."""
MIN_VIDEO_WIDTH = 640
CURSOR = np.array([220, 30, 30], dtype=np.uint8)


VIDEO = VideoSettings(codec="libx264", crf=23, gop=30, preset="veryfast")
"""H.264 for people to watch; ``veryfast`` is several times quicker than x264's default."""


def write_episode_view(
    path: str | Path, episode: int, out: str | Path | None = None
) -> dict[str, Path]:
    """Write ``episode_<N>.mp4`` and ``episode_<N>_curves.png`` for episode ``episode``.

    Args:
        path: a dataset in any supported format.
        episode: the episode's index; out of range is a DataError saying how many there are.
        out: output directory (default ``./episode_<N>_view``).

    Returns:
        ``{"video": mp4 path, "curves": png path}``.
    """
    path = Path(path)
    reader = detect_format(path).open(path)
    try:
        count = reader.info.n_episodes
        if not 0 <= episode < count:
            span = f" (0 to {count - 1})" if count else ""
            raise DataError(path, f"no episode {episode}: the dataset has {count} episodes{span}")
        frames = reader.read_episode(episode).frames
        info = reader.info
    finally:
        reader.close()
    out = Path(out) if out is not None else Path(f"episode_{episode}_view")
    out.mkdir(parents=True, exist_ok=True)

    cameras, curves = _split_keys(frames)
    length = len(next(iter(frames.values())))
    t, xlabel = _time_axis(frames, info.fps, length)
    title = f"{path.name}  episode {episode}"

    png = out / f"episode_{episode}_curves.png"
    width, row = PNG_SIZE
    fig = _curve_figure(t, xlabel, curves, info, width, row * max(1, len(curves)), title)
    fig.savefig(png)

    shown = [k for k in FIRST_KEYS if k in curves]
    others = sorted(set(curves) - set(shown), key=_video_rank)
    shown += others[: max(0, 2 - len(shown))]
    mp4 = out / f"episode_{episode}.mp4"
    fps = _video_fps(frames, info.fps, length)
    video_frames = _video_frames(cameras, {k: curves[k] for k in shown}, t, xlabel, info, title)
    encode_video(mp4, video_frames, fps, VIDEO)
    return {"video": mp4, "curves": png}


def _video_rank(key: str) -> tuple[int, str]:
    """Without ``state``, the video shows a position (``robot0_eef_pos``) before rewards."""
    return (0 if "pos" in key else 2 if key in LAST_IN_VIDEO else 1, key)


def _split_keys(
    frames: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cameras as uint8 (T, H, W, 3), and curves as float (T, D) in plotting order."""
    cameras: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    for key, value in frames.items():
        if value.ndim == 4 and value.shape[-1] in (1, 3, 4) and min(value.shape[1:3]) >= 8:
            cameras[key] = _to_rgb(value)
        elif key.startswith(IMAGE_PREFIX) or key in BOOKKEEPING or value.ndim > 3:
            log.debug("not plotting %s %s", key, value.shape)
        else:
            curves[key] = value.reshape(len(value), -1).astype(np.float64)
    order = [k for k in FIRST_KEYS if k in curves] + sorted(set(curves) - set(FIRST_KEYS))
    return dict(sorted(cameras.items())), {k: curves[k] for k in order}


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 RGB from uint8 or float (0-1 or 0-255) images with 1, 3 or 4 channels."""
    if images.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(images, initial=0)) <= 1.0 else 1.0
        images = np.clip(np.nan_to_num(images * scale), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images[..., :3]


def _time_axis(
    frames: Mapping[str, np.ndarray], fps: float | None, length: int
) -> tuple[np.ndarray, str]:
    if TIME_KEY in frames:
        stamps = np.asarray(frames[TIME_KEY], dtype=np.float64).reshape(length, -1)[:, 0]
        return stamps - stamps[0], "time (s)"
    if fps:
        return np.arange(length) / fps, "time (s)"
    return np.arange(length, dtype=np.float64), "frame"


def _video_fps(frames: Mapping[str, np.ndarray], fps: float | None, length: int) -> float:
    if fps:
        return float(fps)
    if TIME_KEY in frames and length > 1:
        step = float(np.median(np.diff(np.asarray(frames[TIME_KEY]).reshape(length, -1)[:, 0])))
        if step > 0:
            return 1.0 / step
    return DEFAULT_FPS


def _labels(key: str, dims: int, info: DatasetInfo) -> list[str]:
    """Per-dimension names from ``info.features[key]["names"]``, else ``key[i]``."""
    names: Any = info.features.get(key, {}).get("names")
    if isinstance(names, dict):  # LeRobot may nest names, e.g. {"motors": [...]}
        names = next((v for v in names.values() if isinstance(v, list)), None)
    if isinstance(names, list) and len(names) == dims:
        return [str(n) for n in names]
    return [f"{key}[{i}]" for i in range(dims)]


def _curve_figure(
    t: np.ndarray,
    xlabel: str,
    curves: Mapping[str, np.ndarray],
    info: DatasetInfo,
    width: int,
    height: int,
    title: str,
) -> Any:
    """A matplotlib Figure (Agg canvas, no pyplot) of ``width`` x ``height`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if not curves:
        fig.text(0.5, 0.5, "no numeric keys to plot", ha="center", va="center")
        return fig
    axes = fig.subplots(len(curves), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, values) in zip(axes, curves.items(), strict=True):
        dims = values.shape[1]
        for i, label in enumerate(_labels(key, dims, info)[:MAX_LINES]):
            ax.plot(t, values[:, i], lw=1, label=label)
        more = f" (first {MAX_LINES} of {dims})" if dims > MAX_LINES else ""
        units = info.features.get(key, {}).get("units")
        ax.set_title(f"{key}{more}" + (f" [{units}]" if units else ""), fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.margins(x=0)
        if dims <= MAX_LEGEND:
            ax.legend(fontsize=6, loc="upper right", ncol=min(dims, 6), framealpha=0.6)
    axes[-1].set_xlabel(xlabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _render_panel(
    t: np.ndarray,
    xlabel: str,
    curves: Mapping[str, np.ndarray],
    info: DatasetInfo,
    width: int,
    title: str,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """The curve panel as (H, W, 3) uint8, each frame's cursor column, and each plot's rows."""
    height = _even(VIDEO_ROW * max(1, len(curves)))
    fig = _curve_figure(t, xlabel, curves, info, width, height, title)
    fig.canvas.draw()
    drawn = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    panel = np.full((height, width, 3), 255, np.uint8)  # guard against off-by-one canvas sizes
    h, w = min(height, drawn.shape[0]), min(width, drawn.shape[1])
    panel[:h, :w] = drawn[:h, :w]
    axes = fig.get_axes()
    if not axes:
        return panel, np.full(len(t), -1), []
    rows = []
    for ax in axes:
        box = ax.get_window_extent()
        rows.append((int(height - box.y1), int(np.ceil(height - box.y0))))
    box = axes[0].get_window_extent()
    x = axes[0].transData.transform(np.column_stack([t, np.zeros_like(t)]))[:, 0]
    columns = np.clip(np.round(x), box.x0, box.x1 - 2).astype(int)
    return panel, columns, rows


def _video_frames(
    cameras: Mapping[str, np.ndarray],
    curves: Mapping[str, np.ndarray],
    t: np.ndarray,
    xlabel: str,
    info: DatasetInfo,
    title: str,
) -> Iterator[np.ndarray]:
    """Yield each composite frame: cameras side by side above the curves with a cursor."""
    height = 0
    scaled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if cameras:
        tallest = max(v.shape[1] for v in cameras.values())
        height = int(np.clip(tallest, *CAMERA_HEIGHT))
        natural = sum(v.shape[2] * height / v.shape[1] for v in cameras.values())
        if natural > MAX_VIDEO_WIDTH:
            height = max(16, int(height * MAX_VIDEO_WIDTH / natural))
        for images in cameras.values():
            h, w = images.shape[1:3]
            rows = np.arange(height) * h // height
            cols = np.arange(max(1, round(w * height / h))) * h // height
            scaled.append((images, rows, np.minimum(cols, w - 1)))
    row_width = sum(len(cols) for _, _, cols in scaled)
    width = _even(max(row_width, MIN_VIDEO_WIDTH))
    panel, cursor, plot_rows = (None, None, [])
    if curves or not cameras:
        panel, cursor, plot_rows = _render_panel(t, xlabel, curves, info, width, title)
    top = _even(height)
    base = np.zeros((top + (0 if panel is None else panel.shape[0]), width, 3), np.uint8)
    if panel is not None:
        base[top:] = panel
    left = (width - row_width) // 2
    for index in tqdm(range(len(t)), desc="rendering", unit="frame"):
        frame = base.copy()
        x = left
        for images, rows, cols in scaled:
            frame[:height, x : x + len(cols)] = images[index][rows][:, cols]
            x += len(cols)
        if cursor is not None and cursor[index] >= 0:
            for y0, y1 in plot_rows:
                frame[top + y0 : top + y1, cursor[index] : cursor[index] + 2] = CURSOR
        yield frame


def _even(n: int) -> int:
    """Round up to even: yuv420p needs even width and height."""
    return n + n % 2
