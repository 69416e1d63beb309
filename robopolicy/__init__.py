"""robopolicy: diffusion and flow-matching robot policies from demonstrations to hardware.

The names a script imports (simulation, from demonstrations to evaluation, is the ``sim``
package; ``examples/`` runs each of these end to end)::

    import robopolicy
    import sim

    sim.collect_demos(sim.CollectConfig("arm-push", "demos.zarr", episodes=100))
    config = robopolicy.get_preset("arm-push", policy="flow", data="demos.zarr")
    config = robopolicy.apply_overrides(config, ["max_steps=2000"])      # key=value, as the CLI
    trainer = robopolicy.Trainer(config, evaluate=sim.training_evaluator("arm-push", config))
    result = trainer.fit("runs/push")                                    # checkpoints, curves
    robopolicy.finetune("dsrl", result.latest, rollouts=sim.SimRollouts("arm-push"),
                        out="runs/push-dsrl")                            # RL by name
    policy = robopolicy.load_policy(result.latest)
    sim.evaluate_policy(policy, "arm-push", episodes=50)

Serving: ``robopolicy.ServerProcess(checkpoint)`` runs ``robopolicy serve`` in a subprocess,
``robopolicy.PolicyClient`` asks it for chunks and ``robopolicy.PolicyDriver`` turns them into
one action per tick; ``robopolicy.load_for_inference`` is the inference engine in process.

Names load on first use: ``import robopolicy`` imports no torch, so the serving client runs
without it.
"""

from __future__ import annotations

from robopolicy.lazy import lazy_exports

__version__ = "0.1.0"

_NAMES = {
    "EpisodeStore": "robopolicy.data.store",
    "PolicyClient": "robopolicy.serve.client",
    "PolicyDriver": "robopolicy.serve.client",
    "ServerProcess": "robopolicy.serve.commands",
    "TrainConfig": "robopolicy.train.config",
    "Trainer": "robopolicy.train.trainer",
    "apply_overrides": "robopolicy.config",
    "finetune": "robopolicy.rl.registry",
    "get_preset": "robopolicy.train.presets",
    "load_for_inference": "robopolicy.inference.engine",
    "load_policy": "robopolicy.policies.checkpoint",
}
__all__ = sorted(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)
