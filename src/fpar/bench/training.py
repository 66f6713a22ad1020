"""(c) Training step time per model and stage, (d) inference latency, (f) achieved FLOP rates.

A training step is what the trainer does per batch (`fpar.train`): forward, `compute_losses`,
backward, Adam step, over the parameters a stage trains (`stages.select`, `freeze_all_but`,
`set_modes`). Variants of the same step, timed in turns on the same batch: fp32, bf16 autocast,
channels_last, both, and `torch.compile`; beside them, for the RGB-stream models, the same model
computed as the reference does (`reference.ReferenceStyle`, fp32), whose outputs are checked
equal to fpar's in fp32 first.

The feedback model is measured against `rgb_ms` training the same parameters (stage 3's set, the
backbone's conv1 included, so both backpropagate through the whole backbone), with the cost of
`two_pass`'s no-grad first pass timed apart and the activation memory autograd keeps per step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from fpar.bench.reference import ReferenceStyle
from fpar.bench.timing import Repeats, device_sync, interleaved, load_average
from fpar.config import ModelConfig, StageConfig
from fpar.errors import one_line
from fpar.models.memory_format import channels_last_input, channels_last_model
from fpar.models.registry import build_model
from fpar.train.losses import compute_losses
from fpar.train.stages import freeze_all_but, make_optimizer, select, set_modes

STAGE1 = ["lstm", "classifier"]
STAGE2 = [*STAGE1, "layer4_convs", "backbone_fc"]
STAGE3 = [*STAGE2, "ms_head", "conv1"]  # + feedback for the feedback model
# (model, feedback mode, stage name, trained groups): the recipes' stages (configs/gtea61, configs/demo)
STAGES = [
    ("rgb", "two_pass", "stage1", STAGE1),
    ("rgb", "two_pass", "stage2", STAGE2),
    ("rgb_ms", "two_pass", "stage2", [*STAGE2, "ms_head"]),
    ("rgb_ms", "two_pass", "stage3_set", STAGE3),
    ("rgb_ms_feedback", "two_pass", "stage3", [*STAGE3, "feedback"]),
    ("rgb_ms_feedback", "previous_frame", "stage3", [*STAGE3, "feedback"]),
    ("flow", "two_pass", "flow", ["all"]),
    ("two_stream", "two_pass", "joint", ["classifier", "rgb:lstm", "rgb:layer4_convs", "rgb:backbone_fc", "flow:layer4"]),
]
VARIANTS = ("fp32", "bf16", "channels_last", "bf16_channels_last", "compile")
EQUAL_TOLERANCE = 1e-4  # relative to the largest logit, fp32 fpar vs reference style


@dataclass(frozen=True)
class Scale:
    """One size of the bench: the demo's recipes (112, mem 128, batch 8; configs/demo) or the reference's (224)."""

    name: str
    image_size: int
    frames: int
    batch: int
    mem_size: int
    classes: int = 8
    flow_stack: int = 5


def make_batch(cfg: ModelConfig, batch: int, device: torch.device) -> dict[str, Tensor]:
    """A random batch of every input key (the data layer's shapes; values do not change the cost)."""
    size, steps = cfg.image_size, cfg.frames
    return {"rgb": torch.randn(batch, steps, 3, size, size, device=device),
            "flow": torch.randn(batch, 2 * cfg.flow_stack, size, size, device=device),
            "mmaps": torch.randint(0, 2, (batch, steps, size, size), device=device),
            "label": torch.randint(0, cfg.num_classes, (batch,), device=device)}


def model_config(name: str, mode: str, scale: Scale) -> ModelConfig:
    return ModelConfig(name=name, num_classes=scale.classes, frames=scale.frames, flow_stack=scale.flow_stack,
                       image_size=scale.image_size, mem_size=scale.mem_size, feedback_mode=mode)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def step_function(forward: Callable, model: nn.Module, trains: list[str], batch: dict[str, Tensor],
                  device: torch.device, bf16: bool = False) -> Callable[..., None]:
    """One training step of `forward` (the model, compiled or reference-style) on `batch`, or on
    the batch it is called with."""
    trained = select(model, trains, "bench")
    freeze_all_but(model, set(trained))
    optimizer = make_optimizer(model, StageConfig(name="bench", trains=trains, lr=1e-6), {n: 1e-6 for n in trained})

    def step(inputs: dict[str, Tensor] = batch) -> None:
        set_modes(model, set(trained), "eval")
        with autocast(device, bf16):
            losses = compute_losses(forward(inputs), inputs, alpha=1.0)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()

    return step


def channels_last(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """`batch` as the trainer gives it with `train.channels_last` (`models.memory_format`)."""
    return {k: channels_last_input(v) for k, v in batch.items()}


def outputs_equal(model: nn.Module, batch: dict[str, Tensor]) -> float:
    """Largest |fpar - reference-style| logit in fp32, eval mode, relative to the largest logit.

    With TF32 off: cuDNN may run fp32 convolutions in TF32 (10-bit mantissa) by default, and picks
    its algorithm per batch shape, so on a GPU the per-frame and batched forms differed by up to
    4% of the largest logit with it on (H200, torch 2.11) and agree in true fp32."""
    model.eval()
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ours, theirs = model(batch).logits, ReferenceStyle(model)(batch).logits
    return float((ours - theirs).abs().max() / ours.abs().max().clamp_min(1e-12))


def saved_megabytes(run: Callable[[], object]) -> float:
    """MB of tensors autograd keeps for the backward pass during `run` (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values()) / 2**20


def bench_training(scale: Scale, device: torch.device, repeats: Repeats, variants: tuple[str, ...],
                   stages=STAGES) -> list[dict]:
    """Section (c) at one scale: a row per (model, stage) with each variant's step time."""
    rows = []
    for name, mode, stage, trains in stages:
        torch.manual_seed(0)
        cfg = model_config(name, mode, scale)
        model = build_model(cfg).to(device)
        batch = make_batch(cfg, scale.batch, device)
        rgb_only = set(model.streams) == {"rgb"}
        candidates: dict[str, Callable] = {}
        if rgb_only:
            candidates["reference"] = step_function(ReferenceStyle(model), model, trains, batch, device)
        for variant in variants:
            if variant == "compile" and name != "rgb":
                continue  # a compile costs minutes on a CPU: the `rgb` stages stand for the rest
            copy = build_model(cfg).to(device)
            copy.load_state_dict(model.state_dict())
            inputs = batch
            if "channels_last" in variant:  # as the trainer does
                copy = channels_last_model(copy)
                inputs = channels_last(batch)
            if variant == "compile":
                torch._dynamo.reset()  # model code is shared across sizes: no dynamic-shape recompiles
            forward = torch.compile(copy, dynamic=False) if variant == "compile" else copy
            candidates[variant] = step_function(forward, copy, trains, inputs, device, bf16="bf16" in variant)
        try:
            seconds = interleaved(candidates, repeats, device_sync(device))
        except Exception as exc:  # noqa: BLE001 - a compiler failure costs its variant, not the run
            if "compile" not in candidates:
                raise
            failed = f"compile failed: {one_line(exc)[:300]}"
            candidates.pop("compile")
            seconds = interleaved(candidates, repeats, device_sync(device))
        else:
            failed = None
        row = {"model": name, "feedback_mode": mode if name == "rgb_ms_feedback" else None, "stage": stage,
               "scale": scale.name, "batch": scale.batch, "step_s": seconds,
               "clips_per_s": {k: scale.batch / v for k, v in seconds.items()}, "load_average": load_average()}
        if failed:
            row["failed"] = failed
        if rgb_only:
            row["speedup_vs_reference"] = {k: seconds["reference"] / v for k, v in seconds.items() if k != "reference"}
            row["max_relative_logit_difference"] = outputs_equal(model, batch)
            row["equal_within_tolerance"] = row["max_relative_logit_difference"] <= EQUAL_TOLERANCE
            row["saved_activations_mb"] = saved_megabytes(candidates["fp32"])
        if name == "rgb_ms_feedback" and mode == "two_pass":
            row["pass1_s"] = pass1_seconds(model, batch, repeats, device)
        rows.append(row)
    return rows


def pass1_seconds(model: nn.Module, batch: dict[str, Tensor], repeats: Repeats, device: torch.device) -> float:
    """Seconds of the feedback model's first pass alone (no grad: the trunk from the stem that pass 2
    also uses, and Conv100)."""
    stream = model.streams["rgb"]
    with torch.no_grad():
        stem = stream.backbone.stem(batch["rgb"].flatten(0, 1))

    def first_pass() -> None:
        with torch.no_grad():
            stream.ms_head.embed(stream.backbone.trunk(stem).layer4)

    return interleaved({"pass1": first_pass}, repeats, device_sync(device))["pass1"]


def feedback_costs(rows: list[dict]) -> dict:
    """The feedback model's step against rgb_ms training the same parameters, per scale and variant."""
    out = {}
    for scale in sorted({r["scale"] for r in rows}):
        at = {(r["model"], r["feedback_mode"], r["stage"]): r for r in rows if r["scale"] == scale}
        base = at.get(("rgb_ms", None, "stage3_set"))
        if base is None:
            continue
        for mode in ("two_pass", "previous_frame"):
            row = at.get(("rgb_ms_feedback", mode, "stage3"))
            if row is None:
                continue
            entry = {f"ratio_{v}": row["step_s"][v] / base["step_s"][v]
                     for v in row["step_s"] if v != "reference" and v in base["step_s"]}
            entry["saved_activations_mb"] = row["saved_activations_mb"]
            entry["rgb_ms_saved_activations_mb"] = base["saved_activations_mb"]
            if "pass1_s" in row:
                entry["pass1_share_fp32"] = row["pass1_s"] / row["step_s"]["fp32"]
            out[f"{scale}/{mode}"] = entry
    return out


def bench_inference(scale: Scale, device: torch.device, repeats: Repeats, matmul: dict[str, float]) -> list[dict]:
    """Sections (d) and (f): per model, latency of one clip (eval, no grad) in fp32 and bf16, its
    FLOPs (torch's FlopCounterMode) and the share of the measured matmul rate it reaches."""
    rows = []
    for name in ("rgb", "rgb_ms", "rgb_ms_feedback", "flow", "two_stream"):
        torch.manual_seed(0)
        cfg = model_config(name, "two_pass", scale)
        model = build_model(cfg).to(device).eval()
        batch = make_batch(cfg, 1, device)

        def infer(bf16: bool) -> Callable[[], object]:
            def run() -> object:
                with torch.no_grad(), autocast(device, bf16):
                    return model(batch)
            return run

        with FlopCounterMode(display=False) as counter:
            infer(False)()
        flops = counter.get_total_flops()
        seconds = interleaved({"fp32": infer(False), "bf16": infer(True)}, repeats, device_sync(device))
        rates = {k: flops / v / 1e9 for k, v in seconds.items()}
        rows.append({"model": name, "scale": scale.name, "latency_s": seconds, "gflop_per_clip": flops / 1e9,
                     "achieved_gflops": rates,
                     "fraction_of_matmul": {k: rates[k] / matmul[k] for k in rates}, "load_average": load_average()})
    return rows


