"""The scripted expert of ``arm-push``: go around the cube on a random side, then push it home.

Each step it reads the cube's pose, the ee and the target from the env, and:

1. while the ee is not behind the cube (seen from the target), circles the cube at a safe
   radius towards the point behind it, by the side it drew at reset (left or right with equal
   odds; it switches only when it finds itself well round the other side);
2. once behind, pushes through the cube's centre towards the target, correcting sideways drift,
   slowing down as the cube nears the target; if the cube slips off the line it backs off to (1).

Quality: Gaussian noise on each command and occasional sloppy moves (:class:`ExpertConfig`);
a careless finish (probability ``careless_prob``) stops pushing once the cube is within
``CARELESS_RADIUS`` of the target, short of success, backs off a little, waits and is done.
"""

from __future__ import annotations

import numpy as np

from sim.builtin.push import CUBE_HALF, ArmPushEnv
from sim.experts import ExpertConfig, Sloppiness, careless_draw, expert_rng, register_expert

PUSHER_RADIUS = 0.014
"""Half-width of the closed fingers (m)."""
CLEARANCE = 0.075
"""Radius (m) of the circle the ee travels on around the cube's centre."""
STEP = 0.035
"""Nominal ee travel per step while circling (m)."""
PUSH_STEP = 0.022
"""Nominal ee travel per step while pushing (m)."""
CARELESS_RADIUS = 0.05
"""A careless expert stops pushing this close to the target (m)."""
WAIT_STEPS = 20
"""Steps a careless expert waits before it is done. Long enough that the waiting is in the data:
a policy cloned from it then stops short about as often as the demonstrations do (with very
short waits, cloned policies mostly resume pushing and beat their data)."""


class PushExpert:
    """Closed-loop pushing controller (see the module docstring)."""

    def __init__(self, env: ArmPushEnv, config: ExpertConfig) -> None:
        self.env = env
        self.config = config
        self.sloppy = Sloppiness(config, dims=2)
        self.side = 1.0
        self.pushing = False
        self.careless = False
        self.stopped: np.ndarray | None = None
        self.waited = 0

    @property
    def done(self) -> bool:
        """A careless expert calls it a day after waiting ``WAIT_STEPS`` steps."""
        return self.waited >= WAIT_STEPS

    def reset(self, seed: int | None = None) -> None:
        rng = expert_rng(seed)
        self.side = 1.0 if rng.random() < 0.5 else -1.0
        self.pushing = False
        self.careless = careless_draw(seed, rng) < self.config.careless_prob
        self.stopped = None
        self.waited = 0
        self.sloppy.reset(rng)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        cube, yaw = env.cube_pose()
        ee = env.arm.ee_position(env.data)[:2]
        to_goal = env.target - cube
        distance = float(np.hypot(*to_goal))
        u = to_goal / max(distance, 1e-6)
        if self.careless and (self.stopped is not None or distance < CARELESS_RADIUS):
            if self.stopped is None:  # close enough, it thinks: back off and wait
                self.stopped = ee - 0.03 * u
            self.waited += 1
            return self.sloppy.perturb(self.stopped).astype(np.float32)
        n = np.array([-u[1], u[0]])
        rel = ee - cube
        along, across = float(rel @ u), float(rel @ n)
        # Distance from the cube's centre to its face, seen along the push direction.
        angle = yaw - np.arctan2(u[1], u[0])
        face = CUBE_HALF * (abs(np.cos(angle)) + abs(np.sin(angle)))
        contact = face + PUSHER_RADIUS
        behind = along < -0.7 * contact and abs(across) < 0.3 * contact + 0.004
        if self.pushing and (along > -0.5 * contact or abs(across) > 0.6 * contact):
            self.pushing = False
        elif not self.pushing and behind:
            self.pushing = True
        speed = self.config.speed
        if self.pushing:
            advance = min(PUSH_STEP * speed, 0.5 * distance + 0.002)
            target = cube - u * contact + u * (advance + 0.004) - n * 0.5 * across
        else:
            target = self._circle(rel, u, n, contact, speed)
        return self.sloppy.perturb(target).astype(np.float32)

    def _circle(
        self, rel: np.ndarray, u: np.ndarray, n: np.ndarray, contact: float, speed: float
    ) -> np.ndarray:
        """Next point on the way round the cube to the spot behind it."""
        cube = self.env.cube_pose()[0]
        # theta: angle round the cube from "behind" (0), positive towards the chosen side.
        phi = float(np.arctan2(rel @ n, -(rel @ u)))
        theta = (self.side * phi) % (2 * np.pi)
        if theta > 1.35 * np.pi:  # well round the other side: go that way instead
            self.side = -self.side
            theta = 2 * np.pi - theta
        radius = float(np.hypot(*rel))
        if theta < 0.35:  # nearly behind: line up on the push line, then close in
            behind = cube - u * (contact + 0.012)
            gap = behind - (cube + rel)
            step = STEP * speed
            dist = float(np.hypot(*gap))
            return cube + rel + (gap if dist < step else gap * step / dist)
        if radius < 0.85 * CLEARANCE:  # too close: step straight out first
            out = rel / max(radius, 1e-6)
            return cube + out * CLEARANCE
        theta_next = max(theta - STEP * speed / CLEARANCE, 0.0)
        phi_next = self.side * theta_next
        return cube + CLEARANCE * (np.cos(phi_next) * -u + np.sin(phi_next) * n)


PRESETS = {
    "clean": ExpertConfig(),
    "imperfect": ExpertConfig(noise=0.01, sloppy_prob=0.08, careless_prob=0.5),
}


@register_expert("arm-push", "scripted", presets=PRESETS)
def scripted_push(env: ArmPushEnv, config: ExpertConfig) -> PushExpert:
    return PushExpert(env, config)
