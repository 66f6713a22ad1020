"""`fpar demo`: the report's whole story, end to end, on built-in synthetic data.

Each step reads only what the step before wrote (DESIGN section 1), and calls the same library
function as the verb it stands for; the demo owns no logic of its own, only the order of the steps,
the recipes (`configs/demo/*.yaml`) and where each output goes:

    synth -> prepare (+ quality vs ground truth) -> data check -> warm-up of the backbone on frames
    of other synthetic users (the stand-in for ImageNet weights) -> train rgb, flow, rgb_ms,
    rgb_ms_feedback, two_stream -> eval + report (table, curves) -> alpha search -> CAM (a CAM
    video, the before/after figure)

Stages are shared as in the report: rgb's stage 1 feeds its stage 2 and rgb_ms, rgb_ms feeds the
feedback model, rgb and flow feed two_stream (the recipes' `init_from`). The recipes name their
inputs and outputs under `runs/demo/` (what `make demo` writes); `--out` elsewhere moves them
there (`relocate`). `--seeds K` trains every model K times (training seeds 0..K-1, on the same
data), each model's folder then being a group of runs (runs.json, kind "seeds") that the report
shows as mean ± std. Every step resumes: a rerun skips what is complete.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from fpar.config import Recipe, WarmupRecipe, load_recipe, to_dict
from fpar.data.check import check_root, print_report
from fpar.data.layout import DEMO_CONTACT_SHEET_NAME, DEMO_PREPARED_DIR, DEMO_SYNTH_DIR, QUALITY_NAME
from fpar.data.preview import contact_sheet
from fpar.data.synthetic import SynthConfig, synthesize
from fpar.errors import ConfigError, FparError
from fpar.evaluate.report import Report, build_report
from fpar.explain.run import run_cam, sheet_path
from fpar.io.atomic import write_atomic
from fpar.io.labels import read_labels
from fpar.prepare import PrepareSettings, evaluate, prepare
from fpar.train.rundir import RunDir
from fpar.train.run import make_plan, train_run
from fpar.train.search import search_alpha
from fpar.train.warmup import warm_up

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"  # the repository's configs/demo
RECIPES_ROOT = "runs/demo"  # where configs/demo name their inputs and outputs
WARMUP_RECIPE = "warmup.yaml"
# Training order: each model after the runs its recipe's init_from names.
MODELS = ("rgb", "flow", "rgb_ms", "rgb_ms_feedback", "two_stream")
WARMUP_DIR, TRAIN_DIR, REPORT_DIR, SEARCH_DIR, CAM_DIR = "warmup", "train", "report", "search", "cam"
# --tiny: the smallest sizes that still run every step (what CI runs); everything else as the recipes.
TINY_OVERRIDES = ["data.frames=3", "data.flow_stack=2", "data.image_size=48", "data.batch_size=4", "data.workers=0",
                  "model.mem_size=8"]
TINY_CORPUS = ["corpus.users=2", "corpus.check_users=1", "corpus.clips_per_class=1", "corpus.frames=2",
               "corpus.width=64", "corpus.height=48"]
# The search step: a few one-epoch trials of rgb_ms (a taste of `fpar search-alpha`, within the budget).
SEARCH_MODEL, SEARCH_TRIALS, SEARCH_TRIALS_TINY, SEARCH_EPOCHS = "rgb_ms", 3, 2, 1
DEFAULT_THREADS = 1  # torch intra-op threads (see run_demo)
CAM_CLASS = "take_cup"  # the CAM examples: a test-user clip of an order-only class (put_cup is it reversed)
CAM_COMPARE = ("rgb_ms", "rgb_ms_feedback")  # the report's before/after figure


@dataclasses.dataclass
class Demo:
    """Where one demo writes, and how it runs (sizes, seeds)."""

    out: Path
    tiny: bool = False
    seed: int = 0  # of the synthetic data, and the first training seed
    seeds: int = 1  # training seeds per model: more than one makes each model's folder a group
    configs: Path = CONFIGS
    console: Console = dataclasses.field(default_factory=Console)
    times: dict[str, float] = dataclasses.field(default_factory=dict)
    files: dict[str, Path] = dataclasses.field(default_factory=dict)

    @property
    def prepared(self) -> Path:
        return self.out / DEMO_PREPARED_DIR

    def training_seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    def seed_part(self, train_seed: int) -> str:
        """The sub-folder of one training seed ('' for a single seed)."""
        return f"seed-{train_seed}" if self.seeds > 1 else ""

    def warmup_dir(self, train_seed: int) -> Path:
        return self.out / WARMUP_DIR / self.seed_part(train_seed)

    def model_dir(self, name: str) -> Path:
        """A model's folder: its run dir, or with several seeds its group dir."""
        return self.out / TRAIN_DIR / name

    def run_dir(self, name: str, train_seed: int) -> Path:
        return self.model_dir(name) / self.seed_part(train_seed)

    def places(self, train_seed: int) -> dict[str, Path]:
        """What the recipes' `runs/demo/...` paths mean for this demo and training seed."""
        places = {f"{RECIPES_ROOT}/{DEMO_PREPARED_DIR}": self.prepared,
                  f"{RECIPES_ROOT}/{WARMUP_DIR}": self.warmup_dir(train_seed)}
        places.update({f"{RECIPES_ROOT}/{TRAIN_DIR}/{name}": self.run_dir(name, train_seed) for name in MODELS})
        return places

    def recipe(self, file_name: str, train_seed: int, schema: type[Recipe] = Recipe) -> Recipe:
        """A recipe of configs/demo with this demo's paths, seed and (with --tiny) sizes; `schema`
        WarmupRecipe for the warm-up's."""
        path = self.configs / file_name
        if not path.is_file():
            raise ConfigError(f"{path}: demo recipe not found (give the repository's configs/demo with --configs)")
        overrides = [f"train.seed={train_seed}"]
        if self.tiny:
            overrides += TINY_OVERRIDES + (TINY_CORPUS if schema is WarmupRecipe else [])
        recipe = load_recipe(path, overrides, schema)
        relocate(recipe, self.places(train_seed))
        if self.tiny:
            for stage in recipe.stages:
                stage.epochs, stage.milestones = 1, []
        return recipe


def relocate(recipe: Recipe, places: dict[str, Path]) -> None:
    """Point the recipe's paths (data root, backbone weights, init_from) at `places`, in place.

    A path that starts with a key of `places` gets that place instead of the key; a `RUN:stage`
    source keeps its `:stage`. Other paths stay as they are.
    """
    def moved(text: str) -> str:
        for key in sorted(places, key=len, reverse=True):
            if text == key or text.startswith(key + "/") or text.startswith(key + ":"):
                return str(places[key]) + text[len(key):]
        return text

    recipe.data.root = moved(recipe.data.root)
    recipe.model.weights = moved(recipe.model.weights)
    for stage in recipe.stages:
        stage.init_from = [moved(text) for text in stage.init_from]


@contextmanager
def step(demo: Demo, title: str) -> Iterator[None]:
    """One numbered step: a rule with its title before, one line with its time after."""
    number = len(demo.times) + 1
    demo.console.rule(f"{number}. {title}")
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    demo.times[title] = seconds
    demo.console.print(f"[bold green]step {number} done[/] ({title}) in {seconds:.1f} s", highlight=False)


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
    demo = Demo(Path(out), tiny, seed, seeds, Path(configs), console or Console())
    started = time.perf_counter()
    labels = data_steps(demo)
    with step(demo, "warm-up of the backbone on frames of other synthetic users (stand-in for ImageNet)"):
        for train_seed in demo.training_seeds():
            demo.files[_seeded("warm-up backbone", demo, train_seed)] = warm_up(
                demo.recipe(WARMUP_RECIPE, train_seed, WarmupRecipe), demo.warmup_dir(train_seed), demo.console)
    for name in MODELS:
        with step(demo, f"train {name} (fpar train configs/demo/{name}.yaml)"):
            train_model(demo, name)
    report = report_step(demo)
    search_step(demo)
    cam_step(demo, labels)
    demo.times["total"] = time.perf_counter() - started
    print_summary(demo, report)
    return demo.files


def data_steps(demo: Demo) -> Path:
    """synth, prepare (+ quality), data check; returns the synthetic labels.csv."""
    console, raw = demo.console, demo.out / DEMO_SYNTH_DIR
    synth_cfg = dataclasses.replace(SynthConfig.tiny() if demo.tiny else SynthConfig(), seed=demo.seed)
    with step(demo, "synthetic egocentric videos (fpar synth)"):
        summary = synthesize(raw, synth_cfg)
        console.print(f"{summary.videos} videos of {len(summary.classes)} classes by users "
                      f"{', '.join(summary.users)}, {summary.frames} frames at {summary.width}x{summary.height}, "
                      f"in {summary.seconds:.1f} s -> {raw}", highlight=False)
        demo.files["synthetic videos"] = raw
        demo.files["synthetic contact sheet"] = contact_sheet(raw, demo.out / DEMO_CONTACT_SHEET_NAME)
    with step(demo, "frames, warp flow and motion maps (fpar prepare --evaluate)"):
        report = prepare(summary.labels, demo.prepared, PrepareSettings(size=(summary.width, summary.height)))
        for line in report.summary():
            console.print(line, highlight=False)
        if report.failed:
            raise FparError(f"{demo.prepared}: {len(report.failed)} synthetic videos failed to prepare (see above)")
        demo.files["prepared root"] = demo.prepared
        quality_file = demo.prepared / QUALITY_NAME  # the same file as `fpar prepare --evaluate`
        if report.done or report.removed or not quality_file.is_file():
            quality = evaluate(summary.labels, demo.prepared)
            for line in quality.lines():
                console.print(line, highlight=False)
            quality.save(demo.prepared)
        else:
            console.print(f"quality against the ground truth already measured: {quality_file}", highlight=False)
        demo.files["prepare quality"] = quality_file
    with step(demo, "the prepared root (fpar data check)"):
        recipe = demo.recipe("rgb.yaml", demo.seed)
        check = check_root(demo.prepared, frames=recipe.data.frames, flow_stack=recipe.data.flow_stack)
        print_report(check, console)
        if not check.clean:
            raise FparError(f"{demo.prepared}: the prepared root has problems (listed above)")
    return summary.labels


def train_model(demo: Demo, name: str) -> None:
    """`fpar train configs/demo/<name>.yaml` once per training seed; with several, a seeds group."""
    for train_seed in demo.training_seeds():
        train_run(make_plan(demo.recipe(f"{name}.yaml", train_seed)), demo.run_dir(name, train_seed), demo.console)
    if demo.seeds > 1:
        runs = [demo.seed_part(s) for s in demo.training_seeds()]
        write_atomic(RunDir(demo.model_dir(name)).group, json.dumps({"kind": "seeds", "runs": runs}, indent=1))
    demo.files[f"{name} run" + ("s" if demo.seeds > 1 else "")] = demo.model_dir(name)


def report_step(demo: Demo) -> Report:
    """`fpar report` over the five models: evaluation on the test user, table, curves."""
    with step(demo, "evaluation on the held-out user and the comparison table (fpar report)"):
        report = build_report([demo.model_dir(name) for name in MODELS], demo.out / REPORT_DIR, progress=False)
        demo.files["comparison table"] = report.table_md
        demo.files["comparison table (CSV)"] = report.table_csv
        demo.files["training curves (loss, validation accuracy)"] = report.figures[-1]
    return report


def search_step(demo: Demo) -> None:
    """`fpar search-alpha` for rgb_ms on the validation part: a few short trials (SEARCH_*).

    The search reads a recipe file, so the demo writes the one it searches (its rgb_ms recipe,
    paths moved to --out, SEARCH_EPOCHS a trial) into the search folder first.
    """
    first = demo.training_seeds()[0]
    recipe = demo.recipe(f"{SEARCH_MODEL}.yaml", first)
    for stage in recipe.stages:
        stage.epochs, stage.milestones = SEARCH_EPOCHS, []
    trials = SEARCH_TRIALS_TINY if demo.tiny else SEARCH_TRIALS
    with step(demo, f"alpha search for {SEARCH_MODEL}, {trials} trials on the validation part (fpar search-alpha)"):
        folder = demo.out / SEARCH_DIR
        searched = write_atomic(folder / f"{SEARCH_MODEL}.yaml", OmegaConf.to_yaml(to_dict(recipe)))
        result = search_alpha(searched, folder, trials, console=demo.console, seed=first)
        demo.files["alpha search: best recipe"] = result.recipe_path
        demo.files["alpha search: trials plot"] = result.plot_path


def cam_step(demo: Demo, labels: Path) -> None:
    """A CAM video of the feedback model, and the before/after figure (rgb_ms vs rgb_ms_feedback)."""
    first = demo.training_seeds()[0]
    recipe = demo.recipe("rgb_ms_feedback.yaml", first)
    clip = _test_clip(labels, recipe.data.test_user)
    checkpoints = [RunDir(demo.run_dir(name, first)).checkpoint("best") for name in CAM_COMPARE]
    size = _synth_size(demo)
    with step(demo, f"class activation maps on a test-user clip, {clip.name} (fpar cam, fpar cam --compare)"):
        cam_dir = demo.out / CAM_DIR
        _, written = run_cam(checkpoints[-1:], clip, cam_dir / f"{CAM_COMPARE[-1]}.mp4", flow_size=size)
        demo.files["CAM video (rgb_ms_feedback)"], demo.files["CAM contact sheet"] = written
        _, written = run_cam(checkpoints, clip, cam_dir / "compare.mp4", flow_size=size)
        demo.files["CAM before/after video (rgb_ms | rgb_ms_feedback)"] = written[0]
        demo.files["CAM before/after figure"] = sheet_path(cam_dir / "compare.mp4")


def print_summary(demo: Demo, report: Report) -> None:
    """The comparison table, every step's time, and where every file is."""
    demo.console.rule("fpar demo: results")
    demo.console.print(Markdown(report.table_md.read_text(encoding="utf-8")))
    times = Table(title="time per step")
    times.add_column("step")
    times.add_column("seconds", justify="right")
    for title, seconds in demo.times.items():
        times.add_row(title, f"{seconds:.1f}")
    demo.console.print(times)
    files = Table(title="fpar demo wrote")
    files.add_column("what")
    files.add_column("where")
    for what, where in demo.files.items():
        files.add_row(what, str(where))
    demo.console.print(files)


def _test_clip(labels: Path, test_user: str) -> Path:
    """The first synthetic video of CAM_CLASS by the test user (never seen in training)."""
    for row in read_labels(labels):
        if row.user == test_user and row.label == CAM_CLASS:
            return row.video
    raise FparError(f"{labels}: no {CAM_CLASS} clip of test user {test_user}")


def _synth_size(demo: Demo) -> tuple[int, int]:
    cfg = SynthConfig.tiny() if demo.tiny else SynthConfig()
    return cfg.width, cfg.height


def _seeded(what: str, demo: Demo, train_seed: int) -> str:
    return f"{what} (seed {train_seed})" if demo.seeds > 1 else what
