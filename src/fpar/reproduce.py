"""`fpar reproduce`: the report's comparison table, training curves and CAM figures from your own
data, in one command.

    [fpar prepare: raw videos and labels -> OUT/prepared] -> fpar data check -> the CAM clip of the
    held-out user -> train rgb, flow, rgb_ms, rgb_ms_feedback, two_stream (configs/gtea61) -> fpar
    report (table, curves) -> CAM video and before/after figure on that clip

The data are raw videos with their labels (`--videos`, `--labels`, read as `fpar prepare` reads
them) or a root already in the processed layout (`--root`, e.g. GTEA61 as it is published). The
recipes are configs/gtea61, the reference recipes (DESIGN section 7), or a folder of five recipes
that name their paths as those do (`data/gtea61`, `runs/gtea61/<model>`). The steps after the data
are `fpar.pipeline`'s, the ones `fpar demo` runs; every step resumes, as the verbs it calls do.

Everything that can be checked in seconds is checked before the long steps: the recipes, the
backbone weights (loaded once), the held-out user against the labels, and, before training, the
options a folder was started with (OUT/reproduce.json), so a smoke run's folder is not mistaken
for the real run's.

Two things the demo does are left out on purpose. The warm-up: real data start from ImageNet
weights (`--weights`), which the warm-up only stands in for. The alpha search: it trains dozens
of rgb_ms runs, a job of its own (`fpar search-alpha`), and its result goes into the recipes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from fpar.config import MACHINE_KEYS, Recipe
from fpar.data.check import check_root, print_report
from fpar.data.images import read_image
from fpar.data.layout import PREPARED_DIR, discover
from fpar.errors import ConfigError, DataError, FparError
from fpar.explain.limits import MAX_FRAMES
from fpar.io.atomic import write_atomic
from fpar.io.labels import read_labels, resolve_inputs
from fpar.io.video import write_video
from fpar.models.backbone import load_resnet34
from fpar.pipeline import CAM_DIR, MODELS, Pipeline
from fpar.prepare import PrepareSettings, prepare
from fpar.terminal import make_console

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "gtea61"  # the repository's configs/gtea61
DATA_KEY, RUNS_KEY = "data/gtea61", "runs/gtea61"  # how configs/gtea61 name the data root and the runs
OPTIONS_NAME = "reproduce.json"  # OUT/reproduce.json: the options the folder's runs were started with
CLIP_FPS = 15.0  # the CAM clip made from a prepared sample's frames (their own rate is not recorded)


def run_reproduce(out: Path, videos: Path | None = None, labels: Path | None = None, root: Path | None = None,
                  configs: Path = CONFIGS, weights: str | None = None, overrides: list[str] | None = None,
                  epochs: int | None = None, seed: int = 0, seeds: int = 1, settings: PrepareSettings | None = None,
                  workers: int | None = None, console: Console | None = None) -> dict[str, Path]:
    """Run every step into `out` (module doc); return what it wrote where.

    `videos` (+ `labels`) are prepared into OUT/prepared with `settings` and `workers`; `root` is
    read as it is. `weights` replaces the recipes' `imagenet` (a local state dict, or none);
    `overrides` (section.key=value) go to every recipe; `epochs` caps every stage (a smoke run).
    Every model trains with seeds `seed`..`seed + seeds - 1` (several: each model's folder a group
    of runs, which the table shows as mean ± std); the recipes' own train.seed gives way to them.
    """
    if (videos is None) == (root is None):
        raise ConfigError("give --videos (raw videos to prepare) or --root (a prepared root), one of the two")
    if videos is None and (labels is not None or settings is not None or workers is not None):
        raise ConfigError("--labels, --size, --flow and --workers go with --videos; a --root is already prepared")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs {epochs}: train each stage at least one epoch")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: train each model at least once")
    out, overrides = Path(out), list(overrides or [])
    if any(o.split("=", 1)[0] == "train.seed" for o in overrides):
        raise ConfigError("train.seed=: give the training seed with --seed (and --seeds for several)")
    pipeline = Pipeline(out=out, configs=Path(configs), data_key=DATA_KEY, runs_key=RUNS_KEY,
                        root=out / PREPARED_DIR if root is None else Path(root), overrides=overrides,
                        seeds=list(range(seed, seed + seeds)), epochs=epochs, weights=checked_weights(weights),
                        console=console or make_console())
    started = time.perf_counter()
    recipes = {name: pipeline.recipe(f"{name}.yaml", pipeline.seeds[0]) for name in MODELS}
    test_user = recipes["rgb"].data.test_user
    if test_user == "all":
        raise ConfigError("data.test_user=all: fpar reproduce holds one user out; for every user, run "
                          "`fpar train RECIPE data.test_user=all` per model and `fpar report` on the folders")
    if videos is not None:  # the inputs first: a typo in a path must not wait for (or fail as) a download
        labels_file, videos_dir = resolve_inputs(videos, labels)
        users = sorted({segment.user for segment in read_labels(labels_file, videos_dir)})
        if test_user not in users:
            raise DataError(f"{labels_file}: no video of test user {test_user} (users: {', '.join(users)}); "
                            "choose one with data.test_user=USER")
    elif not pipeline.root.is_dir():
        raise DataError(f"{pipeline.root}: dataset root not found (or not a folder)")
    check_backbone_weights(recipes)
    if videos is not None:
        prepare_step(pipeline, labels_file, videos_dir, settings or PrepareSettings(), workers)  # refuses a root
        # prepared with other settings itself, so they stay out of the options below
    check_step(pipeline, recipes)
    clip = held_out_clip(pipeline, test_user, recipes["rgb"].data.layout)
    record_options(out / OPTIONS_NAME, {
        "videos": _absolute(videos), "labels": _absolute(labels), "root": _absolute(root),
        "configs": str(Path(configs).resolve()), "weights": pipeline.weights, "epochs": epochs,
        "seeds": pipeline.seeds,
        "overrides": [o for o in overrides if o.split("=", 1)[0] not in MACHINE_KEYS]})
    pipeline.train_models()
    report = pipeline.report()
    pipeline.cam(clip, flow_size=None)  # the compared models (rgb_ms, rgb_ms_feedback) read no flow
    pipeline.times["total"] = time.perf_counter() - started
    pipeline.print_summary(report, "fpar reproduce")
    return pipeline.files


def checked_weights(weights: str | None) -> str | None:
    """`--weights` as the recipes will read it: imagenet, none, or an existing file made absolute
    (the runs must find it again from any working folder)."""
    if weights is None or weights in ("imagenet", "none"):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"--weights {weights}: no such file; give imagenet, none, or a ResNet-34 state dict")
    return str(path.resolve())


def check_backbone_weights(recipes: dict[str, Recipe]) -> None:
    """Load each backbone weight source the recipes name once (downloading torchvision's ImageNet
    weights into its cache), so a bad file or a missing network fails now, not after prepare."""
    for source in sorted({recipe.model.weights for recipe in recipes.values()} - {"none"}):
        load_resnet34(source)


def prepare_step(pipeline: Pipeline, labels: Path, videos: Path | None, settings: PrepareSettings,
                 workers: int | None) -> None:
    """`fpar prepare` into OUT/prepared; stops if a video failed."""
    with pipeline.step("frames, warp flow and motion maps (fpar prepare)"):
        report = prepare(labels, pipeline.root, settings, videos=videos, workers=workers)
        for line in report.summary():
            pipeline.console.print(line, highlight=False, soft_wrap=True)
        if report.failed:
            raise FparError(f"{pipeline.root}: {len(report.failed)} videos failed to prepare (listed above, and in "
                            "its manifest.csv); fix or remove them from the labels and run the same command again")
        pipeline.files["prepared root"] = pipeline.root


def check_step(pipeline: Pipeline, recipes: dict[str, Recipe]) -> None:
    """`fpar data check` of the root for the longest clips and flow stacks the recipes read."""
    frames = max(recipe.data.frames for recipe in recipes.values())
    flow_stack = max(recipe.data.flow_stack for recipe in recipes.values())
    with pipeline.step(f"the dataset root {pipeline.root} (fpar data check)"):
        check = check_root(pipeline.root, recipes["rgb"].data.layout, frames=frames, flow_stack=flow_stack,
                           progress=True)
        print_report(check, pipeline.console)
        if not check.clean:
            raise FparError(f"{pipeline.root}: the dataset root has problems (listed above)")


def held_out_clip(pipeline: Pipeline, test_user: str, layout: str) -> Path:
    """An mp4 of the held-out user's first sample (by class, then instance), made from the root's
    RGB frames, at most what `fpar cam` takes: the CAM step's input, the same for a prepared root
    and for raw videos. Written on every run, so a kill mid-write leaves no broken clip behind."""
    samples = sorted((s for s in discover(pipeline.root, layout).samples if s.user == test_user),
                     key=lambda s: (s.label, s.instance))
    if not samples:
        raise DataError(f"{pipeline.root}: no sample of test user {test_user} to hold out; choose one with "
                        "data.test_user=USER")
    sample = samples[0]
    clip = pipeline.out / CAM_DIR / f"clip_{sample.user}_{sample.label}_{sample.instance}.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    write_video(clip, _same_size(sample.frames[:MAX_FRAMES]), CLIP_FPS)
    pipeline.files["CAM input clip (test user)"] = clip
    return clip


def _same_size(paths: tuple[Path, ...]):
    """The images at `paths`, refusing one whose size is not the first one's (naming it)."""
    first = None
    for path in paths:
        image = read_image(path)
        first = image.shape if first is None else first
        if image.shape != first:
            raise DataError(f"{path}: {image.shape[1]}x{image.shape[0]}, but its sample's first frame is "
                            f"{first[1]}x{first[0]}")
        yield image


def record_options(path: Path, options: dict) -> None:
    """Write the options a folder's runs start with; refuse a rerun with others (one line naming them)."""
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable ({exc}); choose a new --out") from exc
        differ = sorted(k for k in stored.keys() | options.keys() if stored.get(k) != options.get(k))
        if differ:
            raise ConfigError(f"{path}: this folder's runs were started with other options ({', '.join(differ)} "
                              "differ); rerun with the same options to resume, or choose a new --out")
        return
    write_atomic(path, json.dumps(options, indent=1) + "\n")


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())
