"""What a stage trains, and how: parameter selection, freezing, module modes, optimizer, schedule.

A stage names what trains by groups (`GROUPS`: a name for a set of glob patterns over parameter
names) or by raw glob patterns; every other parameter gets `requires_grad=False`, so autograd
neither computes nor stores its gradient and the optimizer never sees it. A name in `trains` that
matches no parameter of the model is an error: a typo must not silently freeze everything.

Module modes follow the reference: BatchNorm layers stay in eval mode (normalising with, and never
updating, their running statistics) unless the stage says `bn: train`, and then only those whose
own weights train; every other module (dropout) is in train mode.

Parameter names are the model's (`streams.<key>.backbone.layer4.0.conv1.weight`,
`streams.rgb.lstm.*`, `classifier.fc.*`); `rgb:layer4` limits a group to one stream.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import torch
from torch import nn

from fpar.config import StageConfig
from fpar.errors import ConfigError, one_line

# Group -> patterns; "{s}" is the stream key ("*" for every stream).
GROUPS: dict[str, tuple[str, ...]] = {
    "all": ("*",),
    "classifier": ("classifier.*",),
    "lstm": ("streams.{s}.lstm.*",),
    "ms_head": ("streams.{s}.ms_head.*",),
    "feedback": ("streams.{s}.feedback.*",),
    "backbone": ("streams.{s}.backbone.*",),
    "backbone_fc": ("streams.{s}.backbone.fc.*",),
    "conv1": ("streams.{s}.backbone.conv1.*",),
    "layer1": ("streams.{s}.backbone.layer1.*",),
    "layer2": ("streams.{s}.backbone.layer2.*",),
    "layer3": ("streams.{s}.backbone.layer3.*",),
    "layer4": ("streams.{s}.backbone.layer4.*",),
    # Ego-RNN's stage 2: the conv weights of layer4's three blocks; not BN, not the downsample
    "layer4_convs": tuple(f"streams.{{s}}.backbone.layer4.{b}.conv{c}.weight" for b in range(3) for c in (1, 2)),
}
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("multistep", "exponential")
BN_MODES = ("eval", "train")


def patterns(entry: str) -> tuple[str, ...]:
    """The glob patterns of a `trains` entry: a group, `stream:group`, or a pattern itself."""
    stream, _, group = entry.rpartition(":")
    if group in GROUPS:
        return tuple(p.format(s=stream or "*") for p in GROUPS[group])
    if stream:
        raise ConfigError(f"stage parameter group {entry!r}: unknown group {group!r}; groups: {', '.join(GROUPS)}")
    return (entry,)


def select(model: nn.Module, entries: list[str], stage: str) -> list[str]:
    """Names of the parameters matched by `entries`, in model order; an entry matching none is an error."""
    names = [name for name, _ in model.named_parameters()]
    chosen: set[str] = set()
    for entry in entries:
        hits = {n for n in names if any(fnmatchcase(n, p) for p in patterns(entry))}
        if not hits:
            raise ConfigError(f"stage {stage!r}: {entry!r} matches no parameter of this model "
                              f"(groups: {', '.join(GROUPS)}; or a pattern like streams.rgb.lstm.*)")
        chosen |= hits
    return [n for n in names if n in chosen]


def trained_lrs(model: nn.Module, stage: StageConfig) -> dict[str, float]:
    """Parameter name -> LR for everything the stage trains (`group_lr` wins over `trains`)."""
    lrs = {name: stage.lr for name in select(model, stage.trains, stage.name)}
    for entry, lr in stage.group_lr.items():
        lrs.update({name: float(lr) for name in select(model, [entry], stage.name)})
    if not lrs:
        raise ConfigError(f"stage {stage.name!r}: trains nothing (set `trains`)")
    return lrs


def freeze_all_but(model: nn.Module, trained: set[str]) -> None:
    """requires_grad on exactly the `trained` parameters."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in trained)


def set_modes(model: nn.Module, trained: set[str], bn: str) -> None:
    """Train mode everywhere except BatchNorm kept in eval (all of them, unless `bn == "train"`
    and the layer's own weights train)."""
    model.train()
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            own = [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)]
            if not (bn == "train" and own and all(p in trained for p in own)):
                module.eval()


def check_stage(stage: StageConfig) -> None:
    """The stage's option values (names of optimizer, schedule, BN mode; positive epochs, LRs >= 0
    and gamma > 0, which torch does not check for param groups and schedules)."""
    for key, value, known in (("optimizer", stage.optimizer, OPTIMIZERS), ("schedule", stage.schedule, SCHEDULES),
                              ("bn", stage.bn, BN_MODES)):
        if value not in known:
            raise ConfigError(f"stage {stage.name!r}: {key} {value!r}; expected one of {', '.join(known)}")
    if stage.epochs < 1:
        raise ConfigError(f"stage {stage.name!r}: epochs must be at least 1, got {stage.epochs}")
    negative = [lr for lr in (stage.lr, *stage.group_lr.values()) if not lr >= 0]
    if negative:
        raise ConfigError(f"stage {stage.name!r}: learning rates must be >= 0, got {negative[0]}")
    if not stage.gamma > 0:
        raise ConfigError(f"stage {stage.name!r}: gamma must be > 0 (the LR is multiplied by it), got {stage.gamma}")


def check_optimizer(model: nn.Module, stage: StageConfig, lrs: dict[str, float]) -> None:
    """ConfigError now rather than after the run dir is written: torch checks eps, betas and momentum
    when it builds the optimizer and its schedule (a throwaway pair here)."""
    try:
        make_scheduler(make_optimizer(model, stage, lrs), stage)
    except ValueError as exc:
        raise ConfigError(f"stage {stage.name!r}: {one_line(exc)}") from exc


def make_optimizer(model: nn.Module, stage: StageConfig, lrs: dict[str, float]) -> torch.optim.Optimizer:
    """Adam or SGD over the trained parameters, one param group per distinct LR.

    `fused`: one kernel updates all parameters. On this 2-core CPU Adam's default per-tensor loop
    took 22 ms a step for the ConvLSTM's 19M parameters, the fused kernel 5 ms (SGD 6.5 -> 2.9).
    """
    by_lr: dict[float, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if name in lrs:
            by_lr.setdefault(lrs[name], []).append(param)
    groups = [{"params": params, "lr": lr} for lr, params in by_lr.items()]
    if stage.optimizer == "adam":
        return torch.optim.Adam(groups, lr=stage.lr, weight_decay=stage.weight_decay, eps=stage.eps, fused=True)
    return torch.optim.SGD(groups, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay, fused=True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer` takes `state` (its state_dict from state.pt), stays fused, and keeps each
    moment in its parameter's memory layout.

    torch restores each param group's saved options, `fused` and `foreach` included: a state.pt
    from before fused optimizers would turn this one back to the per-tensor loop, while it still
    tells GradScaler that it unscales itself (fp16 then fails in the step). It also keeps the
    saved tensors' strides: a state.pt saved with other memory formats (`train.channels_last`
    switched, or a version of fpar that lays a stream out otherwise) would pair moments and
    parameters with different layouts, which the fused kernel must not be handed."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = optimizer.defaults["fused"], optimizer.defaults["foreach"]
        for param in group["params"]:
            moments = optimizer.state.get(param, {})
            for key, value in moments.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    moments[key] = torch.empty_like(param).copy_(value)


def make_scheduler(optimizer: torch.optim.Optimizer, stage: StageConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: x gamma at each milestone, or x gamma every epoch."""
    if stage.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=stage.gamma)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stage.milestones), gamma=stage.gamma)
