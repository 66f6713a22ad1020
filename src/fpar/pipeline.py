"""What `fpar demo` and `fpar reproduce` share: the report's five models trained from one folder
of recipes into an output folder, then the comparison table and the CAM figures, each a numbered
step with its time, and a closing summary of the table and of every file written.

Each step calls the library function of the verb it stands for (`fpar train`, `fpar report`,
`fpar cam`), and a rerun resumes because each of those does. The recipes name their inputs and
outputs as the repository's configs do (`data/gtea61`, `runs/gtea61/rgb`, ...); a pipeline moves
those paths into its output folder (`relocate`), so the same recipes serve any folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from fpar.config import Recipe, load_recipe
from fpar.errors import ConfigError
from fpar.evaluate.report import Report, build_report
from fpar.explain.run import run_cam, sheet_path
from fpar.io.atomic import write_atomic
from fpar.terminal import labelled, make_console
from fpar.train.rundir import RunDir
from fpar.train.run import make_plan, train_run

# Training order: each model after the runs its recipe's init_from names.
MODELS = ("rgb", "flow", "rgb_ms", "rgb_ms_feedback", "two_stream")
CAM_COMPARE = ("rgb_ms", "rgb_ms_feedback")  # the report's before/after figure
TRAIN_DIR, REPORT_DIR, CAM_DIR = "train", "report", "cam"


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


@dataclasses.dataclass
class Pipeline:
    """Where one run of the five models writes, which recipes it reads, and what it has done.

    `data_key` and `runs_key` are the data root and the folder of runs as the recipes write them;
    `root` is the data root to read. `overrides` (section.key=value) go to every recipe after its
    training seed; `epochs` caps every stage (a smoke run); `weights`, where given, replaces the
    recipes' `imagenet` backbone weights (a local state dict, or none). Several `seeds` make each
    model's folder a group of runs (runs.json, kind "seeds"), one per training seed.
    """

    out: Path
    configs: Path
    data_key: str
    runs_key: str
    root: Path
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    overrides: list[str] = dataclasses.field(default_factory=list)
    epochs: int | None = None
    weights: str | None = None
    console: Console = dataclasses.field(default_factory=make_console)
    times: dict[str, float] = dataclasses.field(default_factory=dict)
    files: dict[str, Path] = dataclasses.field(default_factory=dict)

    def seed_part(self, train_seed: int) -> str:
        """The sub-folder of one training seed ('' for a single seed)."""
        return f"seed-{train_seed}" if len(self.seeds) > 1 else ""

    def model_dir(self, name: str) -> Path:
        """A model's folder: its run dir, or with several seeds its group dir."""
        return self.out / TRAIN_DIR / name

    def run_dir(self, name: str, train_seed: int) -> Path:
        return self.model_dir(name) / self.seed_part(train_seed)

    def places(self, train_seed: int) -> dict[str, Path]:
        """What the recipes' paths mean for this pipeline and training seed (`relocate`)."""
        places = {self.data_key: self.root}
        places.update({f"{self.runs_key}/{name}": self.run_dir(name, train_seed) for name in MODELS})
        return places

    def recipe(self, file_name: str, train_seed: int, schema: type[Recipe] = Recipe,
               extra: list[str] | None = None) -> Recipe:
        """`configs/<file_name>` with this pipeline's paths, seed, overrides (then `extra`) and epochs."""
        path = self.configs / file_name
        if not path.is_file():
            raise ConfigError(f"{path}: recipe not found (--configs names the folder of the recipes)")
        recipe = load_recipe(path, [f"train.seed={train_seed}", *self.overrides, *(extra or [])], schema)
        relocate(recipe, self.places(train_seed))
        self._check_moved(path, recipe)
        if self.weights is not None and recipe.model.weights == "imagenet":
            recipe.model.weights = self.weights
        if self.epochs is not None:
            for stage in recipe.stages:
                stage.epochs = min(stage.epochs, self.epochs)
                stage.milestones = [m for m in stage.milestones if m < stage.epochs]
        return recipe

    def _check_moved(self, path: Path, recipe: Recipe) -> None:
        """Refuse a recipe that would read data or runs outside this pipeline: one whose paths are
        not named as the pipeline's recipes name them, or a data.root override."""
        if recipe.data.root != str(self.root):
            raise ConfigError(f"{path}: data.root {recipe.data.root} is not this run's data {self.root}: the recipes "
                              f"must name it {self.data_key} (and the data is given by the command, not data.root=)")
        runs = self.out / TRAIN_DIR
        for stage in recipe.stages:
            for source in stage.init_from:
                run = source.rsplit(":", 1)[0] if ":" in Path(source).name else source  # RUN or RUN:stage
                if not Path(run).is_relative_to(runs):
                    raise ConfigError(f"{path}: stage {stage.name} starts from {source}, not from one of this run's "
                                      f"models: the recipes must name them {self.runs_key}/<model>")

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """One numbered step: a rule with its title before, one line with its time after."""
        number = len(self.times) + 1
        self.console.rule(f"{number}. {title}")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.times[title] = seconds
        self.console.print(labelled(f"step {number} done", "bold green", f"({title}) in {seconds:.1f} s"))

    def train_models(self) -> None:
        """`fpar train configs/<name>.yaml` for the five models in order, once per training seed."""
        for name in MODELS:
            with self.step(f"train {name} (fpar train {_shown(self.configs / f'{name}.yaml')})"):
                for train_seed in self.seeds:
                    train_run(make_plan(self.recipe(f"{name}.yaml", train_seed)), self.run_dir(name, train_seed),
                              self.console)
                if len(self.seeds) > 1:
                    runs = [self.seed_part(s) for s in self.seeds]
                    write_atomic(RunDir(self.model_dir(name)).group, json.dumps({"kind": "seeds", "runs": runs},
                                                                                indent=1))
                self.files[f"{name} run" + ("s" if len(self.seeds) > 1 else "")] = self.model_dir(name)

    def report(self) -> Report:
        """`fpar report` over the five models: evaluation on the test user, table, curves."""
        with self.step("evaluation on the held-out user and the comparison table (fpar report)"):
            report = build_report([self.model_dir(name) for name in MODELS], self.out / REPORT_DIR, progress=False)
            self.files["comparison table"] = report.table_md
            self.files["comparison table (CSV)"] = report.table_csv
            self.files["training curves (loss, validation accuracy)"] = report.figures[-1]
        return report

    def cam(self, clip: Path, flow_size: tuple[int, int] | None = None) -> None:
        """A CAM video of the feedback model on `clip`, and the report's before/after figure
        (rgb_ms vs rgb_ms_feedback), from the first training seed's best checkpoints."""
        checkpoints = [RunDir(self.run_dir(name, self.seeds[0])).checkpoint("best") for name in CAM_COMPARE]
        with self.step(f"class activation maps on a test-user clip, {clip.name} (fpar cam, fpar cam --compare)"):
            cam_dir = self.out / CAM_DIR
            _, written = run_cam(checkpoints[-1:], clip, cam_dir / f"{CAM_COMPARE[-1]}.mp4", flow_size=flow_size)
            self.files[f"CAM video ({CAM_COMPARE[-1]})"], self.files["CAM contact sheet"] = written
            _, written = run_cam(checkpoints, clip, cam_dir / "compare.mp4", flow_size=flow_size)
            self.files[f"CAM before/after video ({' | '.join(CAM_COMPARE)})"] = written[0]
            self.files["CAM before/after figure"] = sheet_path(cam_dir / "compare.mp4")

    def print_summary(self, report: Report, name: str) -> None:
        """The comparison table, every step's time, and where every file is."""
        self.console.rule(f"{name}: results")
        self.console.print(Markdown(report.table_md.read_text(encoding="utf-8")))
        times = Table(title="time per step")
        times.add_column("step")
        times.add_column("seconds", justify="right")
        for title, seconds in self.times.items():
            times.add_row(title, f"{seconds:.1f}")
        self.console.print(times)
        files = Table(title=f"{name} wrote")
        files.add_column("what")
        files.add_column("where")
        for what, where in self.files.items():
            files.add_row(what, str(where))
        self.console.print(files)


def _shown(path: Path) -> Path:
    """`path` relative to the working folder where it lies inside it (the repository's configs)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
