"""Weight gradients of a frame-by-frame forward, computed once over all frames.

`previous_frame` feedback runs the backbone once per frame (frame t's modulation needs frame t-1's
output), so autograd computes each trained convolution's weight gradient once per frame, at batch
B, and adds the T results up. Where a call's output has few positions (B x H x W: layer4 at 4x4
or 7x7, Conv100), that gradient is a matrix product with a short inner dimension, and it runs far
below the CPU's rate: a 512->512 3x3 layer4 convolution's weight gradient took 28 ms over 7 frames
of 8 clips against 7 ms once on the 56 frames (build machine, bf16, channels_last), and each of
the T-1 sums and casts of a weight-sized gradient came on top.

`batched_weight_grads(module)` moves that arithmetic, nothing else. Inside the block, with grad
on, a 4-D `conv2d` whose weight is a trained parameter of `module` and whose output has under
`DEFER_BELOW_POSITIONS` positions runs on a detached copy of its weight (cast once to the autocast
dtype, as autocast's cache would), so autograd computes only its input (and bias) gradient frame
by frame. A tap on the conv's output keeps the conv's input and output gradient; autograd runs the
weight's gather node only after every tap of it that the backward pass reaches, and there one
`convolution_backward` over those calls gives the weight gradient (in fp32 when the convs ran in
fp16, whose range one sum over all frames could exceed). The same gradient up to the order of
the sums (tested in fp64), also for a backward that reaches only part of the graph or runs twice
(`retain_graph`): each backward gathers its own taps.

Larger convolutions keep autograd's per-frame weight gradient: batching them gained nothing and
the concatenation cost time (conv1 and the feedback branch's last convs at 56x56: the whole step
8% slower in fp32 when every trained conv was deferred). Under `torch.compile` nothing is routed
(the compiled graph is left to the compiler). Not for double backward: the gathered gradient
carries no graph (`once_differentiable`).

Not on a GPU. Eager, a GPU step at these batch sizes waits on kernel launches, not arithmetic,
and the mode's Python per conv call cost more than the batched gradient saved: previous_frame's
step took 130 ms with it and 104 without (H100, demo size, fp32, in turns). Replayed from a CUDA
graph (`train.cuda_graphs`) it gained 4-6% (24.5 against 26.1 ms), but the warm-up step before a
capture would then run other code than the capture; not worth that.

Measured on the build machine's CPU (stage 3 of `rgb_ms_feedback` previous_frame, x `rgb_ms`'s
step, timed in turns): demo size bf16 + channels_last 1.34-1.39 -> 1.26-1.31, 224 1.26-1.31 ->
1.24; fp32 1.27 -> 1.22 (demo) and 1.19 -> 1.18 (224).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

# output positions (B x H x W) of one call: layer4 is 8x4x4 = 128 at the demo size, 2x7x7 = 98 at
# 224 (batch 2); conv1 and the branch's last convs are 8x56x56 = 25088
DEFER_BELOW_POSITIONS = 4096

Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]  # stride, padding, dilation, groups


@dataclass
class _Deferred:
    """One trained conv weight at one geometry, in the dtype it computes in, and the (input, output
    gradient) pairs its taps recorded, per backward pass (autograd's graph task)."""

    compute_weight: Tensor
    geometry: Geometry
    pairs: dict[int, list[tuple[Tensor, Tensor]]] = field(default_factory=dict)

    def weight_grad(self) -> Tensor | None:
        """The weight gradient of this backward's pairs; pairs of other backward passes that never
        reached this gather (`torch.autograd.grad` on part of the graph) are dropped."""
        pairs = self.pairs.pop(torch._C._current_graph_task_id(), [])
        self.pairs.clear()
        if not pairs:
            return None
        inputs, grads = zip(*pairs)
        grad = torch.cat(grads)
        weight = self.compute_weight
        if grad.dtype == torch.float16:
            grad, weight = grad.float(), weight.float()
        stride, padding, dilation, groups = self.geometry
        _, weight_grad, _ = torch.ops.aten.convolution_backward(
            grad, torch.cat(inputs).to(grad.dtype), weight, None,
            list(stride), list(padding), list(dilation), False, [0, 0], groups, [False, True, False])
        return weight_grad  # in the compute dtype: autograd casts it to the parameter's, as for its own casts


class _Gather(torch.autograd.Function):
    """Forward: an empty token hanging off the weight. Backward: the weight's batched gradient."""

    @staticmethod
    def forward(ctx, weight: Tensor, deferred: _Deferred) -> Tensor:
        ctx.deferred = deferred
        return weight.new_empty(0)

    @staticmethod
    @once_differentiable
    def backward(ctx, _token_grad: Tensor) -> tuple[Tensor | None, None]:
        return ctx.deferred.weight_grad(), None


class _Tap(torch.autograd.Function):
    """A copy of a conv's (small) output; its backward records (conv input, output gradient) for the
    gather. A copy, not a view, so the caller may change the output in place."""

    @staticmethod
    def forward(ctx, output: Tensor, token: Tensor, conv_input: Tensor, deferred: _Deferred) -> Tensor:
        ctx.deferred = deferred
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(conv_input)
        return output.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor | None) -> tuple[Tensor | None, None, None, None]:
        if grad is not None:
            task = torch._C._current_graph_task_id()
            ctx.deferred.pairs.setdefault(task, []).append((ctx.saved_tensors[0], grad))
        return grad, None, None, None


def _conv_arguments(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,  # noqa: A002
                    dilation=1, groups: int = 1) -> tuple:
    """`F.conv2d`'s arguments, positional or by keyword, in its order."""
    return input, weight, bias, stride, padding, dilation, groups


def _output_positions(x: Tensor, weight: Tensor, geometry: Geometry) -> int:
    stride, padding, dilation, _ = geometry
    positions = x.shape[0]
    for size, kernel, s, p, d in zip(x.shape[-2:], weight.shape[-2:], stride, padding, dilation):
        positions *= (size + 2 * p - d * (kernel - 1) - 1) // s + 1
    return positions


def _compute_dtype(weight: Tensor) -> torch.dtype:
    """The dtype a conv computes in with this weight: autocast's, where autocast would cast it."""
    device = weight.device.type
    if torch.is_autocast_enabled(device) and weight.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return weight.dtype


class _DeferConvWeightGrads(TorchFunctionMode):
    """Routes the small convolutions of trained weights (by id) through a tap (module doc)."""

    def __init__(self, trained: set[int]) -> None:
        super().__init__()
        self.trained = trained
        self.deferred: dict[tuple, tuple[_Deferred, Tensor]] = {}  # (weight id, geometry, input shape) -> with token

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.conv2d or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x, weight, bias, stride, padding, dilation, groups = _conv_arguments(*args, **kwargs)
        if id(weight) not in self.trained or isinstance(padding, str) or x.dim() != 4:
            return func(*args, **kwargs)
        geometry = (_pair(stride), _pair(padding), _pair(dilation), groups)
        if _output_positions(x, weight, geometry) >= DEFER_BELOW_POSITIONS:
            return func(*args, **kwargs)
        key = (id(weight), geometry, tuple(x.shape[1:]))
        if key not in self.deferred:
            deferred = _Deferred(weight.detach().to(_compute_dtype(weight)), geometry)
            self.deferred[key] = deferred, _Gather.apply(weight, deferred)
        deferred, token = self.deferred[key]
        output = func(x, deferred.compute_weight, bias, stride, padding, dilation, groups)
        return _Tap.apply(output, token, x.detach(), deferred)


@contextmanager
def batched_weight_grads(module: nn.Module) -> Iterator[None]:
    """Within the block, the weight gradients of `module`'s small trained convolutions are computed
    once over all their calls, when the backward pass reaches them (module doc). Nothing changes
    without grad, under `torch.compile`, or on a GPU (module doc)."""
    parameter = next(module.parameters(), None)
    if (not torch.is_grad_enabled() or torch.compiler.is_compiling()
            or (parameter is not None and parameter.device.type == "cuda")):
        yield
        return
    trained = {id(m.weight) for m in module.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad}
    with _DeferConvWeightGrads(trained):
        yield
