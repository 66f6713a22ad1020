"""What a stage trains: groups and patterns, BN modes, optimizer groups, schedules; the shipped recipes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from fpar.config import ModelConfig, StageConfig, WarmupRecipe, load_recipe
from fpar.errors import ConfigError
from fpar.models.backbone import load_resnet34
from fpar.models.registry import build_model
from fpar.train.stages import load_optimizer_state, make_optimizer, make_scheduler, select, set_modes, trained_lrs

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*/*.yaml"))


def model(name: str = "rgb", size: int = 64) -> torch.nn.Module:
    return build_model(ModelConfig(name=name, num_classes=3, frames=2, image_size=size, mem_size=4))


def test_stage2_set_is_layer4_block_convs_and_backbone_fc_only() -> None:
    names = select(model(), ["layer4_convs", "backbone_fc"], "s2")
    prefix = "streams.rgb.backbone."
    assert names == [f"{prefix}layer4.{b}.conv{c}.weight" for b in range(3) for c in (1, 2)] + [
        f"{prefix}fc.weight", f"{prefix}fc.bias"]  # no BN, no downsample


def test_stream_prefix_and_raw_pattern() -> None:
    two = model("two_stream")
    flow = select(two, ["flow:layer4"], "s")
    assert flow and all(n.startswith("streams.flow.backbone.layer4.") for n in flow)
    assert any(".bn" in n for n in flow) and any("downsample" in n for n in flow)  # the whole layer
    assert select(two, ["streams.rgb.lstm.*"], "s") == select(two, ["rgb:lstm"], "s")


@pytest.mark.parametrize("entry", ["lstmm", "rgb:nosuchgroup", "streams.rgb.nothing.*"])
def test_entry_matching_nothing_is_an_error(entry: str) -> None:
    with pytest.raises(ConfigError, match="nosuchgroup|matches no parameter"):
        select(model(), [entry], "s1")


def test_lstm_of_flow_model_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'lstm' matches no parameter"):
        select(model("flow"), ["lstm"], "s1")


def test_group_lr_makes_its_own_param_group() -> None:
    two = model("two_stream")
    stage = StageConfig(trains=["classifier", "rgb:lstm"], group_lr={"flow:layer4": 1e-4}, optimizer="sgd", lr=1e-2)
    lrs = trained_lrs(two, stage)
    optimizer = make_optimizer(two, stage, lrs)
    by_lr = {group["lr"]: len(group["params"]) for group in optimizer.param_groups}
    assert by_lr == {1e-4: len(select(two, ["flow:layer4"], "s")),
                     1e-2: len(select(two, ["classifier", "rgb:lstm"], "s"))}
    assert isinstance(optimizer, torch.optim.SGD)


def test_schedules_multistep_and_exponential() -> None:
    net = torch.nn.Linear(1, 1)
    for stage, expected in ((StageConfig(lr=1.0, milestones=[2], gamma=0.1), [1.0, 1.0, 0.1, 0.1]),
                            (StageConfig(lr=1.0, schedule="exponential", gamma=0.5), [1.0, 0.5, 0.25, 0.125])):
        optimizer = make_optimizer(net, stage, {n: stage.lr for n, _ in net.named_parameters()})
        scheduler = make_scheduler(optimizer, stage)
        seen = []
        for _ in range(4):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert seen == pytest.approx(expected)


def test_bn_train_only_where_its_weights_train() -> None:
    two = model("two_stream")
    trained = set(select(two, ["flow:layer4", "rgb:layer4_convs"], "s"))
    set_modes(two, trained, "train")
    bns = {n: m.training for n, m in two.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert all(mode == n.startswith("streams.flow.backbone.layer4.") for n, mode in bns.items())
    set_modes(two, trained, "eval")
    assert not any(m.training for m in two.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert two.classifier.dropout.training  # dropout stays in train mode


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_recipe_loads_and_every_stage_names_parameters(path: Path) -> None:
    if path.stem == "warmup":  # the demo's warm-up trains a bare torchvision ResNet-34 (fpar.train.warmup)
        recipe = load_recipe(path, schema=WarmupRecipe)
        assert len(recipe.stages) == 1 and trained_lrs(load_resnet34(), recipe.stages[0])
        return
    recipe = load_recipe(path)
    assert recipe.model.name == path.stem and recipe.stages
    net = build_model(ModelConfig(name=recipe.model.name, num_classes=3, frames=2, image_size=64,
                                  mem_size=recipe.model.mem_size))
    for stage in recipe.stages:
        assert trained_lrs(net, stage)
    if path.parent.name == "gtea61":
        assert recipe.data.frames == 7 and recipe.data.batch_size == 32 and recipe.data.image_size == 224


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_optimizer_state_saved_in_another_memory_format_resumes_the_same_steps(optimizer: str) -> None:
    """Moments saved with channels_last weights, loaded for NCHW ones, take the parameter's layout,
    and the resumed steps equal those of the run that never stopped: the fused kernels pair
    parameter, gradient and moments element by element in memory (0.25-0.66 apart otherwise)."""
    stage = StageConfig(name="s", trains=["all"], lr=0.1, optimizer=optimizer, momentum=0.9)
    torch.manual_seed(0)
    saved_as = torch.nn.Conv2d(4, 6, 3).to(memory_format=torch.channels_last)
    grads = [torch.randn(6, 4, 3, 3) for _ in range(3)]
    running = make_optimizer(saved_as, stage, {"weight": 0.1})
    saved_as.weight.grad = grads[0].contiguous(memory_format=torch.channels_last)
    running.step()
    resumed = torch.nn.Conv2d(4, 6, 3)  # NCHW, as a run with other memory formats builds it
    resumed.load_state_dict(saved_as.state_dict())
    optimizer_after = make_optimizer(resumed, stage, {"weight": 0.1})
    saved = io.BytesIO()
    torch.save(running.state_dict(), saved)  # as state.pt: the running optimizer's tensors are not shared
    saved.seek(0)
    load_optimizer_state(optimizer_after, torch.load(saved, weights_only=True))
    for moment in optimizer_after.state[resumed.weight].values():
        if moment.dim() == 4:
            assert moment.stride() == resumed.weight.stride()
    for grad in grads[1:]:
        saved_as.weight.grad = grad.contiguous(memory_format=torch.channels_last)
        resumed.weight.grad = grad.contiguous()
        running.step()
        optimizer_after.step()
    torch.testing.assert_close(resumed.weight, saved_as.weight)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_optimizer_state_saved_unfused_loads_fused(optimizer: str) -> None:
    """A state.pt from before fused optimizers (groups saved with fused=None) must not turn the
    optimizer back to the per-tensor loop: GradScaler would still hand it the unscaling."""
    model = torch.nn.Linear(3, 2)
    stage = StageConfig(name="s", trains=["all"], lr=0.1, optimizer=optimizer)
    old = make_optimizer(model, stage, {n: 0.1 for n, _ in model.named_parameters()})
    state = old.state_dict()
    for group in state["param_groups"]:
        group["fused"] = None
    new = make_optimizer(model, stage, {n: 0.1 for n, _ in model.named_parameters()})
    load_optimizer_state(new, state)
    assert all(group["fused"] is True for group in new.param_groups)
    model(torch.randn(4, 3)).sum().backward()
    new.step()  # the fused kernel runs
