"""The diffusion policy (type ``diffusion``): config and model."""

from robopolicy.policies.diffusion.config import DiffusionConfig
from robopolicy.policies.diffusion.model import DenoisingChain, DiffusionPolicy

__all__ = ["DenoisingChain", "DiffusionConfig", "DiffusionPolicy"]
