"""`data.test_user=all`: one run per held-out user, DIR/runs.json, resumable as a whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import TINY, stage_yaml, write_recipe
from fpar.config import load_recipe
from fpar.train.rundir import RunDir
from fpar.train.run import train


def test_all_users_one_run_each_and_the_group_resumes(prepared_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "rgb", [stage_yaml("s1", ["classifier"], 1)])
    out = tmp_path / "splits"
    runs = train(recipe, out, [*TINY, f"data.root={prepared_root}", "data.test_user=all"])
    users = ["S1", "S2", "S3", "S4"]
    assert runs == [out / u for u in users]
    assert json.loads(RunDir(out).group.read_text()) == {"kind": "splits", "runs": users}
    for user in users:
        run = RunDir(out / user)
        assert load_recipe(run.recipe).data.test_user == user
        assert json.loads(run.split.read_text())["test_user"] == user and run.checkpoint("best").is_file()
    kept = (out / "S1" / "metrics.csv").stat().st_mtime_ns
    shutil.rmtree(out / "S3")  # as if killed before S3 began
    train(None, None, resume=out)
    assert (out / "S3" / "metrics.csv").is_file() and RunDir(out / "S3").checkpoint("last").is_file()
    assert (out / "S1" / "metrics.csv").stat().st_mtime_ns == kept  # finished runs are not redone
