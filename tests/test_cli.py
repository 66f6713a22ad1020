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


def test_prepare_bench_names_a_missing_video_in_one_line(tmp_path) -> None:
    missing = tmp_path / "missing.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "fpar.cli", "prepare-bench", "--video", str(missing), "--size", "64x48"],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{missing}: video not found" in " ".join(result.stdout.split())


def test_main_prints_every_fpar_error_on_one_line(monkeypatch, capsys) -> None:
    import fpar.cli
    from fpar.errors import ConfigError

    def fail() -> None:
        raise ConfigError("first line\n  second line")

    monkeypatch.setattr(fpar.cli, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        fpar.cli.main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().out.strip() == "error: first line second line"


def test_help_imports_neither_torch_nor_av() -> None:
    code = "import sys, fpar.cli; print(sorted({'torch', 'av', 'cv2'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_help_shows_the_library_defaults() -> None:
    from fpar.config import DataConfig
    from fpar.prepare.flow import DEFAULT_BOUND
    from fpar.prepare.pipeline import PrepareSettings

    settings, data = PrepareSettings(), DataConfig()
    prepare_help = runner.invoke(app, ["prepare", "--help"], terminal_width=400).output
    for text in (f"{settings.size[0]}x{settings.size[1]}", settings.flow, str(DEFAULT_BOUND)):
        assert text in prepare_help
    check_help = " ".join(runner.invoke(app, ["data", "check", "--help"], terminal_width=400).output.split())
    for text in (f"[default: {data.frames}]", f"[default: {data.flow_stack}]", ",".join(data.exclude_classes)):
        assert text in check_help


@pytest.mark.parametrize(("text", "native", "expected"), [
    ("320x240", False, (320, 240)), (" 64 X 48 ", False, (64, 48)), ("native", True, None), ("NATIVE", True, None),
])
def test_parse_size(text: str, native: bool, expected) -> None:
    from fpar.options import parse_size

    assert parse_size(text, allow_native=native) == expected


@pytest.mark.parametrize(("text", "native"), [("abc", False), ("native", False), ("0x240", True), ("32x", True)])
def test_parse_size_rejects_bad_sizes_with_a_config_error(text: str, native: bool) -> None:
    from fpar.errors import ConfigError
    from fpar.options import parse_size

    with pytest.raises(ConfigError, match=f"size '{text}'"):
        parse_size(text, allow_native=native)


def test_parse_list_and_one_line() -> None:
    from fpar.errors import one_line
    from fpar.options import parse_list

    assert parse_list(" S1, S2,,") == ["S1", "S2"] and parse_list("") == []
    assert one_line(ValueError("a\n  b")) == "a b" and one_line(KeyError()) == "KeyError"


@pytest.mark.parametrize("verb", [["synth", "--out", "x"], ["prepare", "videos", "--out", "x"],
                                  ["reproduce", "--videos", "v", "--out", "x"]])
@pytest.mark.parametrize("count", ["0", "-3"])
def test_a_worker_count_under_one_is_a_usage_error(verb: list[str], count: str) -> None:
    # 0 used to mean every core and -3 one process, neither of which the user asked for
    result = runner.invoke(app, [*verb, "--workers", count])
    assert result.exit_code == 2 and "--workers" in result.output
