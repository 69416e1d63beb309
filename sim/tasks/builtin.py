"""The built-in tasks on arm6 (``family="builtin"``). The env classes load on first use."""

from __future__ import annotations

from typing import Any

from sim.registry import register_task


@register_task(
    "arm-push",
    description="6-joint arm pushes a cube onto a target, around it by the left or the right "
    "(multimodal demos); action ee (x, y) m, 10 Hz",
    family="builtin",
    max_episode_steps=80,
)
def arm_push(**options: Any) -> Any:
    from sim.builtin.push import ArmPushEnv

    return ArmPushEnv(**options)


@register_task(
    "arm-pick-place",
    description="6-joint arm picks a cube and places it on a plate; action ee (x, y, z) m "
    "and gripper 0..1, 10 Hz",
    family="builtin",
    max_episode_steps=100,
)
def arm_pick_place(**options: Any) -> Any:
    from sim.builtin.pick_place import ArmPickPlaceEnv

    return ArmPickPlaceEnv(**options)
