"""Screenshots of an HTML file with headless Chromium (Debian's ``chromium`` package)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = (
    "chromium is not on PATH: install it (Debian: `sudo apt-get install -y chromium`; "
    "`.ci/run` does this before the tests)"
)


def find_chromium() -> str | None:
    """The ``chromium`` executable, or ``None`` when it is not installed."""
    return shutil.which("chromium")


def screenshot(html: Path, png: Path, *, width: int, height: int, timeout_s: float = 120) -> str:
    """Render ``html`` (a local file) into ``png`` at ``width`` × ``height``; return the log.

    No network: the page is a ``file://`` URL and background networking is off. A
    throw-away profile directory keeps parallel runs apart.

    Raises:
        FileNotFoundError: chromium is not installed.
        subprocess.CalledProcessError: chromium failed.
    """
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [executable, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={png}", html.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout_s, check=True,
        )  # fmt: skip
    return done.stdout + done.stderr
