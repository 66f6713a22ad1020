"""Weight gradients of a frame-by-frame forward, computed once over all frames.

`previous_frame` feedback runs the backbone once per frame (frame t's modulation needs frame t-1's
output), so autograd computes each trained convolution's weight gradient once per frame, at batch
B, and adds the T results up. Where a call's output has few positions (B x H x W: layer4 at 4x4
or 7x7, Conv100), that gradient is a matrix product with a short inner dimension, and it runs far
below the CPU's rate: a 512->512 3x3 layer4 convolution's weight gradient took 28 ms over 7 frames
of 8 clips against 7 ms once on the 56 frames (build machine, bf16, channels_last), and each of
the T-1 sums and casts of a weight-sized gradient came on top.

`batched_weight_grads(module)` moves that arithmetic, nothing else. Inside the block, a `conv2d`
whose weight is a trained parameter of `module` and whose output has under
`DEFER_BELOW_POSITIONS` positions runs on a detached copy of its weight (cast once to the autocast
dtype, as autocast's cache would), so autograd computes only its input (and bias) gradient frame
by frame. A tap on the conv's output keeps the conv's input and output gradient; autograd runs the
weight's gather node only after every tap that hangs off it, and there one `convolution_backward`
over all frames gives the weight gradient. The same gradient up to the order of the sums (tested
in fp64). Larger convolutions keep autograd's per-frame weight gradient: batching them gained
nothing and the concatenation cost time (conv1 and the feedback branch at 56x56: the whole step 8%
slower in fp32 when every trained conv was deferred).

Measured on the build machine's CPU (stage 3 of `rgb_ms_feedback` previous_frame, x `rgb_ms`'s
step, timed in turns): demo size bf16 + channels_last 1.34 -> 1.26, 224 1.30 -> 1.24; fp32 1.27 ->
1.22 (demo) and 1.19 -> 1.18 (224).

Not for double backward (`create_graph=True`): the gathered gradient carries no graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

DEFER_BELOW_POSITIONS = 4096  # output positions (B x H x W) of one call: demo layer4 8x4x4 = 128, conv1 8x56x56


@dataclass
class _Deferred:
    """One trained conv weight in the dtype it computes in, and the (input, output gradient) pairs
    of its calls; `token` is the gather node's output that every call's tap hangs off."""

    weight: nn.Parameter
    compute_weight: Tensor
    geometry: tuple[list[int], list[int], list[int], int]  # stride, padding, dilation, groups
    token: Tensor | None = None
    pairs: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    def weight_grad(self) -> Tensor:
        inputs, grads = zip(*self.pairs)
        self.pairs.clear()
        grad = torch.cat(grads)
        stride, padding, dilation, groups = self.geometry
        _, weight_grad, _ = torch.ops.aten.convolution_backward(
            grad, torch.cat(inputs).to(grad.dtype), self.compute_weight, None,
            stride, padding, dilation, False, [0, 0], groups, [False, True, False])
        return weight_grad.to(self.weight.dtype)


class _Gather(torch.autograd.Function):
    """Forward: an empty token hanging off the weight. Backward: the weight's batched gradient."""

    @staticmethod
    def forward(ctx, weight: Tensor, deferred: _Deferred) -> Tensor:
        ctx.deferred = deferred
        return weight.new_empty(0)

    @staticmethod
    def backward(ctx, _token_grad: Tensor) -> tuple[Tensor, None]:
        return ctx.deferred.weight_grad(), None


class _Tap(torch.autograd.Function):
    """Identity on a conv's output; its backward keeps (conv input, output gradient) for the gather."""

    @staticmethod
    def forward(ctx, output: Tensor, token: Tensor, conv_input: Tensor, deferred: _Deferred) -> Tensor:
        ctx.deferred = deferred
        ctx.save_for_backward(conv_input)
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        ctx.deferred.pairs.append((ctx.saved_tensors[0], grad))
        return grad, None, None, None


def _conv_arguments(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,  # noqa: A002
                    dilation=1, groups: int = 1) -> tuple:
    """`F.conv2d`'s arguments, positional or by keyword, in its order."""
    return input, weight, bias, stride, padding, dilation, groups


def _output_positions(x: Tensor, weight: Tensor, stride, padding, dilation) -> int:
    positions = x.shape[0]
    for size, kernel, s, p, d in zip(x.shape[-2:], weight.shape[-2:], _pair(stride), _pair(padding), _pair(dilation)):
        positions *= (size + 2 * p - d * (kernel - 1) - 1) // s + 1
    return positions


class _DeferConvWeightGrads(TorchFunctionMode):
    """Routes the small convolutions of `trained` weights through a tap (module doc)."""

    def __init__(self, trained: set[Tensor]) -> None:
        super().__init__()
        self.trained = trained
        self.deferred: dict[Tensor, _Deferred] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.conv2d:
            return func(*args, **kwargs)
        x, weight, bias, stride, padding, dilation, groups = _conv_arguments(*args, **kwargs)
        if (weight not in self.trained or isinstance(padding, str)
                or _output_positions(x, weight, stride, padding, dilation) >= DEFER_BELOW_POSITIONS):
            return func(*args, **kwargs)
        deferred = self.deferred.get(weight)
        if deferred is None:
            device = weight.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
            geometry = (list(_pair(stride)), list(_pair(padding)), list(_pair(dilation)), groups)
            deferred = self.deferred[weight] = _Deferred(weight, weight.detach().to(dtype), geometry)
            deferred.token = _Gather.apply(weight, deferred)
        output = func(x, deferred.compute_weight, bias, stride, padding, dilation, groups)
        return _Tap.apply(output, deferred.token, x.detach(), deferred)


@contextmanager
def batched_weight_grads(module: nn.Module) -> Iterator[None]:
    """Within the block, the weight gradients of `module`'s small trained convolutions are computed
    once over all their calls, when the backward pass reaches them (module doc). Nothing changes
    without grad."""
    if not torch.is_grad_enabled():
        yield
        return
    trained = {m.weight for m in module.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad}
    with _DeferConvWeightGrads(trained):
        yield
