"""Policies: one interface (:class:`Policy`), a folder per policy type, checkpoints.

Each policy type is a subpackage with ``config.py`` and ``model.py`` that registers itself with
:func:`register_policy`; :func:`load_policy` imports them on demand.
"""

from robopolicy.policies.base import Policy, PolicyConfig, register_policy
from robopolicy.policies.checkpoint import load_policy, read_card, save_policy

__all__ = ["Policy", "PolicyConfig", "load_policy", "read_card", "register_policy", "save_policy"]
