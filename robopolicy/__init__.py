"""robopolicy: diffusion and flow-matching robot policies from demonstrations to hardware."""

__version__ = "0.1.0"
