"""`fpar train`: a recipe checked against its data and checkpoints, then a run dir, then the loop.

Everything that can be wrong with the inputs is found before the run dir is touched: a model that
does not fit the data (flow on a root without flow, an MS model without motion maps), a stage that
names no parameter, an `init_from` checkpoint unrelated to the model, an empty validation part, a
run dir holding another recipe. So a refused run leaves nothing half-written.

`data.test_user=all` trains one run per user (DIR/S1, DIR/S2, ...) and writes DIR/runs.json; the
group resumes as a whole: finished runs are skipped, a killed one continues, missing ones start.

Under `torchrun` every process plans the same run; rank 0 alone claims and writes the run dir
while the others wait for it (`fpar.train.distributed`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from torch import nn

from fpar.config import Recipe, check_ranges, comparable, load_recipe, to_dict
from fpar.data.layout import Discovery, Split, class_names, discover, split_by_user
from fpar.errors import ConfigError, DataError
from fpar.io.atomic import write_atomic
from fpar.models.registry import build_model
from fpar.terminal import labelled, make_console
from fpar.train.init_from import Source, read_source, source_path
from fpar.train.distributed import Processes, from_environment
from fpar.train.cuda_graphs import use_cuda_graphs
from fpar.train.loop import EpochHook, Trainer, pick_device, seed_everything
from fpar.train.rundir import RunDir
from fpar.train.stages import check_optimizer, check_stage, trained_lrs

ALL_USERS = "all"


@dataclass
class Plan:
    """A checked run: the resolved recipe, its classes and split, the model, the init sources."""

    recipe: Recipe
    classes: list[str]
    split: Split
    model: nn.Module
    sources: dict[str, list[Source]]  # stage name -> its checked init_from sources

    @property
    def unseen_test_classes(self) -> list[str]:
        """Classes of the test user that no training sample has."""
        seen = {s.label for s in self.split.train}
        return sorted({s.label for s in self.split.test} - seen)


def resolved(recipe: Recipe) -> Recipe:
    """A copy whose paths (data root, init_from checkpoints) are absolute, so the run dir's recipe
    means the same from any working directory."""
    recipe = copy.deepcopy(recipe)
    if not recipe.data.root:
        raise ConfigError("data.root: no dataset root given (set data.root=PATH or write it in the recipe)")
    recipe.data.root = str(Path(recipe.data.root).resolve())
    for stage in recipe.stages:
        stage.init_from = [str(source_path(text).resolve()) for text in stage.init_from]
    return recipe


# The files a model input reads by position, whose numbering must have no gap (motion maps may:
# `layout.fill_map_gaps`).
NUMBERED = {"rgb": ("rgb",), "flow": ("flow_x", "flow_y")}


def check_data_fits(model: nn.Module, found: Discovery, name: str) -> None:
    """DataError naming the root when the model reads a modality the root does not have, or naming
    the instance folder whose frames or flows skip a number."""
    needs = set(getattr(model, "input_keys", ()))
    where = f"{found.root} ({found.layout.name} layout)"
    if "flow" in needs and not any(s.n_flows for s in found.samples):
        raise DataError(f"{where}: model {name!r} reads warp flow, but this root has no flow_x/flow_y images; "
                        "prepare it with `fpar prepare`")
    if "mmaps" in needs and not any(s.mmaps for s in found.samples):
        raise DataError(f"{where}: model {name!r} learns from motion maps, but this root has none; "
                        "`fpar prepare` writes them (course layout)")
    # clips read files by position: after a gap, the wrong frames or flows
    gaps = found.numbering_gaps([m for key in needs for m in NUMBERED.get(key, ()) if m in found.layout.modalities])
    if gaps:
        folder, modality, gap = gaps[0]
        raise DataError(f"{folder}: {modality} files are not numbered consecutively ({gap}), so clip "
                        f"positions after the gap would read the wrong files (Ego-RNN would stop there "
                        f"too); `fpar data check {found.root}` lists every such instance")


def make_plan(recipe: Recipe) -> Plan:
    """Check `recipe` against its data and checkpoints; nothing is written."""
    recipe = resolved(recipe)
    check_ranges(recipe)
    data = recipe.data
    found = discover(data.root, data.layout)
    if not found.samples:
        raise DataError(f"{found.root}: no samples found in the {found.layout.name} layout")
    classes = class_names(found.samples, data.exclude_classes)
    recipe.model.num_classes = len(classes)  # the data decides; the recipe's value is replaced
    pick_device(recipe.train)
    seed_everything(recipe.train.seed)  # the initial weights are a function of the seed too
    model = build_model(recipe.model)
    check_data_fits(model, found, recipe.model.name)
    try:
        split = split_by_user(found.samples, data.test_user, data.val_fraction, data.selection, recipe.train.seed)
    except DataError as exc:  # e.g. a test user the root does not have: say which root
        raise DataError(f"{found.root}: {exc}") from exc
    if not split.val:
        raise DataError(f"{found.root}: the validation part is empty (data.val_fraction={data.val_fraction} of "
                        "each class's training instances rounds to 0): raise it or use data.selection=test")
    if not any(s.label in classes for s in split.val):
        fix = ("hold out another user (data.test_user)" if data.selection == "test"
               else "raise data.val_fraction or use data.selection=test")
        raise DataError(f"{found.root}: the validation part holds only excluded classes "
                        f"({', '.join(sorted({s.label for s in split.val}))}; data.exclude_classes): {fix}")
    if not recipe.stages:
        raise ConfigError("the recipe has no stages")
    names = [stage.name for stage in recipe.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be unique, got {', '.join(names)}")
    for stage in recipe.stages:
        check_stage(stage)
        check_optimizer(model, stage, trained_lrs(model, stage))  # every group and pattern must name parameters
    sources = {stage.name: [read_source(text, model, classes) for text in stage.init_from]
               for stage in recipe.stages}
    return Plan(recipe, classes, split, model, sources)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                flat.update(_flat(item, f"{prefix}{key}.{i}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def claim_dir(run: RunDir, recipe: Recipe) -> bool:
    """True when `run` already holds this recipe (continue it); False when it is a new dir.

    A dir holding another recipe, or files but no recipe, is refused (ConfigError). Settings of
    the machine alone (`config.MACHINE_KEYS`: loader workers, frame cache) may differ.
    """
    if run.root.exists() and not run.root.is_dir():
        raise ConfigError(f"--out {run.root}: a file, not a run dir; choose a folder")
    if run.recipe.is_file():
        stored, wanted = _flat(comparable(load_recipe(run.recipe, schema=type(recipe)))), _flat(comparable(recipe))
        differ = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
        if differ:
            raise ConfigError(f"{run.recipe}: this run dir holds another recipe (it differs in {', '.join(differ)}); "
                              f"continue it with `fpar train --resume {run.root}` or choose a new --out")
        return True
    if run.root.is_dir() and any(run.root.iterdir()):
        raise ConfigError(f"{run.root}: not empty and not an fpar run dir (no {run.recipe.name}); choose a new --out")
    return False


def write_split(run: RunDir, plan: Plan) -> None:
    """split.json: held-out user, protocol, seed, classes and the sample ids of each part."""
    split = plan.split
    write_atomic(run.split, json.dumps({
        "test_user": split.test_user, "selection": split.selection, "seed": plan.recipe.train.seed,
        "classes": plan.classes, "train": [s.id for s in split.train], "val": [s.id for s in split.val],
        "test": [s.id for s in split.test]}, indent=1))


def start(run: RunDir, plan: Plan, console: Console) -> None:
    """Write what a new run dir holds before the first epoch: recipe, split, warnings."""
    write_atomic(run.recipe, OmegaConf.to_yaml(to_dict(plan.recipe)))
    write_split(run, plan)
    if plan.unseen_test_classes:
        line = (f"test user {plan.split.test_user} has class(es) that training never saw: "
                f"{', '.join(plan.unseen_test_classes)} (their test samples cannot be right)")
        write_atomic(run.warnings, line + "\n")
        console.print(labelled("warning:", "yellow", line))


def train_run(plan: Plan, out: Path, console: Console, must_exist: bool = False,
              on_epoch: EpochHook | None = None, processes: Processes = Processes()) -> Path:
    """Claim `out` for `plan`, then train (or continue) it; `on_epoch` sees each committed epoch."""
    run = RunDir(out)
    processes.batch_size(plan.recipe.data.batch_size)  # refused before the run dir is written
    use_cuda_graphs(plan.recipe.train, pick_device(plan.recipe.train), processes.world_size)  # so is this
    if processes.is_main:
        exists = claim_dir(run, plan.recipe)
        if must_exist and not exists:
            raise ConfigError(f"{run.recipe}: not found; {out} is not a run dir to resume")
        if not run.state.is_file():  # also redoes a start that a kill cut short (recipe.yaml but no split.json)
            start(run, plan, console)
    processes.barrier()
    Trainer(plan, run, console, processes, on_epoch).run()
    return out


def train_all_users(recipe: Recipe, out: Path, console: Console, processes: Processes = Processes()) -> list[Path]:
    """One run per user held out (DIR/<user>), DIR/runs.json naming them; all checked first."""
    group = RunDir(out)
    users = discover(resolved(recipe).data.root, recipe.data.layout).users
    plans = []
    for user in users:
        one = copy.deepcopy(recipe)
        one.data.test_user = user
        plans.append(make_plan(one))
    recipe = resolved(recipe)
    recipe.model.num_classes = plans[0].recipe.model.num_classes
    processes.batch_size(recipe.data.batch_size)  # refused before the group's dir is written
    if processes.is_main:
        if not claim_dir(group, recipe):
            write_atomic(group.recipe, OmegaConf.to_yaml(to_dict(recipe)))
        write_atomic(group.group, json.dumps({"kind": "splits", "runs": users}, indent=1))
    return [train_run(plan, out / user, console, processes=processes) for user, plan in zip(users, plans)]


def train(recipe_path: Path | None, out: Path | None, overrides: list[str] | None = None,
          resume: Path | None = None, console: Console | None = None) -> list[Path]:
    """`fpar train RECIPE --out DIR [key=value ...]` or `fpar train --resume DIR`; the run dirs (on
    rank 0; other ranks of a torchrun job return none, so nothing is printed twice).

    Under `torchrun` this is one of its processes (DDP; rank 0 prints and writes).
    """
    console = console or make_console()
    if (resume is None) == (out is None):
        raise ConfigError("give either RECIPE --out RUN_DIR, or --resume RUN_DIR")
    if resume is not None:
        if recipe_path is not None or overrides:
            raise ConfigError(f"--resume {resume}: the recipe is the run dir's own; give no RECIPE or overrides")
        if not RunDir(resume).recipe.is_file():
            raise ConfigError(f"{RunDir(resume).recipe}: not found; {resume} is not a run dir to resume")
        recipe, out = load_recipe(RunDir(resume).recipe), resume
    else:
        if recipe_path is None:
            raise ConfigError("no recipe given: fpar train RECIPE --out RUN_DIR (see configs/)")
        recipe = load_recipe(recipe_path, overrides)
    assert out is not None
    with from_environment(pick_device(recipe.train)) as processes:
        if not processes.is_main:
            console = Console(quiet=True)
        if recipe.data.test_user == ALL_USERS:
            runs = train_all_users(recipe, out, console, processes)
        else:
            runs = [train_run(make_plan(recipe), out, console, must_exist=resume is not None, processes=processes)]
        return runs if processes.is_main else []  # rank 0 alone reports them
