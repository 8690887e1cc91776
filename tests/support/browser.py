"""Headless Chromium for the browser tests and the dashboard benchmark.

Uses the system's Chromium (Debian: ``apt-get install -y chromium``, giving ``/usr/bin/chromium``)
driven by the ``playwright`` Python package; playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from app.services import dashboard_argv

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
INSTALL_HINT = (
    "no Chromium found (looked at CHROMIUM_PATH, " + ", ".join(CANDIDATES) + " and PATH); "
    "install it with: apt-get update && apt-get install -y chromium"
)


def find_chromium() -> Path | None:
    """The Chromium binary: ``CHROMIUM_PATH`` if set, else the usual system paths, else ``PATH``."""
    named = os.environ.get("CHROMIUM_PATH")
    for candidate in ([named] if named else []) + list(CANDIDATES):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


@contextmanager
def chromium(executable: Path | None = None) -> Iterator[Browser]:
    """A headless Chromium driven by playwright, closed on exit."""
    path = executable or find_chromium()
    if path is None:
        raise FileNotFoundError(INSTALL_HINT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until something listens on ``127.0.0.1:port``; fails early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def serve_dashboard(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The dashboard as the run command serves it, on a free loopback port with ``env`` added to the
    environment; returns the process (output to ``log_path``) and the page URL once it listens."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            dashboard_argv("127.0.0.1", port),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}/app"
