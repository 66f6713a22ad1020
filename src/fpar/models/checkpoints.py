"""Checkpoints: one file that rebuilds its model alone, read weights-only.

A checkpoint is a dict of plain data and tensors (so `torch.load(weights_only=True)` reads it):

    format, format_version, fpar_version,
    model_name, config (ModelConfig as a dict: image size, N, L, ... live there),
    class_names, normalization ({input key: {"mean": [...], "std": [...]}}),
    state_dict, extra (the trainer's optimizer/scheduler/RNG state, or {}).

The app and CAM call `load_model(path)` and need nothing else. The trainer's partial starts
(`init_from`) use `load_partial_state`, which loads what fits and reports the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fpar import __version__
from fpar.config import ModelConfig, check_model_config, from_dict, to_dict
from fpar.errors import CheckpointError, FparError
from fpar.io.atomic import write_atomic
from fpar.models.registry import build_model
from fpar.models.safe_load import load_weights_only, one_line

FORMAT = "fpar-checkpoint"
FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """Everything but the weights: enough to rebuild the model and to feed it as it was trained."""

    config: ModelConfig
    class_names: list[str]
    normalization: dict[str, dict[str, list[float]]]  # per input key ("rgb", "flow"): mean, std
    fpar_version: str = __version__

    @property
    def model_name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def frames(self) -> int:
        """N, RGB frames per clip."""
        return self.config.frames

    @property
    def flow_stack(self) -> int:
        """L, flow frames per stack."""
        return self.config.flow_stack


@dataclass
class Checkpoint:
    """A checkpoint as read from disk."""

    meta: CheckpointMeta
    state_dict: dict[str, Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyReport:
    """What `load_partial_state` could not load: names absent, names unknown, shapes that differ."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    shapes: dict[str, str] = field(default_factory=dict)  # mismatched name: "(given) vs (model's)"

    def __str__(self) -> str:
        mismatched = [f"{k} {self.shapes[k]}" if k in self.shapes else k for k in self.mismatched]
        groups = {"missing": self.missing, "unexpected": self.unexpected, "shape mismatch": mismatched}
        parts = [f"{label}: {', '.join(keys)}" for label, keys in groups.items() if keys]
        return "; ".join(parts) or "all keys matched"


def save_checkpoint(
    path: str | Path, model: nn.Module, meta: CheckpointMeta, extra: dict[str, Any] | None = None
) -> None:
    """Write the checkpoint atomically (a temporary file renamed), so a kill never leaves half."""
    if len(meta.class_names) != meta.config.num_classes:
        raise CheckpointError(
            f"{path}: {len(meta.class_names)} class names for a model of {meta.config.num_classes} classes"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fpar_version": meta.fpar_version,
        "model_name": meta.model_name,
        "config": to_dict(meta.config),
        "class_names": list(meta.class_names),
        "normalization": meta.normalization,
        "state_dict": model.state_dict(),
        "extra": dict(extra or {}),
    }
    write_atomic(path, lambda handle: torch.save(payload, handle))


PLAIN = (str, int, float, bool, type(None))


def _plain_config(values: object) -> dict[str, Any]:
    """The header's `config` as plain {field: scalar}. A string holding `${...}` is refused: OmegaConf
    would resolve it while rebuilding the ModelConfig, and `${oc.env:VAR}` reads the environment."""
    if not isinstance(values, Mapping) or not all(
            isinstance(k, str) and isinstance(v, PLAIN) for k, v in values.items()):
        raise CheckpointError("config is not a mapping of field names to plain values")
    if any(isinstance(v, str) and "${" in v for v in values.values()):
        raise CheckpointError("config holds an interpolation (${...}); fpar writes none")
    return dict(values)


def _statistics(values: object, config: ModelConfig) -> dict[str, dict[str, list[float]]]:
    """The header's `normalization`: per input key, finite means and positive stds, one value or
    one per channel of that input (the RGB frame's 3, the flow stack's 2L)."""
    channels = {"rgb": 3, "flow": 2 * config.flow_stack}
    if not isinstance(values, Mapping) or not set(values) <= set(channels):
        raise CheckpointError(f"normalization is not a mapping of input keys ({', '.join(channels)}) to statistics")
    checked = {}
    for key, stats in values.items():
        parts = {part: _finite_floats(stats.get(part), channels[key]) for part in ("mean", "std")} \
            if isinstance(stats, Mapping) and set(stats) == {"mean", "std"} else {}
        if None in parts.values() or not parts or min(parts["std"]) <= 0:
            raise CheckpointError(f"normalization of {key!r} is not a mean and a positive std "
                                  f"of 1 or {channels[key]} finite numbers")
        checked[key] = parts
    return checked


def _finite_floats(values: object, channels: int) -> list[float] | None:
    """`values` as 1 or `channels` finite floats, or None (an int past float's range included)."""
    if not isinstance(values, (list, tuple)) or len(values) not in (1, channels):
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        return None
    try:
        floats = [float(x) for x in values]
    except OverflowError:
        return None
    return floats if all(math.isfinite(x) for x in floats) else None


def _meta_from(path: Path, payload: dict[str, Any]) -> CheckpointMeta:
    """The header, every part type-checked: a checkpoint is untrusted input (it may come from anyone)."""
    try:
        config = check_model_config(from_dict(ModelConfig, _plain_config(payload["config"])))
        names = payload["class_names"]
        if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
            raise CheckpointError("class_names is not a list of strings")
        meta = CheckpointMeta(
            config=config,
            class_names=list(names),
            normalization=_statistics(payload["normalization"], config),
            fpar_version=str(payload["fpar_version"]),
        )
    except (KeyError, TypeError, FparError) as exc:
        raise CheckpointError(f"{path}: fpar checkpoint with a broken header ({one_line(exc)})") from exc
    if payload.get("model_name") != meta.model_name or len(meta.class_names) != config.num_classes:
        raise CheckpointError(f"{path}: fpar checkpoint whose model name or class names disagree with its config")
    return meta


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Read and check a checkpoint; anything else (truncated, foreign, unsafe) is a CheckpointError."""
    path = Path(path)
    payload = load_weights_only(path, "checkpoint", map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fpar checkpoint (a torch file without fpar's header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')}; "
            f"this fpar ({__version__}) reads version {FORMAT_VERSION}"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: fpar checkpoint without a state dict (a mapping of names to tensors)")
    extra = payload.get("extra", {})
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: fpar checkpoint with a broken header (extra is not a mapping)")
    return Checkpoint(meta=_meta_from(path, payload), state_dict=state, extra=extra)


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the checkpoint's model from the checkpoint alone; returned in eval mode.

    The model is first built on the meta device (shapes, no memory) and the weights are checked
    against it, so a crafted header (a huge ConvLSTM, say) costs nothing before it is refused; and
    the normalization must cover the model's image inputs. The backbone is built with weights
    "none": the checkpoint's own weights replace them anyway, so an `imagenet` config needs no
    ImageNet file here.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location)
    meta = checkpoint.meta
    config = replace(meta.config, weights="none")
    try:
        with torch.device("meta"):
            shapes = build_model(config)
    except FparError as exc:
        raise CheckpointError(f"{path}: {one_line(exc)}") from exc
    report = key_report(shapes, checkpoint.state_dict)
    if report.missing or report.unexpected or report.mismatched:
        raise CheckpointError(f"{path}: weights do not fit model {meta.model_name!r}: {report}")
    unnormalised = [key for key in shapes.input_keys if key in ("rgb", "flow") and key not in meta.normalization]
    if unnormalised:
        raise CheckpointError(f"{path}: fpar checkpoint with a broken header (no normalization for "
                              f"{', '.join(unnormalised)}, which model {meta.model_name!r} reads)")
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as exc:  # what the shapes cannot show; torch's message names the keys
        raise CheckpointError(f"{path}: weights do not fit model {meta.model_name!r}: {one_line(exc)}") from exc
    return model.to(map_location).eval(), meta


def load_partial_state(model: nn.Module, state: dict[str, Tensor]) -> KeyReport:
    """Load the entries of `state` whose name and shape fit `model`; report the others.

    For starting a model from another's weights (two_stream from rgb and flow runs, rgb_ms from
    rgb): a head of another size is reported as a shape mismatch instead of failing the load.
    """
    report = key_report(model, state)
    skipped = set(report.unexpected) | set(report.mismatched)
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return report


def key_report(model: nn.Module, state: Mapping[str, Tensor]) -> KeyReport:
    """How `state` fits `model`, without loading anything: missing, unexpected, mis-shaped keys."""
    own = model.state_dict()
    mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    return KeyReport(
        missing=sorted(k for k in own if k not in state),
        unexpected=sorted(k for k in state if k not in own),
        mismatched=mismatched,
        shapes={k: f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched},
    )
