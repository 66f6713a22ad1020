"""The ConvLSTM cell of Ego-RNN.

One convolution per gate for the input (with bias) and one for the hidden state (without), as in
the reference, so its weights map one to one and each gate gets its own Xavier-normal
initialisation. The state is sized from the input, so any layer4 side works.

Computed faster than it is stored, in three ways, each measured with `fpar bench` on a 2-core
AVX512 CPU (torch 2.14, oneDNN):
- `run` applies the input convolutions to all T frames of a clip at once (the input does not
  depend on the state); only the hidden-state convolutions are sequential.
- Gates are convolved in groups of at most `GROUP_CHANNELS` output channels (a wider gate
  alone): the four gates in one convolution for a small cell (the demo's 128 channels), one gate
  per convolution for the reference's 512. A single 2048-channel convolution at layer4's 7x7 hit
  a slow oneDNN path: forward + backward took 62 ms at batch 2 against 4 x 8 ms for four
  512-channel ones (fp32; 38 ms against 4 x 4 ms in bf16), while at 512 channels one fused
  convolution beats four small.
- Memory format: the cell convolves what it is given. Under `train.channels_last` the RGB stream
  keeps NCHW weights and gets channels_last inputs (`models.memory_format`); making the cell's
  inputs NCHW too made no difference, timed in turns (rgb stage 1 at 224, bf16: 0.268 against
  0.267 s), and converting channels_last weights to NCHW here, once per clip, was slower (0.286
  against 0.259 s).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATES = ("i", "f", "c", "o")  # input, forget, candidate cell, output
GROUP_CHANNELS = 512  # the most output channels one gate convolution computes (module doc)


class ConvLSTMCell(nn.Module):
    """c = sigmoid(i) * tanh(c~) + sigmoid(f) * c_prev, h = sigmoid(o) * tanh(c)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.padding = padding = kernel_size // 2
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

    def _groups(self) -> list[tuple[str, ...]]:
        """The gates convolved together (module doc): as many as fit in GROUP_CHANNELS outputs, at
        least one (a gate wider than that is convolved alone)."""
        size = max(1, GROUP_CHANNELS // self.hidden_channels)
        return [GATES[i:i + size] for i in range(0, len(GATES), size)]

    def _weights(self, convs: nn.ModuleDict) -> list[tuple[Tensor, Tensor | None]]:
        """(weight, bias) of each gate group of `convs` (x_convs or h_convs), gates in `GATES` order."""
        def joined(tensors: list[Tensor]) -> Tensor:
            return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

        return [(joined([convs[g].weight for g in group]),
                 None if convs[group[0]].bias is None else joined([convs[g].bias for g in group]))
                for group in self._groups()]

    def _convolve(self, x: Tensor, weights: list[tuple[Tensor, Tensor | None]]) -> Tensor:
        """The four gates' share from `x`, (N, 4 * hidden, h, w) in the order of `GATES`."""
        maps = [F.conv2d(x, weight, bias, padding=self.padding) for weight, bias in weights]
        return maps[0] if len(maps) == 1 else torch.cat(maps, dim=1)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor], x_gates: Tensor | None = None,
                h_weights: list[tuple[Tensor, Tensor | None]] | None = None) -> tuple[Tensor, Tensor]:
        """One step: (h, c) from the input map `x` and the previous (h, c). `x_gates` is `x`'s share
        of the gates and `h_weights` the grouped hidden-state weights, when `run` made them once
        for a whole sequence."""
        h, c = state
        if x_gates is None:
            x_gates = self._convolve(x, self._weights(self.x_convs))
        gates = x_gates + self._convolve(h, h_weights or self._weights(self.h_convs))
        i, f, candidate, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(candidate) + torch.sigmoid(f) * c
        return torch.sigmoid(o) * torch.tanh(c), c

    def run(self, steps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The last (h, c) over the input maps `steps` (each (B, C, h, w)), from the zero state.

        Each step still goes through `forward` with its own input map, so hooks on the cell see
        every step's input and gradients with respect to it (CAM reads them)."""
        inputs = torch.stack(list(steps), dim=1).flatten(0, 1)
        x_gates = self._convolve(inputs, self._weights(self.x_convs)).unflatten(0, (len(steps[0]), -1))
        h_weights = self._weights(self.h_convs)
        state = self.initial_state(steps[0])
        for t, x in enumerate(steps):
            state = self(x, state, x_gates[:, t], h_weights)
        return state
