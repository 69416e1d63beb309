"""A conversion is all or nothing: a failure leaves no destination and an old one untouched."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from robopolicy.data.convert import convert
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from tests.data.test_store import make_episode
from tests.data.test_zarr_format import tree_hash


@pytest.fixture
def source(tmp_path):
    store = EpisodeStore.create(tmp_path / "src.zarr", fps=10)
    for i in range(3):
        store.append_episode(make_episode(6 + i, i))
    return store.path


def poison_last_episode(path):
    state = zarr.open_array(path / "data" / "state", mode="r+")
    state[-1] = np.full(7, np.nan, dtype=np.float32)


@pytest.mark.parametrize("to", ["zarr", "lerobot"])
def test_failed_conversion_leaves_nothing_and_keeps_the_old_destination(source, tmp_path, to):
    out = tmp_path / "out"
    convert(source, out, to=to, quiet=True)
    before = tree_hash(out)
    poison_last_episode(source)
    with pytest.raises(DataError, match="non-finite"):
        convert(source, tmp_path / "fresh", to=to, quiet=True)
    with pytest.raises(DataError, match="non-finite"):
        convert(source, out, to=to, overwrite=True, quiet=True)
    assert tree_hash(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src.zarr"]
    with pytest.raises(DataError, match="already exists"):
        convert(source, out, to=to, quiet=True)
    report = convert(source, out, to=to, overwrite=True, drop_bad_episodes=True, quiet=True)
    assert report.written == 2 and [i for i, _ in report.dropped] == [2]
    assert tree_hash(out) != before


@pytest.mark.parametrize("to", ["zarr", "lerobot"])
def test_progress_names_the_destination_unless_quiet(source, tmp_path, to, capsys):
    convert(source, tmp_path / "quiet", to=to, quiet=True)
    assert "writing" not in capsys.readouterr().err
    convert(source, tmp_path / "named", to=to)
    shown = capsys.readouterr().err
    assert "writing named: 100%" in shown and ".partial" not in shown
