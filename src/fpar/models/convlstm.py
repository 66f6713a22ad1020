"""The ConvLSTM cell of Ego-RNN.

One convolution per gate for the input (with bias) and one for the hidden state (without), as in
the reference, so its weights map one to one and each gate gets its own Xavier-normal
initialisation. The state is sized from the input, so any layer4 side works.
"""

from __future__ import annotations

import torch
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

    def _gate(self, gate: str, x: Tensor, h: Tensor) -> Tensor:
        return self.x_convs[gate](x) + self.h_convs[gate](h)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One step: (h, c) from the input map and the previous (h, c)."""
        h, c = state
        i = torch.sigmoid(self._gate("i", x, h))
        f = torch.sigmoid(self._gate("f", x, h))
        o = torch.sigmoid(self._gate("o", x, h))
        c = i * torch.tanh(self._gate("c", x, h)) + f * c
        return o * torch.tanh(c), c
