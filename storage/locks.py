"""Who may run: one process per SQLite file, one scheduler among several processes on PostgreSQL.

SQLite is the single-process default: ``duban run`` takes an exclusive lock on
a file beside the database, and a second process is refused with a message
that says why.  On PostgreSQL any number of processes serve chat and send the
outbox, and exactly one of them runs the scheduled jobs (reminder ticks, the
digest): the one holding a session-level advisory lock on a connection it
keeps open.  When that process dies its connection closes, PostgreSQL
releases the lock, and the next process to ask takes over.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

log = logging.getLogger("duban.locks")

# An arbitrary 64-bit key naming "the duban scheduler" among advisory locks.
SCHEDULER_LOCK_KEY = 0x6475_6261_6E00_0001


class AnotherProcess(RuntimeError):
    """A second ``duban run`` on a SQLite database."""


class SqliteProcessLock:
    """An exclusive lock file beside the SQLite database for the life of the process."""

    def __init__(self, engine: Engine) -> None:
        database = make_url(str(engine.url)).database or ""
        self.path = Path(f"{database}.run-lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise AnotherProcess(
                f"另一个 duban 进程({holder})正在使用这个 SQLite 数据库。SQLite 只支持单进程运行;"
                f"需要多个进程时请改用 PostgreSQL(DUBAN_DATABASE_URL=postgresql://…)。"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class SchedulerLease:
    """Whether this process runs the scheduled jobs now (always, on SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self.held = not self.postgres

    def holds(self) -> bool:
        """True when this process is the scheduler; tries to become it when nobody is."""
        if not self.postgres:
            return True
        try:
            if self._connection is None or self._connection.closed:
                self._connection = self.engine.connect()
                self.held = False
            if self.held:
                self._connection.execute(text("SELECT 1"))  # still connected, so still ours
            else:
                got = self._connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEDULER_LOCK_KEY}
                ).scalar()
                self.held = bool(got)
                if self.held:
                    log.info("this process now runs the scheduled jobs")
            self._connection.commit()
        except Exception:  # a lost connection loses the lock with it
            log.warning("scheduler lease connection lost", exc_info=True)
            self.held = False
            self._drop()
        return self.held

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # closing a broken connection may fail too
                log.debug("closing the lease connection failed", exc_info=True)
            self._connection = None

    def release(self) -> None:
        if self.postgres and self._connection is not None and self.held:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEDULER_LOCK_KEY})
                self._connection.commit()
            except Exception:
                log.debug("unlock failed; closing the connection releases it", exc_info=True)
        self.held = not self.postgres
        self._drop()
