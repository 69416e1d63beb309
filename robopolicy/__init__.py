"""robopolicy: diffusion and flow-matching robot policies from demonstrations to hardware.

``import robopolicy`` stays light (no torch): ``robopolicy.load_policy`` imports the policy code
on first use, so the serving client can be imported without torch.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load_policy":
        from robopolicy.policies.checkpoint import load_policy

        return load_policy
    raise AttributeError(f"module 'robopolicy' has no attribute {name!r}")
