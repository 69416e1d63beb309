"""Simulated tasks behind one gymnasium API, their scripted experts, evaluation and RL rollouts.

What a training script imports from here (the learning side is :mod:`robopolicy`)::

    import sim

    env = sim.make_task("arm-push")                     # a gymnasium env; register_task adds one
    sim.collect_demos(sim.CollectConfig("arm-push", "demos.zarr", episodes=100))
    figures = sim.evaluate_policy(policy, "arm-push", episodes=50, seed=100_000)
    evaluate = sim.training_evaluator("arm-push", train_config)   # the Trainer's callback
    rollouts = sim.SimRollouts("arm-push")              # what robopolicy.finetune steps

Stepping a task never needs GL: MuJoCo loads with rendering deferred, and the first render picks
a working offscreen backend (:mod:`sim.gl`). The registry loads with the package; the other names
load on first use (evaluation and rollouts import torch).
"""

from robopolicy.lazy import lazy_exports
from sim.gl import prepare_import

prepare_import()

from sim.registry import (  # noqa: E402  (after MuJoCo's GL is deferred)
    TaskMeta,
    TaskSpec,
    load_tasks,
    make_task,
    register_task,
    task_spec,
)

_NAMES = {
    "CollectConfig": "sim.collect",
    "ExpertConfig": "sim.experts",
    "SimRollouts": "sim.rollout",
    "collect_demos": "sim.collect",
    "evaluate_policy": "sim.evaluate",
    "register_expert": "sim.experts",
    "training_evaluator": "sim.evaluate",
}
__all__ = [
    "CollectConfig",
    "ExpertConfig",
    "SimRollouts",
    "TaskMeta",
    "TaskSpec",
    "collect_demos",
    "evaluate_policy",
    "load_tasks",
    "make_task",
    "register_expert",
    "register_task",
    "task_spec",
    "training_evaluator",
]

__getattr__ = lazy_exports(__name__, _NAMES)
