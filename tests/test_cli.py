"""The command line: every verb has a help text with an example; user errors print one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from fpar.cli import app

runner = CliRunner()


def _all_command_paths() -> list[list[str]]:
    """Every leaf verb of the app as its argv path, e.g. ["data", "check"]."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:  # noqa: ANN001 (Typer's vendored click types)
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])
        else:
            paths.append(prefix)

    walk(root, [])
    return paths


def test_top_level_help_lists_verbs() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for path in _all_command_paths():
        assert path[0] in result.output


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p))
def test_every_verb_has_help_with_an_example(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output or "example" in result.output, f"fpar {' '.join(path)} --help has no example"


def test_user_error_is_one_line_without_traceback(tmp_path) -> None:
    """An FparError reaches the user as `error: ...` and exit code 1, never a traceback."""
    missing = tmp_path / "no_such_root"
    result = subprocess.run(
        [sys.executable, "-m", "fpar.cli", "data", "check", str(missing)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert str(missing) in result.stdout + result.stderr
