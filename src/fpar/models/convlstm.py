"""The ConvLSTM cell of Ego-RNN.

One convolution per gate for the input (with bias) and one for the hidden state (without), as in
the reference, so its weights map one to one and each gate gets its own Xavier-normal
initialisation. The state is sized from the input, so any layer4 side works.

Computed faster than it is stored: the four gates' weights are concatenated into one convolution
for the input and one for the hidden state, and `run` applies the input convolution to all T
frames of a clip at once (the input does not depend on the state; only the hidden-state
convolution is sequential). Eight small convolutions a step become one, which is what keeps a
CPU's matrix units busy at layer4's 7x7 (`fpar bench` measures it against the per-gate form).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATES = ("i", "f", "c", "o")  # input, forget, candidate cell, output


class ConvLSTMCell(nn.Module):
    """c = sigmoid(i) * tanh(c~) + sigmoid(f) * c_prev, h = sigmoid(o) * tanh(c)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        padding = kernel_size // 2
        self.x_convs = nn.ModuleDict(
            {g: nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=padding) for g in GATES}
        )
        self.h_convs = nn.ModuleDict(
            {g: nn.Conv2d(hidden_channels, hidden_channels, kernel_size, padding=padding, bias=False) for g in GATES}
        )
        for conv in [*self.x_convs.values(), *self.h_convs.values()]:
            nn.init.xavier_normal_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def initial_state(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Zero (h, c) shaped like the input map, with the cell's channels."""
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        return zeros, zeros

    def input_gates(self, x: Tensor) -> Tensor:
        """The input's share of the four gates, (N, 4 * hidden, h, w) in the order of `GATES`."""
        weight = torch.cat([self.x_convs[g].weight for g in GATES])
        bias = torch.cat([self.x_convs[g].bias for g in GATES])
        return F.conv2d(x, weight, bias, padding=self.x_convs["i"].padding)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor], x_gates: Tensor | None = None,
                h_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step: (h, c) from the input map `x` and the previous (h, c). `x_gates` is `x`'s
        `input_gates` and `h_weight` the concatenated hidden-state weight, when `run` made them
        once for a whole sequence."""
        h, c = state
        if x_gates is None:
            x_gates = self.input_gates(x)
        if h_weight is None:
            h_weight = self.hidden_weight()
        gates = x_gates + F.conv2d(h, h_weight, padding=self.h_convs["i"].padding)
        i, f, candidate, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(candidate) + torch.sigmoid(f) * c
        return torch.sigmoid(o) * torch.tanh(c), c

    def hidden_weight(self) -> Tensor:
        """The four gates' hidden-state weights as one convolution's, in the order of `GATES`."""
        return torch.cat([self.h_convs[g].weight for g in GATES])

    def run(self, steps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The last (h, c) over the input maps `steps` (each (B, C, h, w)), from the zero state.

        Each step still goes through `forward` with its own input map, so hooks on the cell see
        every step's input and gradients with respect to it (CAM reads them)."""
        x_gates = self.input_gates(torch.stack(list(steps), dim=1).flatten(0, 1)).unflatten(0, (len(steps[0]), -1))
        h_weight = self.hidden_weight()
        state = self.initial_state(steps[0])
        for t, x in enumerate(steps):
            state = self(x, state, x_gates[:, t], h_weight)
        return state
