"""Episode store, dataset formats, conversion, and the training-side views of episodes."""

from robopolicy.data.store import ArraySpec, EpisodeStore

__all__ = ["ArraySpec", "EpisodeStore"]
