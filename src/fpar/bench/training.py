"""(c) Training step time per model and stage, (d) inference latency, (f) achieved FLOP rates.

A training step is what the trainer does per batch (`fpar.train`): forward, `compute_losses`,
backward, Adam step, over the parameters a stage trains (`stages.select`, `freeze_all_but`,
`set_modes`). Variants of the same step, timed in turns on the same batch: fp32, bf16 autocast,
channels_last, both, and `torch.compile`; beside them, for the RGB-stream models, the same model
computed as the reference does (`reference.ReferenceStyle`, fp32), whose logits are checked
equal to fpar's in fp64 (`outputs_differ`; the fp32 difference is reported beside it).

The feedback model is measured against `rgb_ms` training the same parameters (stage 3's set, the
backbone's conv1 included, so both backpropagate through the whole backbone), with the cost of
`two_pass`'s no-grad first pass timed apart and the activation memory autograd keeps per step.
`previous_frame` gets its floor beside it: the part of its forward that must run frame by frame
(`frame_chain_seconds`), the least x rgb_ms that any exact implementation can reach.
"""

from __future__ import annotations

import copy
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
from fpar.train.cuda_graphs import GraphedStep
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
FEEDBACK_STAGES = ("stage3_set", "stage3")  # rgb_ms's and the feedback model's rows `feedback_costs` compares
VARIANTS = ("fp32", "bf16", "channels_last", "bf16_channels_last", "compile")
# on a GPU also: whole steps replayed from a CUDA graph (`train.cuda_graphs`), fp32, NCHW and channels_last
CUDA_VARIANTS = ("cuda_graphs", "channels_last_cuda_graphs")
EQUAL_TOLERANCE = 1e-9  # relative to the largest logit, fpar vs reference style in fp64 (`outputs_differ`)


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
                  device: torch.device, bf16: bool = False, graphed: bool = False) -> Callable[..., object]:
    """One training step of `forward` (the model, compiled or reference-style) on `batch`, or on
    the batch it is called with; `graphed`: replayed from a CUDA graph as the trainer does it
    (`train.cuda_graphs`, fp32 only here)."""
    trained = select(model, trains, "bench")
    freeze_all_but(model, set(trained))
    optimizer = make_optimizer(model, StageConfig(name="bench", trains=trains, lr=1e-6), {n: 1e-6 for n in trained})

    def step(inputs: dict[str, Tensor] = batch) -> Tensor:
        set_modes(model, set(trained), "eval")
        with autocast(device, bf16):
            losses = compute_losses(forward(inputs), inputs, alpha=1.0)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        return losses.total

    if not graphed:
        return step
    replayed = GraphedStep(step, optimizer, model)
    replayed(batch)  # the warm-up, then the capture: what the timer sees are replays
    replayed(batch)
    return lambda inputs=batch: replayed(inputs)


def channels_last(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """`batch` as the trainer gives it with `train.channels_last` (`models.memory_format`)."""
    return {k: channels_last_input(v) for k, v in batch.items()}


def outputs_differ(model: nn.Module, batch: dict[str, Tensor], dtype: torch.dtype) -> float:
    """Largest |fpar - reference-style| logit in `dtype` (a copy of `model`), eval mode, relative
    to the largest logit.

    fp64 is the equality check: there the forms agreed to 3e-13 or better (session 7, CPU, both sizes),
    so any real difference stands out. In fp32 they differ by rounding wherever fpar reorders the
    arithmetic: the feedback branch's convolution before its upsampling puts F' a few ulps off the
    design's order, and once the bench's Adam steps have woken the branch, the backbone and the
    frame chain carry that to 2e-5..1.2e-4 of the largest logit (0 with the design's order put
    back); models without the branch agree exactly in fp32 on this CPU (not on a GPU: see below).
    With TF32 off: cuDNN may run fp32 convolutions in TF32 (10-bit mantissa) by default, and picks
    its algorithm per batch shape, so on a GPU the per-frame and batched forms differed by up to
    4% of the largest logit with it on (H200, torch 2.11) and agree in true fp32."""
    twin = copy.deepcopy(model).to(dtype).eval()
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ours, theirs = twin(inputs).logits, ReferenceStyle(twin)(inputs).logits
    return float((ours - theirs).abs().max() / ours.abs().max().clamp_min(1e-30))


def saved_megabytes(run: Callable[[], object]) -> float:
    """MB of tensors autograd keeps for the backward pass during `run` (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values()) / 2**20


def laid_out(model: nn.Module, batch: dict[str, Tensor], variant: str) -> tuple[nn.Module, dict[str, Tensor]]:
    """`model` and `batch` laid out as `variant` trains them (channels_last as the trainer does)."""
    if "channels_last" in variant:
        return channels_last_model(model), channels_last(batch)
    return model, batch


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
        copies: dict[str, tuple[nn.Module, dict[str, Tensor]]] = {}
        if rgb_only:
            candidates["reference"] = step_function(ReferenceStyle(model), model, trains, batch, device)
        for variant in variants:
            if variant == "compile" and name != "rgb":
                continue  # a compile costs minutes on a CPU: the `rgb` stages stand for the rest
            twin = build_model(cfg).to(device)
            twin.load_state_dict(model.state_dict())
            twin, inputs = laid_out(twin, batch, variant)
            if variant == "compile":
                torch._dynamo.reset()  # model code is shared across sizes: no dynamic-shape recompiles
            forward = torch.compile(twin, dynamic=False) if variant == "compile" else twin
            candidates[variant] = step_function(forward, twin, trains, inputs, device, bf16="bf16" in variant,
                                                graphed="cuda_graphs" in variant)
            if variant != "compile" and "cuda_graphs" not in variant:  # the frame chain's floor is eager's
                copies[variant] = (twin, inputs)
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
            differences = {name: outputs_differ(model, batch, dtype)
                           for name, dtype in (("fp32", torch.float32), ("fp64", torch.float64))}
            row["max_relative_logit_difference"] = differences
            row["equal_within_tolerance"] = differences["fp64"] <= EQUAL_TOLERANCE
            row["saved_activations_mb"] = saved_megabytes(candidates["fp32"])
        if name == "rgb_ms_feedback" and mode == "two_pass":
            row["pass1_s"] = pass1_seconds(model, batch, repeats, device)
        if name == "rgb_ms_feedback" and mode == "previous_frame":
            row["frame_chain"] = {variant: frame_chain_seconds(copies[variant], repeats, device, "bf16" in variant)
                                  for variant in variants if variant in copies}
        rows.append(row)
    return rows


def feedback_turns(scale: Scale, device: torch.device, repeats: Repeats, variants: tuple[str, ...]) -> dict:
    """Per variant, `rgb_ms`'s stage 3 set and both feedback modes timed in one set of turns: the
    steps `feedback_costs` divides. Their rows in (c) are timed in turns of their own, so a ratio
    across rows also carried the machine's drift between them; timing all fifteen steps of the
    three rows (the reference and four variants each) in one set of turns instead held 15 GB and
    slowed the 224 steps threefold. So each variant's three steps share turns, three models at a
    time."""
    out = {}
    for variant in (v for v in variants if v != "compile"):
        steps = {}
        for name, mode, stage, trains in STAGES:
            if stage not in FEEDBACK_STAGES:
                continue
            torch.manual_seed(0)  # the weights and batch of the row in (c)
            cfg = model_config(name, mode, scale)
            model = build_model(cfg).to(device)
            model, inputs = laid_out(model, make_batch(cfg, scale.batch, device), variant)
            steps[mode if name == "rgb_ms_feedback" else name] = step_function(
                model, model, trains, inputs, device, bf16="bf16" in variant, graphed="cuda_graphs" in variant)
        out[variant] = interleaved(steps, repeats, device_sync(device))
    return out


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


def frame_chain_seconds(model_and_batch: tuple[nn.Module, dict[str, Tensor]], repeats: Repeats,
                        device: torch.device, bf16: bool) -> dict[str, float]:
    """The floor of `previous_frame`'s per-frame form, timed: its trunk and Conv100, forward only
    without grad, run frame by frame at batch B (`chain_s`) and once on the B*T frames (`batched_s`),
    the batched one in the layout rgb_ms's step runs it (an RGB stream's NCHW weights,
    `models.memory_format`).

    Frame t's modulation needs frame t-1's whole modulated trunk, so `chain_s - batched_s` is
    forward time that running the frames' kernels one after another cannot batch away, even with a
    backward over all frames at once: such a step costs at least rgb_ms's step plus it
    (`feedback_costs`), assuming autograd adds no less per op frame by frame than batched. What it
    does not bound: kernels overlapped or launched as one graph (CUDA streams, CUDA graphs), where
    a GPU's per-frame cost is mostly launches; and the feedback branch, rgb_ms's missing work,
    which was timed alone too (session 7) but in fp32 took longer than the whole gap between the
    two steps (layout-dependent slow paths of the upsampling), so it is left out."""
    model, batch = model_and_batch
    chained = model.streams["rgb"]
    batched = copy.deepcopy(chained)
    batched.backbone.to(memory_format=torch.contiguous_format)
    with torch.no_grad(), autocast(device, bf16):
        frames = [chained.backbone.stem(frame) for frame in batch["rgb"].unbind(1)]
        stem = batched.backbone.stem(batch["rgb"].flatten(0, 1))

    def trunk_and_conv100(stream: nn.Module, stems: list[Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), autocast(device, bf16):
                for x in stems:
                    stream.ms_head.embed(stream.backbone.trunk(x).layer4)
        return run

    return interleaved({"chain_s": trunk_and_conv100(chained, frames),
                        "batched_s": trunk_and_conv100(batched, [stem])}, repeats, device_sync(device))


def feedback_costs(rows: list[dict], turns: dict[str, dict[str, dict[str, float]]]) -> dict:
    """The feedback model's step against rgb_ms training the same parameters, per scale and variant:
    ratios of the steps timed in one set of turns (`turns`: scale -> `feedback_turns`), with the
    rows' memory, pass-1 and frame-chain figures beside them."""
    out = {}
    for scale, by_variant in sorted(turns.items()):
        at = {(r["model"], r["feedback_mode"], r["stage"]): r for r in rows if r["scale"] == scale}
        base = at[("rgb_ms", None, "stage3_set")]
        for mode in ("two_pass", "previous_frame"):
            row = at[("rgb_ms_feedback", mode, "stage3")]
            entry: dict = {"step_s": {v: {"rgb_ms": t["rgb_ms"], mode: t[mode]} for v, t in by_variant.items()}}
            entry.update({f"ratio_{v}": t[mode] / t["rgb_ms"] for v, t in by_variant.items()})
            entry["saved_activations_mb"] = row["saved_activations_mb"]
            entry["rgb_ms_saved_activations_mb"] = base["saved_activations_mb"]
            if "pass1_s" in row:
                entry["pass1_share_fp32"] = row["pass1_s"] / row["step_s"]["fp32"]
            for variant, chain in row.get("frame_chain", {}).items():
                if variant in by_variant:  # the least x rgb_ms an exact previous_frame can reach
                    step = by_variant[variant]["rgb_ms"]
                    entry[f"floor_{variant}"] = (step + chain["chain_s"] - chain["batched_s"]) / step
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


