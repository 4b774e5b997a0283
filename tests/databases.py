"""Test databases: a fresh SQLite file or PostgreSQL database per test, copied from a prepared template.

The template (schema migrated, bundled plan imported, configured checkpoints
synced at the tests' start time) is built once per session; each test gets its
own copy, which costs milliseconds instead of a full import.  PostgreSQL is
used where a test module asks for both databases and a server answers at
``DUBAN_TEST_POSTGRES_URL`` (default: the role CI creates on 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.clock import ManualClock
from core.config import load_settings
from core.runtime import initialise, open_runtime

POSTGRES_ADMIN_URL = os.environ.get("DUBAN_TEST_POSTGRES_URL", "postgresql://duban:duban@127.0.0.1:5432/postgres")
TEMPLATE_TIME = datetime(2024, 2, 22, 10, tzinfo=ZoneInfo("Asia/Shanghai"))


def _prepare(url: str) -> None:
    runtime = open_runtime(load_settings(environ={"DUBAN_DATABASE_URL": url}), clock=ManualClock(TEMPLATE_TIME))
    try:
        initialise(runtime)
    finally:
        runtime.close()


class SqliteTemplate:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "template.sqlite3"
        _prepare(f"sqlite:///{self.path}")
        with sqlite3.connect(self.path) as connection:  # fold the WAL into the main file before copying
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def copy_to(self, folder: Path) -> str:
        target = folder / "duban.sqlite3"
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target}"


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=3
    )


def postgres_available() -> str | None:
    """None when a server answers, else why not.  A missing driver is an error, not a reason to skip."""
    import psycopg

    try:
        with _admin_connection() as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
    return None


def _url_for(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


class PostgresTemplate:
    def __init__(self) -> None:
        self.name = f"duban_tpl_{uuid.uuid4().hex[:10]}"
        with _admin_connection() as connection:
            connection.execute(f'CREATE DATABASE "{self.name}"')
        _prepare(_url_for(self.name))
        self.copies: list[str] = []

    def copy(self) -> str:
        name = f"duban_t_{uuid.uuid4().hex[:12]}"
        with _admin_connection() as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        self.copies.append(name)
        return _url_for(name)

    def empty(self) -> str:
        name = f"duban_e_{uuid.uuid4().hex[:12]}"
        with _admin_connection() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.copies.append(name)
        return _url_for(name)

    def drop(self, url: str) -> None:
        _drop(url.rpartition("/")[2])

    def close(self) -> None:
        for name in [*self.copies, self.name]:
            _drop(name)


def _drop(name: str) -> None:
    """Drop a test database.  An autovacuum worker may still be in it, and a role that is not
    superuser cannot terminate that: wait for it to finish, then give up (the cluster is the
    test run's own)."""
    import psycopg

    for _ in range(50):
        try:
            with _admin_connection() as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            time.sleep(0.2)
