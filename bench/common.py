"""What every benchmark shares: scales, fixed moments, databases to create and drop, settings."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from core.config import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TZ = ZoneInfo("Asia/Shanghai")

# python-telegram-bot 22 reads time periods as timedelta with this switch (as the service does).
os.environ.setdefault("PTB_TIMEDELTA", "true")

DatabaseKind = Literal["sqlite", "postgresql"]
DATABASES: tuple[DatabaseKind, ...] = ("sqlite", "postgresql")
BENCHMARKS = ("import", "tick", "fanout", "inbound", "report", "simulate")

#: Where PostgreSQL is; the role may create databases.  Override with BENCH_PG_URL.
PG_BASE_URL = os.environ.get("BENCH_PG_URL", "postgresql://duban:duban@127.0.0.1:5432")
PG_PREFIX = "duban_bench_"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An Asia/Shanghai moment, e.g. ``local(2024, 2, 22, 9)``."""
    return datetime(year, month, day, hour, minute, tzinfo=TZ)


#: The bundled notice was issued on 2024-02-22; the moments every benchmark uses.
IMPORTED_AT = local(2024, 2, 22, 8, 0)
#: Before any rung of any checkpoint: an idle tick with no rung_run rows yet.
IDLE_BEFORE = local(2024, 2, 22, 8, 30)
#: The -7d rung of the refined-plan checkpoint (due 2024-02-29 18:00) fires at 09:00 that morning.
FIRING_AT = local(2024, 2, 22, 9, 0)
#: The inbound benchmark's clock: after that rung was dealt with, before the next (-3d, 02-26).
INBOUND_AT = local(2024, 2, 22, 10, 0)
#: The first quarter's 通报 goes to every county's office the first working morning after 03-25 18:00.
QUARTER_END_AT = local(2024, 3, 26, 9, 1)
#: The quarterly notification is generated a week after the first quarter's deadline (03-25 18:00).
REPORT_AT = local(2024, 4, 1, 9, 0)
REPORT_CHECKPOINT = "2024-q1"


@dataclass(frozen=True)
class Scale:
    """How many counties (jurisdictions) a scale holds, each importing the bundled notice."""

    name: str
    counties: int


FULL_SCALES = {"county": Scale("county", 1), "city": Scale("city", 10), "province": Scale("province", 100)}
QUICK_SCALES = {"county": Scale("county", 1), "city": Scale("city", 2), "province": Scale("province", 3)}


@dataclass(frozen=True)
class Sizes:
    """The sizes of the message-driven benchmarks."""

    fanout: int
    inbound: int  # reports per batch
    inbound_batches: int
    idle_repeats: int


FULL_SIZES = Sizes(fanout=3000, inbound=1000, inbound_batches=3, idle_repeats=5)
QUICK_SIZES = Sizes(fanout=300, inbound=100, inbound_batches=1, idle_repeats=3)


# --- databases -----------------------------------------------------------------------------


@dataclass
class Database:
    """One benchmark database: a SQLite file or a PostgreSQL database named ``duban_bench_*``."""

    kind: DatabaseKind
    name: str
    url: str
    folder: Path  # uploads, exports and (for SQLite) the database file live here

    def drop(self) -> None:
        """Remove the database and its folder."""
        if self.kind == "postgresql":
            # FORCE terminates our own leftover connections, but a non-superuser may not terminate an
            # autovacuum worker (just started on the tables the run wrote): wait for it to finish.
            for attempt in range(60):
                try:
                    _pg_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
                    break
                except psycopg.errors.InsufficientPrivilege:
                    if attempt == 59:
                        raise
                    time.sleep(1.0)
        shutil.rmtree(self.folder, ignore_errors=True)


def _pg_admin(statement: str, name: str) -> None:
    with psycopg.connect(f"{PG_BASE_URL}/postgres", autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(sql.Identifier(name)))


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(f"{PG_BASE_URL}/postgres", autocommit=True, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def create_database(kind: DatabaseKind, name: str, workdir: Path) -> Database:
    """A new, empty database (an existing one of the same name is dropped first)."""
    folder = workdir / f"{kind}-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if kind == "sqlite":
        return Database(kind, name, f"sqlite:///{folder / 'duban.sqlite3'}", folder)
    database = f"{PG_PREFIX}{name}"
    _pg_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
    _pg_admin("CREATE DATABASE {}", database)
    return Database(kind, database, f"postgresql+psycopg://{PG_BASE_URL.split('://', 1)[1]}/{database}", folder)


def bench_settings(database: Database, jurisdiction: str, **extra: str) -> Settings:
    """The project's config.toml, pointed at ``database``, with the office jurisdiction ``jurisdiction``."""
    return load_settings(environ=bench_environ(database, jurisdiction, **extra))


def bench_environ(database: Database, jurisdiction: str, **extra: str) -> dict[str, str]:
    """The ``DUBAN_…`` settings of :func:`bench_settings` (for a service run as a child process)."""
    return {
        "DUBAN_DATABASE_URL": database.url,
        "DUBAN_UPLOADS_DIR": str(database.folder / "files"),
        "DUBAN_SERVICE_DATA_DIR": str(database.folder),
        "DUBAN_PLAN_JURISDICTION": jurisdiction,
        "DUBAN_DIGEST_ENABLED": "false",
        "DUBAN_WEB_PORT": "0",
        **extra,
    }


# --- timing ----------------------------------------------------------------------------------


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` is the seconds so far (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []

    def elapsed() -> float:
        return (end[0] if end else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end.append(time.perf_counter())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def log(text: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    import sys

    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def telegram_env(base_url: str, base_file_url: str, token: str, username: str) -> dict[str, str]:
    """Settings that point python-telegram-bot at a fake Bot API server (pacing left as configured)."""
    return {
        "DUBAN_TELEGRAM_TOKEN": token,
        "DUBAN_TELEGRAM_BASE_URL": base_url,
        "DUBAN_TELEGRAM_BASE_FILE_URL": base_file_url,
        "DUBAN_TELEGRAM_BOT_USERNAME": username,
    }
