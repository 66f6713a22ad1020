"""`fpar demo`: the main job, end to end on built-in synthetic data.

Each step reads only what the step before wrote (DESIGN section 1): synthetic raw videos ->
`prepare` (frames, warp flow, motion maps) -> `data check` of the prepared root -> a look at the
models that will train on it. Later steps (training, report, CAM) join as they are built. The demo
owns no logic of its own: it calls the same library functions as the verbs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from fpar.config import DataConfig, ModelConfig
from fpar.data.check import check_root, print_report
from fpar.data.datasets import make_dataset
from fpar.data.layout import DEMO_CONTACT_SHEET_NAME, DEMO_PREPARED_DIR, DEMO_SYNTH_DIR, Discovery, class_names
from fpar.data.preview import contact_sheet
from fpar.data.synthetic import SynthConfig, synthesize
from fpar.errors import FparError
from fpar.models import build_model, list_models
from fpar.prepare import PrepareSettings, evaluate, prepare


def run_demo(out: Path, tiny: bool = False, seed: int = 0, console: Console | None = None) -> dict[str, Path]:
    """Run every step of the demo into `out` (default sizes, or the smallest with `tiny`); return
    what it wrote where (the final table)."""
    console = console or Console()
    out = Path(out)
    raw, prepared = out / DEMO_SYNTH_DIR, out / DEMO_PREPARED_DIR
    synth_cfg = dataclasses.replace(SynthConfig.tiny() if tiny else SynthConfig(), seed=seed)

    console.rule("1. synthetic egocentric videos (fpar synth)")
    summary = synthesize(raw, synth_cfg)
    console.print(f"{summary.videos} videos of {len(summary.classes)} classes by users {', '.join(summary.users)}, "
                  f"{summary.frames} frames at {summary.width}x{summary.height}, in {summary.seconds:.1f} s -> {raw}")
    sheet = contact_sheet(raw, out / DEMO_CONTACT_SHEET_NAME)
    console.print(f"contact sheet of frames and their true moving masks: {sheet}")

    console.rule("2. frames, warp flow and motion maps (fpar prepare)")
    report = prepare(summary.labels, prepared, PrepareSettings(size=(summary.width, summary.height)))
    for line in report.summary():
        console.print(line, highlight=False)
    if report.failed:
        raise FparError(f"{prepared}: {len(report.failed)} synthetic videos failed to prepare (see above)")
    quality = evaluate(summary.labels, prepared)
    for line in quality.lines():
        console.print(line, highlight=False)
    quality_path = quality.save(prepared)  # the same file as `fpar prepare --evaluate`

    console.rule("3. the prepared root (fpar data check)")
    check = check_root(prepared, frames=DataConfig.frames, flow_stack=DataConfig.flow_stack)
    print_report(check, console)
    if not check.clean:
        raise FparError(f"{prepared}: the prepared root has problems (listed above)")

    console.rule("4. the five models on one batch of the prepared data (untrained: shapes only)")
    image_size = 112 if tiny else 224
    _models_on_one_batch(check.discovery, DataConfig(root=str(prepared), image_size=image_size), console)

    artefacts = {"synthetic videos": raw, "contact sheet": sheet, "prepared root": prepared,
                 "prepare quality": quality_path}
    _print_artefacts(artefacts, console)
    return artefacts


def _models_on_one_batch(found: Discovery, data: DataConfig, console: Console) -> None:
    """Build each registered model for this root's classes and run it on a batch of its own dataset.

    This shows the data -> model path is whole (each model's `input_keys` select its dataset); it
    is not a result: the weights are random and no accuracy is printed.
    """
    classes = class_names(found.samples, data.exclude_classes)
    table = Table(caption="shapes as B x T x C x H x W (flow: B x 2L x H x W)")
    for column in ("model", "parameters", "batch", "logits", "attention", "ms_logits"):
        table.add_column(column)
    torch.manual_seed(0)
    for name in list_models():
        model = build_model(ModelConfig(name=name, num_classes=len(classes), frames=data.frames,
                                        flow_stack=data.flow_stack, image_size=data.image_size)).eval()
        dataset = make_dataset(found.samples, classes, model.input_keys, data, train=True)
        batch = next(iter(DataLoader(dataset, batch_size=2)))
        with torch.no_grad():
            output = model(batch)
        shapes = " ".join(f"{key} {_shape(batch[key])}" for key in model.input_keys)
        table.add_row(name, f"{sum(p.numel() for p in model.parameters()):,}", shapes, _shape(output.logits),
                      _shape(output.attention), _shape(output.ms_logits))
    console.print(table)


def _shape(tensor: torch.Tensor | None) -> str:
    return "-" if tensor is None else "x".join(map(str, tensor.shape))


def _print_artefacts(artefacts: dict[str, Path], console: Console) -> None:
    table = Table(title="fpar demo wrote")
    table.add_column("what")
    table.add_column("where")
    for what, where in artefacts.items():
        table.add_row(what, str(where))
    console.print(table)
