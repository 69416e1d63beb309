"""Serve a checkpoint with ``robopolicy serve`` and drive a simulated task from a client.

The server runs in its own process (``robopolicy.ServerProcess`` starts ``robopolicy serve
CKPT --port 0`` and reads the port it picked); this process needs no torch for its part: the
client (``robopolicy.PolicyClient``) speaks msgpack over TCP, and ``robopolicy.PolicyDriver``
turns the action chunks it receives into one action per environment step: it keeps the last To
observations, asks for a chunk when the one it executes runs out (every Ta steps), and hands
out the action due at the observation's timestamp. This is the loop a robot's controller runs
(``robopolicy control`` adds the safety filter, a fixed rate and requests ahead of time).

    python examples/1_train_policy.py                  # the checkpoint to serve
    python examples/5_drive_served_policy.py           # 20 episodes of arm-push
    python examples/5_drive_served_policy.py --episodes 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import robopolicy
import sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("out/train/checkpoints/latest"))
    parser.add_argument("--task", default="arm-push")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=100_000, help="first episode seed")
    args = parser.parse_args()
    if not args.checkpoint.exists():
        parser.error(f"no checkpoint at {args.checkpoint}: run examples/1_train_policy.py first")

    env = sim.make_task(args.task)
    fps = env.unwrapped.task_meta.fps  # the control rate, which a trainer's checkpoint lacks
    successes, steps = 0, 0
    started = time.perf_counter()
    with (
        robopolicy.ServerProcess(args.checkpoint, threads=1, fps=fps) as server,
        robopolicy.PolicyClient(port=server.port) as client,
    ):
        meta = client.metadata()
        print(
            f"serving {meta['policy_type']} on 127.0.0.1:{server.port}: To {meta['n_obs_steps']}, "
            f"Tp {meta['horizon']}, Ta {meta['n_action_steps']}, {meta['steps']} steps"
        )
        driver = robopolicy.PolicyDriver(client)
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=args.seed + episode)
            driver.reset()
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(driver.step(obs))
                done, steps = terminated or truncated, steps + 1
            successes += bool(info["is_success"])
    env.close()
    seconds = time.perf_counter() - started
    print(f"{driver.requests} chunks for {steps} steps in {seconds:.1f} s")
    print(f"success rate {successes / args.episodes:.2f} over {args.episodes} episodes")


if __name__ == "__main__":
    main()
