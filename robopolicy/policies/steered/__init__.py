"""The steered policy (type ``steered``): a frozen base policy plus a latent-noise actor (DSRL).

Importing this package registers the type; see :mod:`robopolicy.policies.steered.model`.
"""

from robopolicy.policies.steered.config import LatentActorConfig, SteeredConfig
from robopolicy.policies.steered.model import LatentActor, SteeredPolicy

__all__ = ["LatentActor", "LatentActorConfig", "SteeredConfig", "SteeredPolicy"]
