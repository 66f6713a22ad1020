"""Typed configuration: dataclasses loaded from YAML with `key=value` overrides.

OmegaConf structured configs give us type checking for free: an unknown key or a value of the
wrong type is an error naming the key, never a silent default (nanoGPT's rule). A recipe is one
YAML file with the sections `data`, `model`, `train` and `stages`; nothing inherits from anything.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fpar.errors import ConfigError, one_line
from fpar.options import usable_cores


MAX_DEFAULT_WORKERS = 8
# Settings that change how fast a run goes, never what it computes (items do not depend on the
# number of loader workers; cached frames equal decoded ones). A run dir or a search study that
# checks it holds the same recipe leaves them out: `data.workers` follows the machine's cores, so
# a run continued on another machine, or under another torchrun size, would otherwise be refused.
MACHINE_KEYS = frozenset({"data.workers", "data.frame_cache"})

# Options whose values include "on" or "off". YAML 1.1, which recipes and overrides are read as,
# takes on/off (and yes/no) for booleans, and OmegaConf then writes a bool into a str field as
# "True"/"False": `train.amp=off` arrived as "False" and `data.frame_cache=off` as a cache folder
# named False. `load_recipe` turns those back: key -> the words for true and false.
SWITCH_KEYS = {"data.frame_cache": ("auto", "off"), "train.amp": ("on", "off"), "train.cuda_graphs": ("on", "off")}


def default_workers() -> int:
    """`data.workers` when a recipe does not set it: the cores this process may use, shared among the
    processes torchrun starts on this machine (LOCAL_WORLD_SIZE), at most 8.

    Why not a fixed 2: on a 16-core GPU machine 2 workers left the demo's step waiting for data 41%
    of its time (docs/bench.md, GPU). Items do not depend on the count (`train.batches.RunBatches`), so
    a recipe gives the same results on any machine; the number used is saved with the run's config.
    """
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cores() // local))


@dataclass
class DataConfig:
    """Where the data is, how it is split, and how clips are sampled.

    Where Ego-RNN has two rules, both are options and the default is said at the field: a
    two-stream clip spreads its frames over its frames by default (`two_stream_rgb_over`), so the
    RGB branch sees what its RGB stage trained on; the reference's flow count is one option away.
    """

    root: str = ""
    layout: str = "auto"  # "auto", "course" (with motion maps) or "egornn"
    test_user: str = "S2"  # the held-out user (the reference holds out S2)
    val_fraction: float = 0.2  # stratified share of the training users' instances kept for validation
    selection: str = "val"  # "val": choose checkpoints on the validation part; "test": the reference protocol
    frames: int = 7  # N, RGB frames per clip (Ego-RNN uses 25, the seed 7)
    flow_stack: int = 5  # L, consecutive flow frames per stack
    image_size: int = 224  # side of the square crop fed to the network
    resize: int | None = None  # short side before cropping; None: `resize_side()`'s image_size * 8/7
    exclude_classes: list[str] = field(default_factory=lambda: ["put_tea"])
    batch_size: int = 32
    workers: int = field(default_factory=default_workers)  # DataLoader processes per training process
    # Decoded, resized images kept between epochs (`fpar.data.frame_cache`): "auto" (under
    # $FPAR_CACHE_DIR, else ~/.cache/fpar), "off", or a folder. Items are the same bit for bit.
    frame_cache: str = "auto"
    # Where an evaluation over several flow windows (segments) puts them: "flow", Ego-RNN's flow
    # evaluation (S starts spread evenly, the last window short of the clip's end; the reference's
    # flow model is scored with S=5), or "two_stream", its late-fusion two-stream evaluation (from
    # the first to the last training start, both read). See `fpar.data.sampling`.
    segment_rule: str = "flow"
    # What a two-stream clip spreads its N frames over: "frames" (n, as the RGB datasets do, so the
    # RGB branch sees the frames its RGB stage was trained on) or "flows" (n - 1: Ego-RNN's two-stream
    # dataset counts only flow files; use it to evaluate its published two-stream weights exactly).
    two_stream_rgb_over: str = "frames"

    def resize_side(self) -> int:
        """The short side before cropping: `resize`, or round(image_size * 8 / 7) when None.

        8/7 is Ego-RNN's 256 for a 224 crop, and gives 128 for the demo's 112.
        """
        return self.resize if self.resize is not None else round(self.image_size * 8 / 7)


@dataclass
class ModelConfig:
    """Which registered model to build and its options (see `fpar.models.registry`)."""

    name: str = "rgb"  # flow | rgb | two_stream | rgb_ms | rgb_ms_feedback
    num_classes: int = 61
    # N, L and the image size: in a recipe `load_recipe` copies them from `data` (write them there);
    # they stay here because a checkpoint stores only the ModelConfig and rebuilds its model from it.
    frames: int = 7  # N
    flow_stack: int = 5  # L: the flow stream's conv1 takes 2L channels
    image_size: int = 224
    weights: str = "none"  # "none", "imagenet", or a path to a local ResNet-34 state dict
    mem_size: int = 512  # ConvLSTM channels
    ms_variant: str = "classification"  # MS head: "classification" (2 per position) or "regression"
    feedback_mode: str = "two_pass"  # "two_pass" or "previous_frame"


@dataclass
class StageConfig:
    """One training stage: which parameters train, for how long, how, and from what.

    `trains` and the keys of `group_lr` are parameter groups (`fpar.train.stages.GROUPS`, e.g.
    `lstm`, `layer4_convs`; `rgb:layer4` limits a group to one stream) or glob patterns of
    parameter names (`streams.rgb.backbone.layer4.*`). Everything else stays frozen.
    """

    name: str = "stage1"
    trains: list[str] = field(default_factory=list)  # groups or name patterns trained at `lr`
    group_lr: dict[str, float] = field(default_factory=dict)  # groups trained at their own LR
    epochs: int = 1
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 1e-3
    weight_decay: float = 4e-5
    momentum: float = 0.9  # sgd only
    eps: float = 1e-4  # adam only
    schedule: str = "multistep"  # "multistep" (x gamma at each milestone) or "exponential" (x gamma every epoch)
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    bn: str = "eval"  # "eval": every BN keeps its statistics; "train": BN layers whose weights train update theirs
    init_from: list[str] = field(default_factory=list)  # RUN_DIR, RUN_DIR:stage or a .pt, loaded non-strictly


@dataclass
class TrainConfig:
    """Settings of the loop that hold across stages."""

    seed: int = 0  # split, data order, augmentation and dropout are functions of it (and of stage, epoch)
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda", "cuda:1", ...
    alpha: float = 1.0  # weight of L_ms in L_tot = L_cls + alpha * L_ms
    amp: str = "off"  # "off", "bf16" (autocast, CPU or GPU) or "fp16" (autocast + GradScaler, GPU only)
    # channels_last (models.memory_format: weights of every stream but the RGB stream's, except a backbone that
    # runs frame by frame; and the inputs): faster on this CPU
    # (docs/bench.md, (c)); logits equal within float tolerance.
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (the weights stay those of the plain module)
    # replay each training step from a CUDA graph (fpar.train.cuda_graphs): "auto" wherever it can (a GPU, one
    # process, no compile, no fp16), "on" (an error where it cannot) or "off"; 2.7-8.8x faster steps on an
    # H100. The backbone warm-up (`fpar.train.warmup`) trains eagerly either way
    cuda_graphs: str = "auto"


@dataclass
class Recipe:
    """A whole experiment: data, model, loop settings and the list of stages."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stages: list[StageConfig] = field(default_factory=list)


@dataclass
class CorpusConfig:
    """The warm-up's pre-training frames (`fpar.data.synthetic.corpus`): synthetic users that the
    data set does not have, rendered with their own seed; some are kept apart to measure how well
    the backbone carries over to users it never saw."""

    users: int = 24  # users W01.. whose frames train the backbone
    check_users: int = 4  # the next users: frame accuracy on them is the warm-up's transfer measure
    clips_per_class: int = 4  # per user
    frames: int = 8  # stills kept per clip
    width: int = 160  # rendered size: the warm-up's image_size is far smaller, so no need for more
    height: int = 120
    seed: int = 1000  # the corpus's own seed: its users' looks are independent of the data set's


@dataclass
class WarmupRecipe(Recipe):
    """A warm-up recipe (`fpar.train.warmup`): a recipe whose frames come from `corpus`; `data` gives
    the class list (its root), the image size and the batch size in images."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)


# Set once, in `data`: the model's copies are filled from there (see `load_recipe`).
SHARED_KEYS = ("frames", "flow_stack", "image_size")


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None,
                schema: type[Recipe] = Recipe) -> Recipe:
    """Read a recipe from YAML (or start from defaults) and apply `section.key=value` overrides.

    N, L and the image size are written once, as `data.frames`, `data.flow_stack` and
    `data.image_size`; `model.frames`/`model.flow_stack`/`model.image_size` are copied from them.
    A recipe (file or override) that sets one in `model` to a different value than `data`'s is a
    ConfigError naming both keys; setting it to the same value is allowed but redundant.

    Overrides apply one at a time, so a key inside a list works too: `stages.0.init_from=[RUN:stage1]`.
    `schema` is the recipe class to check against (`WarmupRecipe` for a warm-up).

    Raises ConfigError naming the file or the override when the file is not a YAML mapping, a key is
    unknown, a type is wrong, a stage index does not exist, or an override has no `=`.
    """
    for item in overrides or ():
        if "=" not in str(item):
            raise ConfigError(f"override {item!r}: expected key=value")
    given: list[Any] = []  # what the user wrote, to tell a model key set from a default
    merged = OmegaConf.structured(schema)
    if path is not None:
        path = Path(path)
        given.append(_read_yaml(path))
        try:
            merged = OmegaConf.merge(merged, given[-1])
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{path}: {_refused_stage(schema, given[-1])}{_one_line(exc)}") from exc
    for item in overrides or ():
        given.append(_apply_override(merged, str(item)))
    recipe = OmegaConf.to_object(merged)
    assert isinstance(recipe, schema)
    for key in SHARED_KEYS:
        model_value, data_value = getattr(recipe.model, key), getattr(recipe.data, key)
        set_in_model = any(OmegaConf.select(part, f"model.{key}", default=None) is not None for part in given)
        if set_in_model and model_value != data_value:
            where = f"{path}" if path is not None else "overrides"
            raise ConfigError(
                f"{where}: model.{key} ({model_value}) differs from data.{key} ({data_value}); "
                f"set it once, as data.{key}"
            )
        setattr(recipe.model, key, data_value)
    for key, (yes, no) in SWITCH_KEYS.items():
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        if value in ("True", "False"):
            setattr(getattr(recipe, section), name, yes if value == "True" else no)
    return recipe


def _read_yaml(path: Path) -> Any:
    """A recipe file's YAML mapping; ConfigError naming the file when it is missing or is not one."""
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        loaded = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: not a YAML recipe ({one_line(str(exc))})") from exc
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: a recipe is a YAML mapping with data, model, train and stages sections")
    return loaded


def _refused_stage(schema: type, values: DictConfig) -> str:
    """"stages[i] (name)." for the first stage of a recipe file the schema refuses, else "": OmegaConf
    names only the key of a list item ("epoch: Key 'epoch' not in 'StageConfig'"), not its stage."""
    stages = values.get("stages")
    for index, stage in enumerate(stages if isinstance(stages, ListConfig) else []):
        try:
            OmegaConf.merge(OmegaConf.structured(schema), {"stages": [stage]})
        except OmegaConfBaseException:
            plain = OmegaConf.to_container(stage, resolve=False) if isinstance(stage, DictConfig) else None
            name = plain.get("name") if isinstance(plain, dict) else None
            return f"stages[{index}]{f' ({name})' if isinstance(name, str) and name else ''}."
    return ""


def _apply_override(merged: Any, item: str) -> Any:
    """Apply one `key=value` to `merged` in place; returns it parsed (a tree with just that key)."""
    key = item.split("=", 1)[0].strip()
    try:
        single = OmegaConf.from_dotlist([item])
        value = OmegaConf.select(single, key)
        parent, _, _ = key.rpartition(".")
        stages = re.match(r"stages\.(\d+)(\.|$)", key)
        if stages and int(stages.group(1)) >= len(merged.stages):
            raise ConfigError(f"override {item!r}: the recipe has {len(merged.stages)} stage(s), numbered from 0")
        if parent and OmegaConf.select(merged, parent, default=None) is None:
            raise ConfigError(f"override {item!r}: unknown section {parent!r}")
        OmegaConf.update(merged, key, value, merge=False)
    except (OmegaConfBaseException, yaml.YAMLError, TypeError, ValueError) as exc:
        message = _one_line(exc) if isinstance(exc, OmegaConfBaseException) else one_line(str(exc))
        raise ConfigError(f"override {item!r}: {message}") from exc
    return single


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass, for checkpoints and run dirs (YAML/JSON safe)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def comparable(recipe: Recipe) -> dict[str, Any]:
    """`to_dict(recipe)` without `MACHINE_KEYS`: what a run dir or a study checks it holds again."""
    values = to_dict(recipe)
    for key in MACHINE_KEYS:
        section, name = key.split(".")
        values[section].pop(name, None)
    return values


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from `to_dict`'s output, with the same checks as a recipe."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{cls.__name__}: {_one_line(exc)}") from exc


# ModelConfig fields that must be at least this (image_size: layer4, 32x down, must be >= 1x1).
_MODEL_MINIMA = {"num_classes": 1, "frames": 1, "flow_stack": 1, "image_size": 32, "mem_size": 1}
# ... and at most this: far above the reference (61 classes, N=7..25, L=5, 224, 512 channels), well
# under what a model, its CAM buffers or the MS head's fc (side^4 weights: 512 gives 13M) can hold.
# A checkpoint's config is untrusted: without a bound, a few bytes of header could ask for any size.
MODEL_MAXIMA = {"num_classes": 10_000, "frames": 128, "flow_stack": 32, "image_size": 512, "mem_size": 2048}


def check_model_config(cfg: ModelConfig) -> ModelConfig:
    """`cfg` validated as a recipe's `model` section is: through the structured config (a value
    OmegaConf cannot convert to the field's type, e.g. frames="seven", is a ConfigError; one it
    converts, e.g. frames="7", is converted), then the ranges: at least one class, frame and flow,
    image_size >= 32 (smaller leaves layer4 empty), and the upper bounds of `MODEL_MAXIMA`.
    Returns the validated copy.
    """
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"expected a ModelConfig, got {type(cfg).__name__}")
    checked = from_dict(ModelConfig, vars(cfg))
    for key, least in _MODEL_MINIMA.items():
        value = getattr(checked, key)
        if value < least:
            why = " (layer4 is 32x smaller; 224 is the reference, 112 the demo)" if key == "image_size" else ""
            raise ConfigError(f"{_model_key(key)} must be at least {least}, got {value}{why}")
    for key, most in MODEL_MAXIMA.items():
        if getattr(checked, key) > most:
            raise ConfigError(f"{_model_key(key)} must be at most {most}, got {getattr(checked, key)}")
    return checked


def _model_key(key: str) -> str:
    """How a message names a ModelConfig field: N, L and the size by the `data` key a recipe sets."""
    return f"data.{key} (model.{key})" if key in SHARED_KEYS else f"model.{key}"


# Recipe values outside these (inclusive) ranges are refused before a run dir is written.
_RECIPE_RANGES = {"data.batch_size": (1, None), "data.workers": (0, None), "train.seed": (0, 2**32 - 1),
                  "train.alpha": (0, None)}  # alpha < 0 would train to maximise L_ms


def check_ranges(recipe: Recipe) -> None:
    """ConfigError naming the key of a data or train value out of its range (batch size 0, alpha nan, ...)."""
    for key, (least, most) in _RECIPE_RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        if value < least or (most is not None and value > most):
            bound = f"at least {least}" if most is None else f"from {least} to {most}"
            raise ConfigError(f"{key} must be {bound}, got {value}")


def _one_line(exc: OmegaConfBaseException) -> str:
    """OmegaConf's message without its multi-line type dump, prefixed by the offending key."""
    message = one_line(str(getattr(exc, "msg", exc)).splitlines()[0])  # first line: the dump follows
    key = getattr(exc, "full_key", None)
    return f"{key}: {message}" if key else message
