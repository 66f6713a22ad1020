"""`fpar search-alpha`: trials on the validation part, pruning through the epoch hook, the best
trial's files, resuming a study, and several worker processes sharing one SQLite study."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import TINY, stage_yaml, write_recipe
from fpar.config import load_recipe
from fpar.errors import ConfigError
from fpar.train.rundir import RunDir
from fpar.train.search import ALPHA_RANGE, search_alpha

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "OMP_NUM_THREADS": "1"}


def ms_recipe(folder: Path, model: str = "rgb_ms", epochs: int = 2) -> Path:
    return write_recipe(folder, model, [stage_yaml("s1", ["lstm", "classifier", "ms_head"], epochs)])


def overrides(root: Path, *more: str) -> list[str]:
    return [*TINY, f"data.root={root}", *more]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with RunDir(run_dir).metrics.open() as handle:
        return list(csv.DictReader(handle))


def trial_rows(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_search_writes_the_best_trial_and_a_rerun_continues_the_study(prepared_root: Path, tmp_path: Path) -> None:
    recipe, out = ms_recipe(tmp_path), tmp_path / "search"
    first = search_alpha(recipe, out, 2, overrides(prepared_root), seed=0)
    trials = trial_rows(out)
    assert [t["trial"] for t in trials] == ["0", "1"] and all(t["state"] == "complete" for t in trials)
    # each trial's value is the best validation accuracy its run dir recorded, and its alpha the run's
    for t in trials:
        rows = metrics(Path(t["run_dir"]))
        assert len(rows) == 2 and float(t["val_acc"]) == max(float(r["val_acc"]) for r in rows)
        assert load_recipe(RunDir(Path(t["run_dir"])).recipe).train.alpha == pytest.approx(float(t["alpha"]))
    best = max(trials, key=lambda t: float(t["val_acc"]))
    summary = json.loads(first.json_path.read_text())
    assert summary["best_value"] == first.best_value == float(best["val_acc"])
    assert summary["best_alpha"] == first.best_alpha and ALPHA_RANGE[0] <= first.best_alpha <= ALPHA_RANGE[1]
    tuned = load_recipe(first.recipe_path)
    assert tuned.train.alpha == pytest.approx(first.best_alpha) and tuned.data.selection == "val"
    assert first.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stamps = {t["trial"]: RunDir(Path(t["run_dir"])).state.stat().st_mtime_ns for t in trials}
    again = search_alpha(recipe, out, 3, overrides(prepared_root), seed=1)  # one more, not three
    assert [t["trial"] for t in trial_rows(out)] == ["0", "1", "2"] and again.finished == 3
    assert all(RunDir(out / "trials" / n).state.stat().st_mtime_ns == stamp for n, stamp in stamps.items())


def test_tuned_lr_scales_every_stage_lr_in_the_best_recipe(prepared_root: Path, tmp_path: Path) -> None:
    recipe = ms_recipe(tmp_path, "rgb_ms_feedback", epochs=1)
    result = search_alpha(recipe, tmp_path / "search", 1, overrides(prepared_root), tune_lr=True, seed=0)
    assert result.best_lr_scale is not None and result.best_lr_scale != 1.0
    tuned = load_recipe(result.recipe_path)
    assert tuned.stages[0].lr == pytest.approx(1e-3 * result.best_lr_scale)  # the stage's default lr, scaled
    assert tuned.train.alpha == pytest.approx(result.best_alpha)


class PruneOddTrials(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its first report: a pruned trial without luck."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1


def test_a_pruned_trial_stops_after_the_epoch_it_was_pruned_at(prepared_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    result = search_alpha(ms_recipe(tmp_path, epochs=3), out, 2, overrides(prepared_root), seed=0,
                          pruner=PruneOddTrials())
    trials = {t["trial"]: t for t in trial_rows(out)}
    assert trials["0"]["state"] == "complete" and len(metrics(out / "trials" / "0")) == 3
    assert trials["1"]["state"] == "pruned" and len(metrics(out / "trials" / "1")) == 1
    assert result.pruned == 1 and result.best_trial == 0


@pytest.mark.parametrize("model, more, message", [
    ("rgb_ms", ["data.selection=test"], "data.selection=test"),
    ("rgb_ms", ["data.test_user=all"], "test_user=all"),
    ("rgb", [], "no MS head"),
])
def test_refused_before_anything_is_written(prepared_root: Path, tmp_path: Path, model: str, more: list[str],
                                            message: str) -> None:
    recipe = write_recipe(tmp_path, model, [stage_yaml("s1", ["lstm", "classifier"])])
    with pytest.raises(ConfigError, match=message):
        search_alpha(recipe, tmp_path / "search", 2, overrides(prepared_root, *more))
    assert not (tmp_path / "search").exists()


@pytest.mark.slow
def test_three_workers_share_one_sqlite_study(prepared_root: Path, tmp_path: Path) -> None:
    recipe, out, storage = ms_recipe(tmp_path, epochs=1), tmp_path / "search", f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [subprocess.Popen([sys.executable, "-m", "fpar.cli", "search-alpha", str(recipe), "--trials", "5",
                                 "--out", str(out), "--storage", storage, "--study", "shared", "--seed", str(seed),
                                 *overrides(prepared_root)], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for seed in range(3)]
    for worker in workers:
        _, err = worker.communicate()
        assert worker.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [t.number for t in study.trials]
    # each worker stops once 5 have finished, so those still running then may add up to 2 more
    assert 5 <= len(numbers) <= 7 and sorted(numbers) == list(range(len(numbers)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert sorted(int(p.name) for p in (out / "trials").iterdir()) == numbers
    for n in numbers:  # every trial trained once, into its own run dir, with its own alpha
        assert len(metrics(out / "trials" / str(n))) == 1
        alpha = load_recipe(RunDir(out / "trials" / str(n)).recipe).train.alpha
        assert alpha == pytest.approx(study.trials[n].params["alpha"])
    assert len({t.params["alpha"] for t in study.trials}) == len(numbers)
    assert len(trial_rows(out)) == len(numbers)
