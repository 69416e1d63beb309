"""One line of an evaluation's figures (:func:`sim.evaluate.evaluate_policy`), as ``robopolicy
eval`` prints them."""

from __future__ import annotations

from typing import Any


def describe(figures: dict[str, Any]) -> str:
    """One line of an evaluation's figures."""
    low, high = figures["success_rate_ci95"]
    text = (
        f"{figures['task']}: success {figures['successes']}/{figures['episodes']} = "
        f"{figures['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}), mean score "
        f"{figures['mean_score']:.3f}, mean max score {figures['mean_max_score']:.3f}"
    )
    if "mean_max_coverage" in figures:
        text += f", mean max coverage {figures['mean_max_coverage']:.3f}"
    return text + f", mean length {figures['mean_length']:.1f} ({figures['eval_s']:.1f} s)"
