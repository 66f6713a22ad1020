"""End to end in a real browser: `fpar app` on a free local port, driven by Playwright with
Debian's chromium; a video upload must give a playing CAM video for each of the two models.

Needs `playwright` (the dev extra) and chromium (`apt-get install -y chromium`; `.ci/run` installs
it). Without them the test fails saying what is missing: it never skips. With FPAR_SCREENSHOT set
to a path it also saves the page there (the README's screenshot comes from this test).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
START_SECONDS = 60
RESULT_MS = 180_000


def chromium() -> str:
    """The chromium executable (FPAR_CHROMIUM, else on PATH); fails saying how to install it."""
    found = os.environ.get("FPAR_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found:
        pytest.fail("the browser test needs Debian's chromium: run `apt-get install -y chromium` "
                    "(or set FPAR_CHROMIUM to a chromium executable); .ci/run installs it")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"fpar app exited with code {process.returncode}: {process.stdout.read()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"fpar app did not listen on 127.0.0.1:{port} within {START_SECONDS} s")


@pytest.mark.slow
def test_video_upload_plays_a_cam_video_per_model_in_chromium(runs: Path, video: Path, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the `playwright` package: pip install -e '.[dev]'")
    executable = chromium()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2] / "src"),
                                                                     os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", "from fpar.cli import main; main()", "app", "--runs", str(runs),
                                "--port", str(port), "--address", "127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for_port(port, process)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            page.locator('input[type="file"]').set_input_files(str(video))
            videos = page.locator("video")
            videos.nth(1).wait_for(state="attached", timeout=RESULT_MS)
            assert videos.count() == 2
            for i in range(2):  # each video plays: decoded data, not paused, time advancing
                videos.nth(i).evaluate("v => v.play()")
                page.wait_for_function(
                    "i => { const v = document.querySelectorAll('video')[i];"
                    " return v && v.readyState >= 2 && !v.paused && v.currentTime > 0 && v.videoWidth > 0; }",
                    arg=i, timeout=30_000)
            text = page.inner_text("body")
            assert "rgb_ms" in text and text.count("Predicted:") == 2
            if os.environ.get("FPAR_SCREENSHOT"):
                page.screenshot(path=os.environ["FPAR_SCREENSHOT"], full_page=True)
            browser.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
