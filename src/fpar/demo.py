"""`fpar demo`: the report's whole story, end to end, on built-in synthetic data.

Each step reads only what the step before wrote (DESIGN section 1), and calls the same library
function as the verb it stands for; the demo owns no logic of its own, only the order of the steps,
the recipes (`configs/demo/*.yaml`) and where each output goes. Training, report and CAM are the
steps it shares with `fpar reproduce` (`fpar.pipeline`); the synthetic data, the warm-up and the
search are its own:

    synth -> prepare (+ quality vs ground truth) -> data check -> warm-up of the backbone on frames
    of other synthetic users (the stand-in for ImageNet weights) -> train rgb, flow, rgb_ms,
    rgb_ms_feedback, two_stream -> eval + report (table, curves) -> alpha search -> CAM (a CAM
    video, the before/after figure)

Stages are shared as in the report: rgb's stage 1 feeds its stage 2 and rgb_ms, rgb_ms feeds the
feedback model, rgb and flow feed two_stream (the recipes' `init_from`). The recipes name their
inputs and outputs under `runs/demo/` (what `make demo` writes); `--out` elsewhere moves them
there (`pipeline.relocate`). `--seeds K` trains every model K times (training seeds SEED..SEED+K-1, on the same
data), each model's folder then being a group of runs (runs.json, kind "seeds") that the report
shows as mean ± std. Every step resumes: a rerun skips what is complete.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.console import Console

from fpar.config import WarmupRecipe, to_dict
from fpar.data.check import check_root, print_report
from fpar.data.layout import DEMO_CONTACT_SHEET_NAME, DEMO_SYNTH_DIR, PREPARED_DIR, QUALITY_NAME
from fpar.data.preview import contact_sheet
from fpar.data.synthetic import SynthConfig, synthesize
from fpar.errors import ConfigError, FparError
from fpar.io.atomic import write_atomic
from fpar.io.labels import read_labels
from fpar.pipeline import MODELS, TRAIN_DIR, Pipeline
from fpar.prepare import PrepareSettings, evaluate, prepare
from fpar.terminal import make_console
from fpar.train.search import search_alpha
from fpar.train.warmup import warm_up

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"  # the repository's configs/demo
RECIPES_ROOT = "runs/demo"  # where configs/demo name their inputs and outputs
WARMUP_RECIPE = "warmup.yaml"
WARMUP_DIR, SEARCH_DIR = "warmup", "search"
# --tiny: the smallest sizes that still run every step (what CI runs), one epoch a stage; everything
# else as the recipes.
TINY_OVERRIDES = ["data.frames=3", "data.flow_stack=2", "data.image_size=48", "data.batch_size=4", "data.workers=0",
                  "model.mem_size=8"]
TINY_CORPUS = ["corpus.users=2", "corpus.check_users=1", "corpus.clips_per_class=1", "corpus.frames=2",
               "corpus.width=64", "corpus.height=48"]
# The search step: a few one-epoch trials of rgb_ms (a taste of `fpar search-alpha`, within the budget).
SEARCH_MODEL, SEARCH_TRIALS, SEARCH_TRIALS_TINY, SEARCH_EPOCHS = "rgb_ms", 3, 2, 1
DEFAULT_THREADS = 1  # torch intra-op threads (see run_demo)
CAM_CLASS = "take_cup"  # the CAM examples: a test-user clip of an order-only class (put_cup is it reversed)


@dataclasses.dataclass
class Demo(Pipeline):
    """A pipeline on synthetic data, with the warm-up that stands in for ImageNet weights."""

    tiny: bool = False

    def warmup_dir(self, train_seed: int) -> Path:
        return self.out / WARMUP_DIR / self.seed_part(train_seed)

    def places(self, train_seed: int) -> dict[str, Path]:
        return {**super().places(train_seed), f"{RECIPES_ROOT}/{WARMUP_DIR}": self.warmup_dir(train_seed)}

    def synth_config(self) -> SynthConfig:
        return dataclasses.replace(SynthConfig.tiny() if self.tiny else SynthConfig(), seed=self.seeds[0])


def make_demo(out: Path, tiny: bool = False, seed: int = 0, seeds: int = 1, configs: Path = CONFIGS,
              console: Console | None = None) -> Demo:
    """The demo writing into `out`: the synthetic data's seed is `seed`, the training seeds
    `seed`..`seed + seeds - 1`."""
    out = Path(out)
    return Demo(out=out, configs=Path(configs), data_key=f"{RECIPES_ROOT}/{PREPARED_DIR}",
                runs_key=f"{RECIPES_ROOT}/{TRAIN_DIR}", root=out / PREPARED_DIR,
                seeds=list(range(seed, seed + seeds)), overrides=list(TINY_OVERRIDES) if tiny else [],
                epochs=1 if tiny else None, console=console or make_console(), tiny=tiny)


def run_demo(out: Path, tiny: bool = False, seed: int = 0, seeds: int = 1, configs: Path = CONFIGS,
             threads: int = DEFAULT_THREADS, console: Console | None = None) -> dict[str, Path]:
    """Run every step of the demo into `out`; return what it wrote where (the final table).

    `threads`: torch's intra-op threads (0: torch's default, all cores). The default is 1: on a
    CPU shared with other work, two OpenMP threads that spin-wait for each other were ten times
    slower per training step than one (measured here: 28 s against 2.8 s a step, load 7).
    """
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: train each model at least once")
    if threads < 0:
        raise ConfigError(f"--threads {threads}: give 0 (all cores) or a positive count")
    if threads:
        torch.set_num_threads(threads)
    demo = make_demo(out, tiny, seed, seeds, configs, console)
    check_recipes(demo)
    started = time.perf_counter()
    labels = data_steps(demo)
    with demo.step("warm-up of the backbone on frames of other synthetic users (stand-in for ImageNet)"):
        for train_seed in demo.seeds:
            recipe = demo.recipe(WARMUP_RECIPE, train_seed, WarmupRecipe, extra=TINY_CORPUS if tiny else None)
            demo.files[_seeded("warm-up backbone", demo, train_seed)] = warm_up(
                recipe, demo.warmup_dir(train_seed), demo.console)
    demo.train_models()
    report = demo.report()
    search_step(demo)
    synth = demo.synth_config()
    demo.cam(_test_clip(labels, demo.recipe("rgb_ms_feedback.yaml", demo.seeds[0]).data.test_user),
             flow_size=(synth.width, synth.height))
    demo.times["total"] = time.perf_counter() - started
    demo.print_summary(report, "fpar demo")
    return demo.files


def check_recipes(demo: Demo) -> None:
    """Read every recipe the demo will train before its first step: a missing `--configs` folder or
    a bad override fails in a second, not after the data steps."""
    demo.recipe(WARMUP_RECIPE, demo.seeds[0], WarmupRecipe, extra=TINY_CORPUS if demo.tiny else None)
    for name in MODELS:
        demo.recipe(f"{name}.yaml", demo.seeds[0])


def data_steps(demo: Demo) -> Path:
    """synth, prepare (+ quality), data check; returns the synthetic labels.csv."""
    console, raw = demo.console, demo.out / DEMO_SYNTH_DIR
    with demo.step("synthetic egocentric videos (fpar synth)"):
        summary = synthesize(raw, demo.synth_config())
        console.print(f"{summary.videos} videos of {len(summary.classes)} classes by users "
                      f"{', '.join(summary.users)}, {summary.frames} frames at {summary.width}x{summary.height}, "
                      f"in {summary.seconds:.1f} s -> {raw}", highlight=False)
        demo.files["synthetic videos"] = raw
        demo.files["synthetic contact sheet"] = contact_sheet(raw, demo.out / DEMO_CONTACT_SHEET_NAME)
    with demo.step("frames, warp flow and motion maps (fpar prepare --evaluate)"):
        report = prepare(summary.labels, demo.root, PrepareSettings(size=(summary.width, summary.height)))
        for line in report.summary():
            console.print(line, highlight=False)
        if report.failed:
            raise FparError(f"{demo.root}: {len(report.failed)} synthetic videos failed to prepare (see above)")
        demo.files["prepared root"] = demo.root
        quality_file = demo.root / QUALITY_NAME  # the same file as `fpar prepare --evaluate`
        if report.done or report.removed or not quality_file.is_file():
            quality = evaluate(summary.labels, demo.root)
            for line in quality.lines():
                console.print(line, highlight=False)
            quality.save(demo.root)
        else:
            console.print(f"quality against the ground truth already measured: {quality_file}", highlight=False)
        demo.files["prepare quality"] = quality_file
    with demo.step("the prepared root (fpar data check)"):
        recipe = demo.recipe("rgb.yaml", demo.seeds[0])
        check = check_root(demo.root, frames=recipe.data.frames, flow_stack=recipe.data.flow_stack)
        print_report(check, console)
        if not check.clean:
            raise FparError(f"{demo.root}: the prepared root has problems (listed above)")
    return summary.labels


def search_step(demo: Demo) -> None:
    """`fpar search-alpha` for rgb_ms on the validation part: a few short trials (SEARCH_*).

    The search reads a recipe file, so the demo writes the one it searches (its rgb_ms recipe,
    paths moved to --out, SEARCH_EPOCHS a trial) into the search folder first.
    """
    first = demo.seeds[0]
    recipe = demo.recipe(f"{SEARCH_MODEL}.yaml", first)
    for stage in recipe.stages:
        stage.epochs, stage.milestones = SEARCH_EPOCHS, []
    trials = SEARCH_TRIALS_TINY if demo.tiny else SEARCH_TRIALS
    with demo.step(f"alpha search for {SEARCH_MODEL}, {trials} trials on the validation part (fpar search-alpha)"):
        folder = demo.out / SEARCH_DIR
        searched = write_atomic(folder / f"{SEARCH_MODEL}.yaml", OmegaConf.to_yaml(to_dict(recipe)))
        result = search_alpha(searched, folder, trials, console=demo.console, seed=first)
        demo.files["alpha search: best recipe"] = result.recipe_path
        demo.files["alpha search: trials plot"] = result.plot_path


def _test_clip(labels: Path, test_user: str) -> Path:
    """The first synthetic video of CAM_CLASS by the test user (never seen in training)."""
    for row in read_labels(labels):
        if row.user == test_user and row.label == CAM_CLASS:
            return row.video
    raise FparError(f"{labels}: no {CAM_CLASS} clip of test user {test_user}")


def _seeded(what: str, demo: Demo, train_seed: int) -> str:
    return f"{what} (seed {train_seed})" if len(demo.seeds) > 1 else what
