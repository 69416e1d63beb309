"""robomimic HDF5 datasets, read-only.

robomimic keeps a whole dataset in one HDF5 file::

    data/                     attrs: total (frames), env_args (JSON: env_name, type, env_kwargs)
    data/demo_<N>/            attrs: num_samples, model_file (robosuite MJCF XML)
        actions (T, Da)  rewards (T,)  dones (T,)  states (T, S) flattened MuJoCo states
        obs/<key> (T, ...)    low-dim (robot0_eef_pos, object, ...) and <camera>_image uint8
        next_obs/<key>        obs shifted by one step (redundant; not imported)
    mask/<filter>             demo names (bytes), e.g. train, valid, 20_percent

Episodes come in robomimic's order (by the integer N of ``demo_N``) under native names:
``actions`` -> ``action``, ``rewards`` -> ``reward``, ``dones`` -> ``done``, ``states`` ->
``sim_state``, ``obs/<camera>_image`` -> ``image.<camera>``, other ``obs/<key>`` keep their name.
The parsed ``env_args`` and the filter keys (as demo numbers N) go to the dataset attributes;
``env_kwargs.control_freq`` gives the frame rate. The file is opened read-only.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.data.formats.base import IMAGE_PREFIX, DatasetInfo, Episode, register_format
from robopolicy.data.limits import check_count, read_limits
from robopolicy.errors import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".hdf5", ".h5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DEMO_NAME = re.compile(r"demo_(\d+)")
IMAGE_SUFFIX = "_image"
DEMO_INDEX = "demo_index"
"""Per-episode value holding robomimic's N of ``demo_N``."""
RENAMES = {"actions": "action", "rewards": "reward", "dones": "done", "states": "sim_state"}
"""Per-step datasets of a demo and their native names (``actions`` is required)."""


@register_format("robomimic", writable=False)
class RobomimicFormat:
    """robomimic HDF5: a ``data`` group of ``demo_<N>`` groups in an ``.hdf5``/``.h5`` file."""

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() in SUFFIXES):
            return False
        import h5py

        try:
            with h5py.File(path, "r") as f:
                data = f.get("data")
                if not isinstance(data, h5py.Group):
                    return False
                return "env_args" in data.attrs or any(DEMO_NAME.fullmatch(k) for k in data)
        except OSError:
            # an HDF5 file we cannot open (truncated, corrupt): claim it so open() says why
            with path.open("rb") as raw:
                return raw.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE

    @classmethod
    def open(cls, path: Path, **options: Any) -> RobomimicReader:
        return RobomimicReader(Path(path))

    @classmethod
    def write(cls, path: Path, info: DatasetInfo, episodes: Any, **options: Any) -> int:
        raise DataError(path, "robomimic HDF5 can be read but not written")


class RobomimicReader:
    """Reads the demos of one robomimic HDF5 file in robomimic's order."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        self._limits = read_limits()
        self._spent = 0
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(path, f"unreadable HDF5 file, truncated or corrupt ({exc})") from exc
        try:
            data = self._file.get("data")
            if not isinstance(data, h5py.Group):
                raise DataError(path, "missing group 'data'", key="data")
            self._data = data
            numbered = [(int(m.group(1)), k) for k in data if (m := DEMO_NAME.fullmatch(k))]
            ignored = sorted(set(data) - {k for _, k in numbered})
            if ignored:
                log.warning("%s: ignoring non-demo entries in data/: %s", path, ignored)
            self._demos = [name for _, name in sorted(numbered)]
            env_args = self._env_args()
            self.info = DatasetInfo(
                fps=_control_freq(env_args),
                n_episodes=len(self._demos),
                attrs={"env_args": env_args, "filter_keys": self._filter_keys()},
            )
            kwargs = env_args.get("env_kwargs")
            lang = kwargs.get("env_lang") if isinstance(kwargs, dict) else None
            self._task = lang if isinstance(lang, str) and lang else None
        except (OSError, KeyError, RuntimeError) as exc:  # h5py's errors for damaged metadata
            self._file.close()
            raise DataError(path, f"unreadable HDF5 metadata, corrupt file? ({exc})") from exc
        except BaseException:
            self._file.close()
            raise

    def _env_args(self) -> dict[str, Any]:
        raw = self._data.attrs.get("env_args")
        if raw is None:
            msg = "missing attribute 'env_args' (the environment metadata JSON)"
            raise DataError(self.path, msg, key="data")
        try:
            env_args = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                self.path, f"attribute 'env_args' is not JSON ({exc})", key="data"
            ) from exc
        if not isinstance(env_args, dict):
            raise DataError(self.path, "attribute 'env_args' is not a JSON object", key="data")
        return env_args

    def _filter_keys(self) -> dict[str, list[int]]:
        """``mask/<filter>`` demo names as demo numbers N (each episode's ``meta/demo_index``),
        which stay right when a conversion drops bad episodes."""
        mask = self._file.get("mask")
        if mask is None:
            return {}
        index = {name: i for i, name in enumerate(self._demos)}
        filters: dict[str, list[int]] = {}
        for name in sorted(mask):
            key = f"mask/{name}"
            try:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in mask[name][()]]
            except (OSError, TypeError, UnicodeDecodeError, AttributeError) as exc:
                raise DataError(self.path, f"unreadable filter key ({exc})", key=key) from exc
            missing = [n for n in names if n not in index]
            if missing:
                raise DataError(self.path, f"names demos that do not exist: {missing[:5]}", key=key)
            filters[name] = sorted(int(DEMO_NAME.fullmatch(n).group(1)) for n in names)
        return filters

    def read_episode(self, index: int) -> Episode:
        if not 0 <= index < len(self._demos):
            raise DataError(self.path, f"episode {index} out of range ({len(self._demos)} demos)")
        name = self._demos[index]
        try:
            return self._read_demo(name)
        except (OSError, KeyError, RuntimeError) as exc:  # h5py's errors for damaged metadata
            raise DataError(
                self.path, f"unreadable, corrupt file? ({exc})", key=f"data/{name}"
            ) from exc

    def _read_demo(self, name: str) -> Episode:
        import h5py

        demo = self._data[name]
        if not isinstance(demo, h5py.Group):
            raise DataError(self.path, "expected a group", key=f"data/{name}")
        actions = demo.get("actions")
        if not isinstance(actions, h5py.Dataset):
            raise DataError(self.path, "missing dataset 'actions'", key=f"data/{name}/actions")
        length = actions.shape[0] if actions.shape else 0
        what = "frames in one episode"
        check_count(self.path, length, self._limits, "max_episode_frames", what, key=f"data/{name}")
        self._spent = 0  # bytes of this demo read so far, bounded by max_episode_bytes
        num_samples = demo.attrs.get("num_samples")
        if num_samples is not None and int(num_samples) != length:
            raise DataError(
                self.path,
                f"attribute num_samples={int(num_samples)} but actions has {length} steps",
                key=f"data/{name}",
            )
        frames: dict[str, np.ndarray] = {}
        for source, native in RENAMES.items():
            if source not in demo:
                continue
            if source == "states" and getattr(demo[source], "size", 1) == 0:
                continue  # non-robosuite datasets may leave states empty
            frames[native] = self._read(f"data/{name}/{source}", length)
        obs = demo.get("obs")
        if obs is not None and not isinstance(obs, h5py.Group):
            raise DataError(self.path, "expected a group", key=f"data/{name}/obs")
        for key in sorted(obs or ()):
            value = self._read(f"data/{name}/obs/{key}", length)
            native = _native_obs_name(key, value)
            if native in frames:
                raise DataError(
                    self.path, f"clashes with native key {native!r}", key=f"data/{name}/obs/{key}"
                )
            frames[native] = value
        return Episode(
            frames,
            task=self._task,
            meta={DEMO_INDEX: int(DEMO_NAME.fullmatch(name).group(1))},
            source=f"{self.path} data/{name}",
        )

    def _read(self, key: str, length: int) -> np.ndarray:
        """Read one per-step dataset, checking it is numeric, finite and ``length`` steps long."""
        import h5py

        node = self._file.get(key)
        if not isinstance(node, h5py.Dataset):
            raise DataError(self.path, "expected a dataset", key=key)
        if node.dtype.kind not in "biuf":
            raise DataError(self.path, f"dtype {node.dtype} is not numeric", key=key)
        if not node.shape or node.shape[0] != length:
            steps = node.shape[0] if node.shape else "no"
            raise DataError(self.path, f"has {steps} steps but actions has {length}", key=key)
        self._spent += int(node.nbytes)
        what = "bytes in one episode"
        check_count(self.path, self._spent, self._limits, "max_episode_bytes", what, key=key)
        try:
            value = node[()]
        except (OSError, ValueError) as exc:
            raise DataError(self.path, f"unreadable ({exc})", key=key) from exc
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            frame = int(np.argwhere(~np.isfinite(value.reshape(length, -1)))[0][0])
            raise DataError(self.path, f"non-finite value (NaN or inf) at step {frame}", key=key)
        return value

    def close(self) -> None:
        self._file.close()


def _native_obs_name(key: str, value: np.ndarray) -> str:
    """``<camera>_image`` with uint8 (T, H, W, 3) frames -> ``image.<camera>``; else the key."""
    rgb = value.dtype == np.uint8 and value.ndim == 4 and value.shape[-1] == 3
    if key.endswith(IMAGE_SUFFIX) and rgb:
        return IMAGE_PREFIX + key[: -len(IMAGE_SUFFIX)]
    return key


def _control_freq(env_args: dict[str, Any]) -> float | None:
    """robosuite's control frequency (actions per second), when ``env_kwargs`` records it."""
    kwargs = env_args.get("env_kwargs")
    freq = kwargs.get("control_freq") if isinstance(kwargs, dict) else None
    if isinstance(freq, int | float) and not isinstance(freq, bool) and freq > 0:
        return float(freq)
    return None
