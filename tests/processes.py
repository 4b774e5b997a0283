"""Running ``duban run`` as a real process in tests, and waiting for what it does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def service_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``duban run`` under test.

    The project's config.toml, a SQLite file, uploads and data in ``tmp_path``,
    any free port; ``settings`` (``DUBAN_…`` names) add to it or override it.
    """
    return {
        **os.environ,
        "DUBAN_CONFIG": str(ROOT / "config.toml"),
        "DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'duban.sqlite3'}",
        "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
        "DUBAN_SERVICE_DATA_DIR": str(tmp_path),
        "DUBAN_WEB_PORT": "0",
        "DUBAN_REPORT_FILE_WORKERS": "0",
        "PTB_TIMEDELTA": "true",
        **settings,
    }


def telegram_settings(base_url: str, base_file_url: str, token: str) -> dict[str, str]:
    """The settings that point ``duban run`` at a (fake) Bot API server."""
    return {
        "DUBAN_TELEGRAM_TOKEN": token,
        "DUBAN_TELEGRAM_BASE_URL": base_url,
        "DUBAN_TELEGRAM_BASE_FILE_URL": base_file_url,
    }


def start_service(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m bot run`` with this environment, its output appended to ``log``."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until ``condition`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
