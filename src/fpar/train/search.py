"""`fpar search-alpha`: the weight of L_ms (and optionally the LR) found with Optuna.

The objective of a trial is the best validation accuracy of the recipe's last stage, the number
`best.pt` is chosen by, on the validation part of the training users; the test user is never
looked at (a recipe with `data.selection=test` is refused). Every trial trains the recipe with the
same seed into DIR/trials/<number>, so trials differ only in what is searched.

Search space. alpha is log-uniform on [0.01, 10] by default: what alpha does is set the ratio of
the two loss terms, so equal steps in log alpha are equal changes of that ratio. At 0.01 the MS
term barely moves the weights (the model is close to plain ConvLSTM attention, the ablation end);
at 10 it outweighs L_cls (L_ms starts near ln 2 = 0.69 per position, L_cls near ln 61 = 4.1); the
reference's alpha = 1 sits in the middle. `tune_lr` adds one factor, log-uniform on [0.1, 10],
that scales every stage's LR (and group LRs) together, so the recipe's ratios between them stay.

Optuna's TPE sampler proposes (random for the first trials, half of them up to 10); the median
pruner stops a trial whose validation accuracy after an epoch is below the median of earlier
trials at the same epoch (never after the first epoch, nor before 2 trials have finished).
Each epoch reaches the trial through the Trainer's `on_epoch` hook.

Resumable and shared: the study lives in an RDB storage (by default sqlite:///DIR/study.db);
rerunning continues it, and processes on several machines given the same `--storage` URL and
study name share it. `trials` is the study's total of finished (complete or pruned) trials: each
worker stops when the study has that many, so W workers finishing together may add up to W - 1
more. A worker killed mid-trial leaves that trial running until its heartbeat goes stale (a few
minutes); the next worker to start marks it failed and enqueues its parameters again.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console

from fpar.config import Recipe, comparable, load_recipe, to_dict
from fpar.errors import ConfigError, one_line
from fpar.io.atomic import write_atomic
from fpar.terminal import make_console
from fpar.train.run import ALL_USERS, make_plan, resolved, train_run

ALPHA_RANGE = (0.01, 10.0)
LR_SCALE_RANGE = (0.1, 10.0)

# What DIR holds besides trials/<number>/ (run dirs) and, by default, the study's storage.
TRIALS_DIR = "trials"
STORAGE_NAME = "study.db"
BEST_JSON = "best.json"
BEST_RECIPE = "best_recipe.yaml"
TRIALS_PNG = "trials.png"
TRIALS_CSV = "trials.csv"

HEARTBEAT_S = 60  # a running trial's worker says it is alive this often ...
GRACE_S = 180  # ... and one silent this long is marked failed (its worker was killed)


@dataclass
class SearchResult:
    """The best trial of the study and the files written."""

    best_alpha: float
    best_value: float  # best validation accuracy of the last stage
    best_lr_scale: float | None  # None unless the LR was tuned
    best_trial: int
    finished: int  # complete + pruned trials in the study
    pruned: int
    recipe_path: Path  # the recipe with alpha (and the LRs) filled in
    plot_path: Path
    json_path: Path
    storage: str
    study_name: str


def with_params(recipe: Recipe, alpha: float, lr_scale: float | None) -> Recipe:
    """A copy of `recipe` with train.alpha set and, given `lr_scale`, every LR scaled by it."""
    recipe = copy.deepcopy(recipe)
    recipe.train.alpha = float(alpha)
    if lr_scale is not None:
        for stage in recipe.stages:
            stage.lr = float(stage.lr * lr_scale)
            stage.group_lr = {name: float(lr * lr_scale) for name, lr in stage.group_lr.items()}
    return recipe


def check_searchable(recipe: Recipe, where: str) -> None:
    """ConfigError unless the search may run on `recipe`: validation protocol, one test user,
    and a model with an MS head (without one, alpha multiplies nothing)."""
    if recipe.data.selection == "test":
        raise ConfigError(f"{where}: data.selection=test chooses on the test user; the alpha search must "
                          "score trials on the validation part (data.selection=val)")
    if recipe.data.test_user == ALL_USERS:
        raise ConfigError(f"{where}: data.test_user=all; the search holds out one user (e.g. data.test_user=S2)")
    plan = make_plan(recipe)
    if "mmaps" not in plan.model.input_keys:
        raise ConfigError(f"{where}: model {recipe.model.name!r} has no MS head, so alpha has no effect; "
                          "search with rgb_ms or rgb_ms_feedback")


def open_study(storage: str, study_name: str, recipe_text: str, trials: int, seed: int | None,
               pruner: Any = None) -> Any:
    """The study `study_name` in `storage` (created if new); a study of another recipe is refused.
    `pruner` None is the median pruner of the module docstring."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    sampler = optuna.samplers.TPESampler(n_startup_trials=max(1, min(10, trials // 2)), seed=seed)
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    for attempt in range(5):  # workers starting together on a new database race to create its tables
        try:
            with warnings.catch_warnings():  # heartbeats are labelled experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(
                    storage, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
            study = optuna.create_study(storage=rdb, study_name=study_name, direction="maximize", sampler=sampler,
                                        pruner=pruner, load_if_exists=True)
            break
        except SQLAlchemyError as exc:
            if attempt == 4:
                raise ConfigError(f"--storage {storage}: cannot open the study ({type(exc).__name__}: "
                                  f"{one_line(str(exc))})") from exc
            time.sleep(1 + attempt)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"--storage {storage}: cannot open the study ({type(exc).__name__}: {exc})") from exc
    stored = study.user_attrs.get("recipe")
    if stored is None:
        study.set_user_attr("recipe", recipe_text)
    elif stored != recipe_text:
        raise ConfigError(f"--storage {storage}: study {study_name!r} searches another recipe; "
                          "choose another --study name or the same recipe and overrides")
    return study


def search_alpha(recipe: str | Path, out: Path, trials: int, overrides: list[str] | None = None,
                 storage: str | None = None, study_name: str | None = None, tune_lr: bool = False,
                 console: Console | None = None, alpha_range: tuple[float, float] = ALPHA_RANGE,
                 seed: int | None = None, pruner: Any = None) -> SearchResult:
    """Run (or continue) the study until it has `trials` finished trials; write the best's files.

    `seed` seeds the TPE sampler (None: fresh draws; give workers sharing a study different seeds);
    `pruner` replaces the median pruner (an `optuna.pruners.BasePruner`).
    """
    import optuna

    console = console or make_console()
    if trials < 1:
        raise ConfigError(f"--trials {trials}: give at least 1")
    low, high = alpha_range
    if not 0 < low < high:
        raise ConfigError(f"alpha range {low}..{high}: need 0 < low < high (it is searched on a log scale)")
    base = resolved(load_recipe(recipe, overrides))
    check_searchable(base, str(recipe))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out / STORAGE_NAME}"
    study_name = study_name or f"alpha-{Path(recipe).stem}"
    # without MACHINE_KEYS: workers on machines of other sizes share one study
    recipe_text = OmegaConf.to_yaml(comparable(base)) + f"tune_lr: {tune_lr}\nalpha_range: {list(alpha_range)}\n"
    study = open_study(storage, study_name, recipe_text, trials, seed, pruner)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: optuna.Trial) -> float:
        alpha = trial.suggest_float("alpha", low, high, log=True)
        lr_scale = trial.suggest_float("lr_scale", *LR_SCALE_RANGE, log=True) if tune_lr else None
        scaled = f", lr x{lr_scale:.3g}" if lr_scale is not None else ""
        console.print(f"trial {trial.number}: alpha {alpha:.4g}{scaled}", highlight=False)
        plan = make_plan(with_params(base, alpha, lr_scale))
        last = plan.recipe.stages[-1].name
        best = [-1.0]

        def report(step: int, row: dict[str, Any]) -> None:
            if row["stage"] == last:
                best[0] = max(best[0], row["val_acc"])
            trial.report(row["val_acc"], step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val acc {row['val_acc']:.4f} after epoch {step + 1}")

        trial.set_user_attr("run_dir", str(out / TRIALS_DIR / str(trial.number)))
        train_run(plan, out / TRIALS_DIR / str(trial.number), console, on_epoch=report)
        return best[0]

    done = len(study.get_trials(deepcopy=False, states=states))
    if done < trials:
        study.optimize(objective, n_trials=trials - done, gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)])
    result = write_results(study, base, out, storage, study_name)
    console.print(f"best of {result.finished} trial(s) ({result.pruned} pruned): alpha {result.best_alpha:.4g}"
                  + (f", lr x{result.best_lr_scale:.3g}" if result.best_lr_scale is not None else "")
                  + f", val acc {result.best_value:.4f} (trial {result.best_trial})", highlight=False)
    console.print(f"recipe: {result.recipe_path}\nplot: {result.plot_path}\nsummary: {result.json_path}",
                  highlight=False, soft_wrap=True)
    return result


def write_results(study: Any, base: Recipe, out: Path, storage: str, study_name: str) -> SearchResult:
    """best.json, best_recipe.yaml, trials.csv and trials.png from everything the study holds."""
    import optuna

    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED))
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"{out}: study {study_name!r} has no complete trial yet (all pruned or failed); "
                          "run more trials")
    best = study.best_trial
    lr_scale = best.params.get("lr_scale")
    recipe_path, plot_path, json_path = out / BEST_RECIPE, out / TRIALS_PNG, out / BEST_JSON
    result = SearchResult(best.params["alpha"], best.value, lr_scale, best.number, len(finished),
                          len(finished) - len(complete), recipe_path, plot_path, json_path, storage, study_name)
    tuned = with_params(base, result.best_alpha, lr_scale)
    header = (f"# found by fpar search-alpha (study {study_name!r}, trial {best.number}): best validation "
              f"accuracy {best.value:.4f} over {len(finished)} trials\n")
    write_atomic(recipe_path, header + OmegaConf.to_yaml(to_dict(tuned)))
    write_atomic(json_path, json.dumps({
        "best_alpha": result.best_alpha, "best_lr_scale": lr_scale, "best_value": best.value,
        "objective": "best validation accuracy of the last stage (validation part; test user unused)",
        "best_trial": best.number, "best_run_dir": best.user_attrs.get("run_dir"),
        "stage_lrs": {s.name: s.lr for s in tuned.stages}, "finished": result.finished, "pruned": result.pruned,
        "study": study_name, "storage": storage}, indent=1))
    write_atomic(out / TRIALS_CSV, trials_csv(finished))
    plot_trials(finished, best.number, plot_path)
    return result


def last_value(trial: Any) -> float:
    """A trial's score for the plot: its value, or for a pruned one its last reported accuracy."""
    if trial.value is not None:
        return float(trial.value)
    steps = trial.intermediate_values
    return float(steps[max(steps)]) if steps else math.nan


def trials_csv(trials: list[Any]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["trial", "state", "alpha", "lr_scale", "val_acc", "epochs", "run_dir"])
    for t in trials:
        writer.writerow([t.number, t.state.name.lower(), t.params["alpha"], t.params.get("lr_scale", ""),
                         last_value(t), len(t.intermediate_values), t.user_attrs.get("run_dir", "")])
    return text.getvalue()


def plot_trials(trials: list[Any], best: int, path: Path) -> None:
    """alpha (log) against validation accuracy: complete trials as dots (coloured by the LR factor
    when tuned), pruned ones as crosses at their last reported accuracy, the best circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    tuned = any("lr_scale" in t.params for t in trials)
    for pruned, marker, label in ((False, "o", "complete"), (True, "x", "pruned (last epoch reached)")):
        chosen = [t for t in trials if (t.state.name == "PRUNED") == pruned]
        if not chosen:
            continue
        colour: dict[str, Any] = {"c": [t.params["lr_scale"] for t in chosen], "cmap": "viridis",
                                  "norm": LogNorm(*LR_SCALE_RANGE)} if tuned else {"c": "tab:gray" if pruned else "tab:blue"}
        dots = ax.scatter([t.params["alpha"] for t in chosen], [last_value(t) for t in chosen], marker=marker,
                          label=label, **colour)
    if tuned:
        fig.colorbar(dots, ax=ax, label="LR factor")
    top = next(t for t in trials if t.number == best)
    ax.scatter([top.params["alpha"]], [top.value], s=160, facecolors="none", edgecolors="red", label="best")
    ax.set_xscale("log")
    ax.set_xlabel("alpha (weight of L_ms)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{len(trials)} trials; best alpha {top.params['alpha']:.3g}, val acc {top.value:.3f}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png"))
    plt.close(fig)
