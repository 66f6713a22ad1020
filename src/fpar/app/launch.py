"""`fpar app`: start Streamlit on the app script, local only, with the app's settings.

Settings reach the script through environment variables (Streamlit owns the script's command
line), read back by `settings_from_env`; the upload size limit is also Streamlit's own
`server.maxUploadSize`, so an oversized upload is refused by the browser before it is sent.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fpar.explain.limits import MAX_FRAMES, MAX_MEGABYTES, Limits

SCRIPT = Path(__file__).with_name("streamlit_app.py")
DEFAULT_RUNS = Path("runs/demo")
ENV_RUNS, ENV_MAX_MB, ENV_MAX_FRAMES = "FPAR_APP_RUNS", "FPAR_APP_MAX_MB", "FPAR_APP_MAX_FRAMES"


@dataclass(frozen=True)
class AppSettings:
    runs: Path = DEFAULT_RUNS
    limits: Limits = Limits()


def settings_from_env() -> AppSettings:
    """The settings `fpar app` passed (defaults where a variable is unset)."""
    env = os.environ
    return AppSettings(
        runs=Path(env.get(ENV_RUNS, str(DEFAULT_RUNS))),
        limits=Limits(max_megabytes=float(env.get(ENV_MAX_MB, MAX_MEGABYTES)),
                      max_frames=int(env.get(ENV_MAX_FRAMES, MAX_FRAMES))),
    )


def streamlit_command(port: int, address: str, max_megabytes: float) -> list[str]:
    """The `streamlit run` command line: headless, no usage statistics, Streamlit's own upload limit."""
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT),
            "--server.port", str(port), "--server.address", address, "--server.headless", "true",
            "--server.maxUploadSize", str(max(1, round(max_megabytes))),
            "--browser.gatherUsageStats", "false"]


def launch(settings: AppSettings, port: int, address: str = "127.0.0.1") -> None:
    """Replace this process with Streamlit (exec), so a signal to `fpar app` reaches the server itself."""
    env = {**os.environ, ENV_RUNS: str(settings.runs.resolve()), ENV_MAX_MB: str(settings.limits.max_megabytes),
           ENV_MAX_FRAMES: str(settings.limits.max_frames)}
    command = streamlit_command(port, address, settings.limits.max_megabytes)
    sys.stdout.flush()
    os.execve(command[0], command, env)
