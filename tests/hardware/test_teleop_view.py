"""The operator views: JSON lines, the terminal status line, and the camera window (pygame's
dummy video driver stands in for a display)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from hardware.teleop.view import CLEAR_LINE, HeadlessView, Status, TerminalView, WindowView


def status(time: float, recording: bool = True) -> Status:
    return Status(
        time=time,
        recording=recording,
        episode=3,
        kept=1,
        episodes=5,
        elapsed=2.5,
        positions=np.array([0.1, -0.2]),
        gripper=1.0,
        dropped=0,
    )


IMAGES = {
    "image.front": np.full((8, 10, 3), (255, 0, 0), dtype=np.uint8),
    "image.wrist": np.full((12, 8, 3), (0, 0, 255), dtype=np.uint8),
}


def test_headless_prints_every_event_and_the_status_once_a_second() -> None:
    stream = io.StringIO()
    view = HeadlessView(stream, every=1.0)
    for t in (0.0, 0.5, 1.0, 1.5):
        view.show(status(t), IMAGES)
    view.event("episode_kept", episode=3, frames=10)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["status", "status", "episode_kept"]
    assert lines[0]["positions"] == [0.1, -0.2] and lines[0]["episode"] == 3
    assert lines[0]["cameras"] == {"image.front": [8, 10, 3], "image.wrist": [12, 8, 3]}
    assert lines[2] == {"event": "episode_kept", "episode": 3, "frames": 10}


def test_the_terminal_line_is_redrawn_in_place_with_events_above_it() -> None:
    stream = io.StringIO()
    view = TerminalView(stream, every=0.1)
    view.show(status(0.0), IMAGES)
    view.show(status(0.05), IMAGES)  # too soon: not redrawn
    view.event("notice", message="camera: frozen")
    view.show(status(0.06, recording=False), {})
    view.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    first, notice, second = text.split("\r")[1:]
    assert first.startswith("REC   episode 3 (1/5 kept)    2.5 s | operator | joints +0.10 -0.20")
    assert "gripper 1.00 | cameras front,wrist" in first and first.endswith(CLEAR_LINE)
    assert notice == f"{CLEAR_LINE}notice: camera: frozen\n"
    assert second.startswith("ready episode 3") and "cameras none" in second


def test_the_window_shows_the_images_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    pygame = pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    inner = HeadlessView(io.StringIO())
    view = WindowView(inner, scale=2)
    try:
        view.show(status(0.0), IMAGES)
        screen = pygame.display.get_surface()
        assert screen.get_size() == (2 * (10 + 8), 2 * 12)
        pixels = pygame.surfarray.array3d(screen)  # (width, height, 3)
        assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[19, 15]) == (255, 0, 0)
        assert tuple(pixels[20, 0]) == (0, 0, 255) and tuple(pixels[35, 23]) == (0, 0, 255)
        view.event("episode_started", episode=3)
    finally:
        view.close()
    assert not pygame.display.get_init()
    events = [json.loads(line)["event"] for line in inner.stream.getvalue().splitlines()]
    assert events == ["status", "episode_started"]
