"""``report.md`` of a quickstart run: what was done, the figures, where the files are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robopolicy.atomic import atomic_write_bytes


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def write_report(path: Path, result: dict[str, Any], config: Any) -> None:
    """Write the markdown report of ``result`` (see :func:`apps.quickstart.pipeline.quickstart`)."""
    out = path.parent
    demos, expert = result["demos"], result["expert"]
    n, seed = config.eval_episodes, config.eval_seed
    lines = [
        "# robopolicy quickstart: arm-push",
        "",
        "A 6-joint arm pushes a cube onto a target, going around it by the left or the right "
        "(multimodal demonstrations). Actions are end-effector targets (x, y) at 10 Hz; an "
        "episode succeeds when the cube's centre is within 2.5 cm of the target (80 steps max).",
        "",
        f"- Demonstrations: {demos['episodes']} episodes ({demos['frames']} frames) from the "
        f"imperfect scripted expert, {_pct(demos['store_success_rate'])} of them successful "
        "(noise, sloppy moves and careless finishes on purpose).",
        f"- Evaluation: {n} episodes, seeds {seed}..{seed + n - 1}, {config.num_envs} parallel "
        "envs; each policy executes 4 actions of every 8-action chunk (receding horizon), with "
        "its EMA weights.",
        f"- Total time: {result['seconds']:.0f} s (this run; a resumed run counts only its own "
        "part).",
        "",
        "## Behaviour cloning",
        "",
        "| policy | success (95% CI) | mean max score | mean length | steps | train s | eval s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, f in result["policies"].items():
        low, high = f["success_rate_ci95"]
        lines.append(
            f"| {kind} | {_pct(f['success_rate'])} ({_pct(low)}-{_pct(high)}) | "
            f"{f['mean_max_score']:.3f} | {f['mean_length']:.1f} | {f['step']} | "
            f"{f['train_s']:.0f} | {f['eval_s']:.0f} |"
        )
    lines += [
        f"| scripted expert, imperfect | {_pct(expert['imperfect'])} | | | | | |",
        f"| scripted expert, clean | {_pct(expert['clean'])} | | | | | |",
        "",
        f"Behaviour cloning reaches {_pct(result['bc_success'])} ({result['bc_policy']}); it "
        "clones the demonstrator's mistakes as well as its skill, which is the room RL "
        "fine-tuning is for.",
        "",
        *_finetune_lines(result),
        "",
        "## Serving",
        "",
        _serving_line(result["serving"]),
        "",
        "## Curves",
        "",
        "![training curves](curves.png)",
        "",
        "## Files",
        "",
    ]
    for kind, f in result["policies"].items():
        checkpoint = Path(f["checkpoint"])
        lines.append(f"- `{kind}/checkpoints/{checkpoint.name}`: the {kind} checkpoint")
        lines += [f"  - video: `{Path(v).relative_to(out)}`" for v in f["videos"]]
        lines.append(f"  - curves: `{kind}/curves.png`, TensorBoard: `{kind}/tensorboard`")
    tuned = result["finetuned"]
    run = Path(tuned["run"]).relative_to(out)
    lines.append(f"- `{run}/checkpoints/{Path(tuned['checkpoint']).name}`: the fine-tuned policy")
    lines += [f"  - video: `{Path(v).relative_to(out)}`" for v in tuned["videos"]]
    lines.append(f"  - curves: `{run}/curves.png`, TensorBoard: `{run}/tensorboard`")
    if result["videos_skipped"]:
        lines.append(f"- No videos: {result['videos_skipped']}")
    lines += [
        "",
        "Evaluate a checkpoint again (any number of envs gives the same episodes):",
        "",
        f"    robopolicy eval {out}/{run}/checkpoints/latest --task arm-push "
        f"--episodes {n} --seed {seed}",
        "",
    ]
    atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))


def _finetune_lines(result: dict[str, Any]) -> list[str]:
    """The fine-tuning stage, before and after (:mod:`apps.quickstart.finetune`)."""
    tuned, base = result["finetuned"], result["finetuned"]["base_policy"]
    before = result["policies"][base]
    if result["served_policy"] == tuned["name"]:
        served = "it is the one served"
    else:
        served = f"the cloned {base} policy is served"
    lines = [
        f"## Fine-tuning: {tuned['name']}",
        "",
        f"DSRL steered the cloned {base} policy for {tuned['env_steps']} env steps "
        f"({tuned['train_s']:.0f} s): SAC learns which initial noise to give the frozen policy "
        "(its weights are unchanged; the checkpoint holds them and the small latent actor). "
        "Both rows are the same evaluation episodes.",
        "",
        "| policy | success (95% CI) | mean max score | mean length | eval s |",
        "|---|---|---|---|---|",
    ]
    for name, f in ((f"before: {base} (BC)", before), (f"after: {tuned['name']}", tuned)):
        low, high = f["success_rate_ci95"]
        lines.append(
            f"| {name} | {_pct(f['success_rate'])} ({_pct(low)}-{_pct(high)}) | "
            f"{f['mean_max_score']:.3f} | {f['mean_length']:.1f} | {f['eval_s']:.0f} |"
        )
    sampled = tuned["dsrl_eval_before"]["success_rate"]
    lines += [
        "",
        f"With Gaussian noise through the deterministic {tuned['steps']}-step sampler that "
        f"DSRL steers, the {base} policy scored {_pct(sampled)} before fine-tuning (DSRL's own "
        f"evaluation). The fine-tuned policy is served only when it succeeds more often than "
        f"the cloned one on these episodes: {served}.",
    ]
    return lines


def _serving_line(f: dict[str, Any]) -> str:
    """The serving stage's latency (see :mod:`apps.quickstart.serve`)."""
    command = "robopolicy serve" if f["backend"] == "policy" else "robopolicy serve --backend auto"
    return (
        f"Served on 127.0.0.1 (`{command}`), the {f['policy']} policy "
        f"({f['sampler']}, {f['steps']} steps, {f['backend']} backend) answers a batch-1 request "
        f"in {f['p50_ms']:.2f} ms (p50; p99 {f['p99_ms']:.2f} ms) through the client, of which "
        f"inference takes {f['server_inference_p50_ms']:.2f} ms ({f['requests']} requests)."
    )
