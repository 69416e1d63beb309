"""The native episode store, which is also diffusion_policy's zarr replay buffer, as a format.

Reading keeps every array's dtype, chunking and compressor, so a diffusion_policy replay buffer
imports bit-identical. Tasks live in the ``tasks`` attribute with ``meta/task_index`` per episode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robopolicy.data.array_spec import ArraySpec
from robopolicy.data.formats.base import DatasetInfo, Episode, register_format
from robopolicy.data.paths import check_name
from robopolicy.data.store import EpisodeStore

TASK_INDEX = "task_index"


@register_format("zarr", writable=True)
class ZarrStoreFormat:
    """Native store / diffusion_policy replay buffer (``data/<key>``, ``meta/episode_ends``)."""

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / ".zgroup").is_file() and (path / "meta").is_dir()

    @classmethod
    def open(cls, path: Path, **options: Any) -> ZarrStoreReader:
        return ZarrStoreReader(EpisodeStore.open(path, mode="r"))

    @classmethod
    def write(
        cls, path: Path, info: DatasetInfo, episodes: Iterator[Episode], **options: Any
    ) -> int:
        source: ZarrStoreReader | None = options.get("source_reader")
        specs = source.specs() if isinstance(source, ZarrStoreReader) else None
        attrs = {k: v for k, v in info.attrs.items() if k not in ("fps", "features")}
        store = EpisodeStore.create(path, fps=info.fps, attrs=attrs)
        for key, feature in info.features.items():
            store.set_feature(key, **feature)
        tasks: list[str] = list(attrs.get("tasks", []))
        count = 0
        for episode in episodes:
            if not count:  # each key becomes a directory data/<key>: name the source's key
                for key in episode.frames:
                    check_name(key, where=episode.source or path, field=key)
            meta = dict(episode.meta)
            if episode.task is not None:
                if episode.task not in tasks:
                    tasks.append(episode.task)
                    store.set_attrs(tasks=tasks)
                meta[TASK_INDEX] = tasks.index(episode.task)
            store.append_episode(episode.frames, episode_meta=meta, specs=specs)
            count += 1
        return count


class ZarrStoreReader:
    """Reads a native store or a diffusion_policy replay buffer."""

    def __init__(self, store: EpisodeStore) -> None:
        self.store = store
        attrs = store.attrs
        features = attrs.pop("features", {}) or {}
        fps = attrs.pop("fps", None)
        attrs.pop("robopolicy_store_version", None)
        self.info = DatasetInfo(
            fps=None if fps is None else float(fps),
            n_episodes=store.n_episodes,
            features={k: dict(v) for k, v in features.items()},
            attrs=attrs,
        )
        self._tasks: list[str] = list(attrs.get("tasks", []))
        self._meta = {name: store.episode_meta(name) for name in store.episode_meta_keys}

    def specs(self) -> dict[str, ArraySpec]:
        """Each key's dtype, chunking and compressor, so a copy keeps the source's layout."""
        return {key: self.store.spec(key) for key in self.store.keys}

    def read_episode(self, index: int) -> Episode:
        frames = self.store.episode(index)
        meta = {name: values[index].item() for name, values in self._meta.items()}
        task = None
        if TASK_INDEX in meta and self._tasks:
            task = self._tasks[int(meta.pop(TASK_INDEX))]
        return Episode(frames, task=task, meta=meta, source=f"{self.store.path} episode {index}")

    def close(self) -> None:
        pass
