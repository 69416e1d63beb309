"""The Gaussian MLP policy (type ``gaussian``): the classic PPO actor, behind the same interface.

Importing this package registers the type; see :mod:`robopolicy.policies.gaussian.model`.
"""

from robopolicy.policies.gaussian.config import GaussianPolicyConfig
from robopolicy.policies.gaussian.model import GaussianPolicy

__all__ = ["GaussianPolicy", "GaussianPolicyConfig"]
