"""Shared fixtures: settings pointing at a temporary SQLite file, a runtime on a manual clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings as hypothesis_settings

from core.clock import ManualClock
from core.config import BUNDLED_PLAN, Settings, load_settings
from core.runtime import Runtime, initialise, open_runtime

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    """An Asia/Shanghai time, e.g. local(2024, 2, 29, 9)."""
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


@pytest.fixture
def bundled_text() -> str:
    return BUNDLED_PLAN.read_text(encoding="utf-8")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The project's config.toml, with the database and files under tmp_path."""
    return load_settings(
        environ={
            "DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'duban.sqlite3'}",
            "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
            "DUBAN_SERVICE_DATA_DIR": str(tmp_path),
        }
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(local(2024, 2, 22, 10))


@pytest.fixture
def runtime(settings: Settings, clock: ManualClock) -> Iterator[Runtime]:
    """A migrated database with the bundled plan imported."""
    rt = open_runtime(settings, clock=clock)
    initialise(rt)
    yield rt
    rt.close()


def pytest_configure(config: pytest.Config) -> None:
    # python-telegram-bot 22 warns when time periods (RetryAfter.retry_after) are read as
    # numbers; the service reads them as timedelta, as this switch asks.  Under
    # filterwarnings=error the warning would otherwise replace the RetryAfter itself.
    os.environ.setdefault("PTB_TIMEDELTA", "true")


# Property tests run the same examples every time: the suite is deterministic.
hypothesis_settings.register_profile("duban", derandomize=True, database=None, print_blob=True)
hypothesis_settings.load_profile("duban")
