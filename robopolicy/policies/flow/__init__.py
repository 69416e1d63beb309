"""The flow-matching policy (type ``flow``): config and model."""

from robopolicy.policies.flow.config import FlowConfig
from robopolicy.policies.flow.model import FlowPolicy

__all__ = ["FlowConfig", "FlowPolicy"]
