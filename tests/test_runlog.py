"""Run logs: JSONL survives a kill, resumes without repeated steps, plots a PNG."""

from __future__ import annotations

import math

from robopolicy.runlog import RunLog, read_scalars


def test_scalars_history_truncate_and_plot(tmp_path):
    with RunLog(tmp_path) as log:
        for step in range(5):
            log.scalars(step, {"train/loss": 1.0 / (step + 1), "eval/success": step / 4})
        log.scalars(5, {"train/loss": math.nan})
    (tmp_path / "scalars.jsonl").open("a").write('{"step": 6, "train/lo')  # torn by a kill
    log = RunLog(tmp_path, tensorboard=False)
    assert [p[0] for p in log.history()["train/loss"]] == [0, 1, 2, 3, 4]
    log.truncate(2)
    log.scalars(3, {"train/loss": 0.01})
    assert [r["step"] for r in read_scalars(tmp_path / "scalars.jsonl")] == [0, 1, 2, 3]
    assert log.history()["train/loss"][-1] == (3, 0.01)
    png = log.plot(title="run")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log.close()
    assert any((tmp_path / "tensorboard").iterdir())
