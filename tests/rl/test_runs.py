"""RL run directories: a run saved before a field was renamed resumes under the new name."""

from __future__ import annotations

import json

import pytest

from robopolicy.config import ConfigError, to_dict
from robopolicy.rl.dppo_config import DPPOConfig
from robopolicy.rl.dsrl_config import DSRLConfig
from robopolicy.rl.fpo_config import FPOConfig
from robopolicy.rl.runs import CONFIG_FILE, RunDir

OLD_NAMES = [
    (
        DPPOConfig(steps=7, finetune_steps=4),
        {"steps": "denoising_steps", "finetune_steps": "ft_denoising_steps"},
    ),
    (FPOConfig(steps=3), {"steps": "sampling_steps"}),
    (DSRLConfig(steps=2), {"steps": "base_steps"}),
]


@pytest.mark.parametrize(("config", "old"), OLD_NAMES, ids=lambda v: type(v).__name__)
def test_a_run_saved_with_the_old_step_names_resumes(tmp_path, config, old):
    """``rl_config.json`` of a run saved before the step counts were renamed (DPPO's
    ``denoising_steps`` and ``ft_denoising_steps``, FPO's ``sampling_steps``, DSRL's
    ``base_steps``) reads with the new names and the same values: the same config resumes, a
    changed one is refused, and the file is rewritten with the new names."""
    saved = to_dict(config)
    for new, name in old.items():
        saved[name] = saved.pop(new)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(saved), encoding="utf-8")
    for new in old:
        changed = to_dict(config) | {new: to_dict(config)[new] + 1}
        with pytest.raises(ConfigError, match=f"{new}: run has"):
            RunDir(tmp_path).check_config(changed)
    RunDir(tmp_path).check_config(to_dict(config))
    assert json.loads((tmp_path / CONFIG_FILE).read_text(encoding="utf-8")) == to_dict(config)
