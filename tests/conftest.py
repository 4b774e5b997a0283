"""Shared fixtures: settings pointing at this test's own database, a runtime on a manual clock."""

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
from tests.databases import PostgresTemplate, SqliteTemplate, postgres_available

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    """An Asia/Shanghai time, e.g. local(2024, 2, 29, 9)."""
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


@pytest.fixture
def bundled_text() -> str:
    return BUNDLED_PLAN.read_text(encoding="utf-8")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests in modules marked ``both_databases`` run on SQLite and on PostgreSQL."""
    if "db_backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_databases") is not None
        metafunc.parametrize("db_backend", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    template = PostgresTemplate()
    yield template
    template.close()


@pytest.fixture
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of this test's own database: a copy of the prepared template."""
    if request.param == "postgresql":
        template: PostgresTemplate = request.getfixturevalue("postgres_template")
        url = template.copy()
        yield url
        template.drop(url)
    else:
        yield request.getfixturevalue("sqlite_template").copy_to(tmp_path)


@pytest.fixture
def settings(tmp_path: Path, db_backend: str) -> Settings:
    """The project's config.toml, with this test's database and files under tmp_path."""
    return load_settings(
        environ={
            "DUBAN_DATABASE_URL": db_backend,
            "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
            "DUBAN_SERVICE_DATA_DIR": str(tmp_path),
            "DUBAN_REPORT_FILE_WORKERS": "0",  # files written in-process: no processes to start per test
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
