"""What an off-policy actor-critic keeps besides its losses: a replay ring of transitions and an
ensemble of Q-networks evaluated as one.

Symbols: M rows added at once, B a minibatch, E ensemble members, F the critic's observation
features, L its action (for DSRL: the flattened latent noise).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.errors import RobopolicyError
from robopolicy.models.mlp import ACTIVATIONS


class QEnsemble(nn.Module):
    """E Q-networks evaluated as one: ``(x (B, F), w (B, L)) -> (E, B)``.

    Layer k holds weights (E, in, out) and biases (E, 1, out) initialized as ``nn.Linear``
    would for each member; the first layer broadcasts the shared input to all members in one
    ``matmul``, the others are one ``baddbmm``; LayerNorm has a per-member scale and shift.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: tuple[int, ...],
        members: int,
        activation: str,
        layer_norm: bool,
    ) -> None:
        super().__init__()
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.scales, self.shifts = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise((in_dim, *hidden_dims, 1)):
            bound = 1.0 / math.sqrt(fan_in)
            weight = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)
            bias = torch.empty(members, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
            if layer_norm and fan_out != 1:
                self.scales.append(nn.Parameter(torch.ones(members, 1, fan_out)))
                self.shifts.append(nn.Parameter(torch.zeros(members, 1, fan_out)))
        self.activation = ACTIVATIONS[activation]()
        self.layer_norm = layer_norm

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        h = torch.matmul(torch.cat([x, w], dim=-1), self.weights[0]) + self.biases[0]
        for k in range(1, len(self.weights)):
            if self.layer_norm:
                h = F.layer_norm(h, h.shape[-1:]) * self.scales[k - 1] + self.shifts[k - 1]
            h = torch.baddbmm(self.biases[k], self.activation(h), self.weights[k])
        return h.squeeze(-1)


class ReplayBuffer:
    """A ring of transitions ``x`` (F), ``w`` (L), ``reward``, ``done``, ``discount``, ``next_x``
    (F), allocated at ``capacity`` rows (memory the system commits only as rows are written)."""

    FIELDS = ("x", "w", "reward", "done", "discount", "next_x")

    def __init__(self, capacity: int, features: int, latent: int, device: torch.device) -> None:
        self.capacity, self.size, self.pos = capacity, 0, 0
        shapes = {"x": (features,), "w": (latent,), "next_x": (features,)}
        self.data = {
            name: torch.empty((capacity, *shapes.get(name, ())), device=device)
            for name in self.FIELDS
        }

    def add(self, rows: dict[str, Tensor]) -> None:
        """Append M transitions ``{field: (M, ...)}``, overwriting the oldest when full."""
        m = len(rows["x"])
        where = torch.arange(self.pos, self.pos + m, device=rows["x"].device) % self.capacity
        for name in self.FIELDS:
            self.data[name][where] = rows[name].to(self.data[name])
        self.pos = (self.pos + m) % self.capacity
        self.size = min(self.size + m, self.capacity)

    def gather(self, index: Tensor) -> dict[str, Tensor]:
        """``{field: (*index.shape, ...)}`` the rows at ``index`` (any shape, values < size)."""
        return {name: value[index] for name, value in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        """The filled part only (the ring order is kept: ``pos`` is saved with it)."""
        return {
            "size": self.size,
            "pos": self.pos,
            **{name: value[: self.size] for name, value in self.data.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise RobopolicyError(
                f"the saved buffer holds {size} rows, more than its {self.capacity}"
            )
        for name in self.FIELDS:
            self.data[name][:size] = state[name].to(self.data[name])
        self.size, self.pos = size, int(state["pos"]) % self.capacity
