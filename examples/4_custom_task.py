"""Register a task of your own, then collect, train and evaluate on it through the same API.

``point-reach`` is a small MuJoCo task: a puck on a table, driven by two position actuators,
must reach a goal. It follows the task contract of ``sim.registry`` (a gymnasium env whose
observation is ``{"state": (Ds,) float32, "timestamp": ()}``, whose ``step`` reports
``info["is_success"]`` and ``info["score"]``, and whose unwrapped env carries a ``TaskMeta``)
and is registered with ``@sim.register_task``; a scripted expert for it is registered with
``@sim.register_expert``. From then on ``point-reach`` is a task like the built-in ones:
``sim.collect_demos`` records demonstrations, a ``TrainConfig`` written from scratch (there is no
preset for it) trains a flow policy, and ``sim.evaluate_policy`` rolls it out.

Both registrations sit at module level: the evaluation's environment workers import this file
to find the task, and the ``if __name__ == "__main__"`` guard keeps them from running ``main``.

    python examples/4_custom_task.py                   # 100 demos, 3000 steps, 50 episodes
    python examples/4_custom_task.py --demos 10 --steps 50 --width 32 --episodes 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import robopolicy
import sim

XML = """
<mujoco model="point-reach">
  <option timestep="0.01"/>
  <worldbody>
    <geom type="plane" size="0.4 0.4 0.01"/>
    <body name="puck" pos="0 0 0.02">
      <joint name="x" type="slide" axis="1 0 0" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" damping="2"/>
      <geom type="cylinder" size="0.02 0.02" mass="0.1"/>
    </body>
  </worldbody>
  <actuator>
    <position joint="x" kp="20" ctrlrange="-0.3 0.3"/>
    <position joint="y" kp="20" ctrlrange="-0.3 0.3"/>
  </actuator>
</mujoco>
"""
FPS, SUBSTEPS, REACHED = 10.0, 10, 0.02
"""Control rate (Hz), physics steps per control step, success distance (m)."""


@sim.register_task(
    "point-reach",
    description="a puck reaches a goal on a table; action (x, y) position targets in m, 10 Hz",
    family="custom",
    max_episode_steps=40,
)
class PointReachEnv(gym.Env):
    """State ``[x, y, goal_x, goal_y]`` (m); the episode ends when the puck is at the goal."""

    def __init__(self, cameras: tuple[str, ...] = ()) -> None:  # collection names its cameras
        if cameras:
            raise ValueError(f"point-reach has no cameras, asked for {cameras}")
        self.model = mujoco.MjModel.from_xml_string(XML)
        self.data = mujoco.MjData(self.model)
        box = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        clock = gym.spaces.Box(0.0, np.inf, (), np.float64)
        self.observation_space = gym.spaces.Dict({"state": box, "timestamp": clock})
        self.action_space = gym.spaces.Box(-0.3, 0.3, (2,), np.float32)
        self.task_meta = sim.TaskMeta(
            state_names=("x", "y", "goal_x", "goal_y"),
            action_names=("x", "y"),
            action_units="m (position targets)",
            fps=FPS,
        )
        self.state_units = "m"  # recorded in the episode store beside the state names
        self.goal = np.zeros(2)

    def _obs(self) -> dict[str, np.ndarray]:
        state = np.concatenate([self.data.qpos, self.goal]).astype(np.float32)
        return {"state": state, "timestamp": np.float64(self.data.time)}

    def _distance(self) -> float:
        return float(np.linalg.norm(self.data.qpos - self.goal))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        start, self.goal = self.np_random.uniform(-0.2, 0.2, (2, 2))
        self.data.qpos[:] = self.data.ctrl[:] = start
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action):
        self.data.ctrl[:] = np.clip(action, -0.3, 0.3)
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        distance = self._distance()
        success = distance < REACHED
        info = {"is_success": success, "score": max(0.0, 1.0 - distance / 0.4)}
        return self._obs(), -distance, success, False, info


@sim.register_expert(
    "point-reach",
    presets={"clean": sim.ExpertConfig(), "imperfect": sim.ExpertConfig(noise=0.01)},
)
class ReachExpert:
    """Steps the target toward the goal, at most 4 cm a step, with the quality's noise."""

    def __init__(self, env: PointReachEnv, config: sim.ExpertConfig) -> None:
        self.config, self.rng = config, np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        position, goal = obs["state"][:2], obs["state"][2:]
        move = goal - position
        move *= min(1.0, 0.04 / (np.linalg.norm(move) + 1e-9))
        noise = self.rng.normal(0.0, self.config.noise, 2)
        return np.clip(position + move + noise, -0.3, 0.3).astype(np.float32)

    @property
    def done(self) -> bool:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/point-reach"))
    parser.add_argument("--demos", type=int, default=100, help="scripted demonstrations")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--width", type=int, default=128, help="denoiser width")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes")
    args = parser.parse_args()

    env = sim.make_task("point-reach")
    obs, _ = env.reset(seed=0)
    print(f"point-reach: state {obs['state'].shape}, action {env.action_space.shape}")
    env.close()

    demos = args.out / "demos.zarr"
    report = sim.collect_demos(sim.CollectConfig("point-reach", demos, episodes=args.demos))
    expert = f"{report.successes}/{report.attempts}"
    print(f"demonstrations: {report.episodes} episodes in {demos}, expert success {expert}")

    width = args.width
    train = robopolicy.apply_overrides(
        robopolicy.TrainConfig(),
        [
            f"data.path={demos.resolve()}",
            "policy.type=flow",
            "policy.n_obs_steps=2",
            "policy.n_action_steps=4",
            "policy.horizon=8",
            "policy.denoiser.type=mlp",
            f"policy.denoiser.hidden_dims=[{width},{width},{width}]",
            "epochs=100000",  # max_steps ends the run
            f"max_steps={args.steps}",
            f"schedule.warmup_steps={max(1, args.steps // 20)}",
            "optim.lr=1e-3",
            "batch_size=64",
            "num_threads=1",
        ],
    )
    trainer = robopolicy.Trainer(train, card={"task": "point-reach"})
    result = trainer.fit(args.out / "run", resume=True)

    policy = robopolicy.load_policy(result.latest)
    figures = sim.evaluate_policy(policy, "point-reach", episodes=args.episodes, seed=100_000)
    low, high = figures["success_rate_ci95"]
    print(f"trained {result.step} steps: checkpoint {result.latest}")
    print(
        f"success rate {figures['success_rate']:.2f} (95% CI {low:.2f}-{high:.2f}) "
        f"over {args.episodes} episodes"
    )


if __name__ == "__main__":
    main()
