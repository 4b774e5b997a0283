"""Where the service runs blocking database work, off the event loop.

SQLite allows one writer at a time, and a connection that finds the database
locked waits in SQLite's busy handler, which sleeps whole milliseconds (1, 2,
5, 10 … ms) between tries.  Under load — a burst of replies while the sender
claims and marks rows — those sleeps, not the work, set the pace, and one side
can starve the other.  So on SQLite every database call of the service (the
conversation, the outbox sender, the scheduler's ticks, the dashboard and the
sandbox pages) goes through one thread: they queue in Python, first come
first served.  On PostgreSQL, where
rows are locked rather than the whole database, several threads work at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseThreads:
    """An executor for blocking database calls: one thread on SQLite, a pool on PostgreSQL."""

    def __init__(self, *, single_writer: bool, pool_size: int = 8) -> None:
        self.single_writer = single_writer
        self._executor = ThreadPoolExecutor(
            max_workers=1 if single_writer else pool_size, thread_name_prefix="duban-db"
        )

    @classmethod
    def for_engine(cls, engine: Engine) -> DatabaseThreads:
        return cls(single_writer=engine.dialect.name == "sqlite")

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function(*args, **kwargs)`` on a database thread and wait for it."""
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Finish the queued calls and stop the threads."""
        self._executor.shutdown(wait=True)
