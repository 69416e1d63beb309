"""The diffusion policy (type ``diffusion``): config, DDPM/DDIM schedulers, model."""

from robopolicy.policies.diffusion.config import DiffusionConfig
from robopolicy.policies.diffusion.model import DenoisingChain, DiffusionPolicy

__all__ = ["DenoisingChain", "DiffusionConfig", "DiffusionPolicy"]
