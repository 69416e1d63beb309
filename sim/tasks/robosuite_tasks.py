"""robosuite Lift, PickPlaceCan and NutAssemblySquare with robomimic's settings (the ``robosuite``
extra).

This module imports nothing heavy: robosuite is imported when a task is made, so ``robopolicy
tasks`` lists these tasks without robosuite installed. Make a task in image mode with
``make_task("robosuite-lift", cameras=ROBOMIMIC_CAMERAS)``; see :mod:`sim.robosuite_env` for the
observation, action and seeding contract.
"""

from __future__ import annotations

from typing import Any

from sim.registry import register_task

ROBOMIMIC_HORIZON = 400
"""robomimic's rollout horizon for Lift, Can and Square proficient-human data (500 for its
multi-human data)."""


@register_task(
    "robosuite-lift",
    description="robosuite Lift: pick up the cube (Panda, OSC_POSE delta, 20 Hz, robomimic keys)",
    family="robosuite",
    max_episode_steps=ROBOMIMIC_HORIZON,
    extra="robosuite",
    env_name="Lift",
)
@register_task(
    "robosuite-can",
    description="robosuite PickPlaceCan: move the can to its bin (Panda, OSC_POSE, robomimic keys)",
    family="robosuite",
    max_episode_steps=ROBOMIMIC_HORIZON,
    extra="robosuite",
    env_name="PickPlaceCan",
)
@register_task(
    "robosuite-square",
    description="robosuite NutAssemblySquare: square nut onto its peg (Panda, OSC_POSE, robomimic)",
    family="robosuite",
    max_episode_steps=ROBOMIMIC_HORIZON,
    extra="robosuite",
    env_name="NutAssemblySquare",
)
def make_robosuite_task(**kwargs: Any) -> Any:
    """A :class:`sim.robosuite_env.RobosuiteEnv` from :class:`RobosuiteConfig` keyword arguments.

    Raises ModuleNotFoundError (which ``make_task`` words as the extra to install) without
    robosuite.
    """
    from sim.robosuite_env import RobosuiteConfig, RobosuiteEnv

    return RobosuiteEnv(RobosuiteConfig.from_kwargs(**kwargs))
