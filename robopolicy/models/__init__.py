"""Networks: denoisers (conditional UNet-1D, residual MLP, transformer) and observation encoders.

Every denoiser follows one contract, ``(x (B, Tp, Da), t (B,), cond (B, Dc)) -> (B, Tp, Da)``, and
is built from its config by :func:`build_denoiser`; :class:`ObsEncoder` turns observations into
``cond``. Importing this package registers every denoiser type.
"""

from robopolicy.models.checks import ModelInputError
from robopolicy.models.denoisers import (
    DENOISERS,
    Denoiser,
    DenoiserConfig,
    build_denoiser,
    register_denoiser,
)
from robopolicy.models.encoders import ObsEncoder, ObsEncoderConfig
from robopolicy.models.mlp import MLPDenoiser, MLPDenoiserConfig
from robopolicy.models.transformer import TransformerDenoiser, TransformerDenoiserConfig
from robopolicy.models.unet1d import ConditionalUNet1D, UNet1DConfig

__all__ = [
    "DENOISERS",
    "ConditionalUNet1D",
    "Denoiser",
    "DenoiserConfig",
    "MLPDenoiser",
    "MLPDenoiserConfig",
    "ModelInputError",
    "ObsEncoder",
    "ObsEncoderConfig",
    "TransformerDenoiser",
    "TransformerDenoiserConfig",
    "UNet1DConfig",
    "build_denoiser",
    "register_denoiser",
]
