"""Running the `fpar` command in tests, the way a user does: through its real entry point.

A plain module at the top of tests/ (pytest puts this folder on the path for its conftest.py), so
every test folder imports the same helper: `from cli_kit import run_cli`.
"""

from __future__ import annotations


def run_cli(args: list[str], capsys) -> tuple[int, str]:  # noqa: ANN001 (pytest's CaptureFixture)
    """Run `fpar ARGS` through the real entry point (`fpar.cli.main`) in this process: (exit code, output)."""
    import sys

    from fpar.cli import main

    capsys.readouterr()
    argv, sys.argv = sys.argv, ["fpar", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out + captured.err
