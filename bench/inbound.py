"""Inbound: one-line status reports handled per second by the real service (python-telegram-bot, polling).

The service is built with :func:`bot.service.build_service` and run with
:func:`bot.service.run_service` against :class:`tests.fakes.telegram_api.FakeTelegram`
(flood limits on).  N liaisons of the service's jurisdiction are bound first
(real code path); then N updates ``/report 县N 按计划推进 …`` are queued in the
fake in one go, and the clock runs from that push until N new
``status_report`` rows are in the database.  This is done for a few batches
of N (each from other liaisons) and the median rate is the figure.  The replies the reports
queue are delivered by the sender meanwhile, paced at 29/s, and are not waited for.

On PostgreSQL :func:`run_processes` measures the same with several service
processes (``bench/inbound_child.py``, Telegram in webhook mode: one process
alone may poll ``getUpdates``, any may take webhook posts), the fake POSTing
each batch's updates round-robin to their webhooks with up to 40 requests
open, as Telegram does.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select

from bench.common import INBOUND_AT, Database, bench_environ, bench_settings, median, stopwatch, telegram_env
from bench.data import bind_reporters, settle_outbox
from bench.fake_process import FakeTelegramInProcess, FakeTelegramProcess, start_fake
from bot.service import build_service, run_service
from core.clock import ManualClock, SystemClock
from core.escalation import Escalation, make_calendar
from core.runtime import open_runtime
from jobs.ticks import remind
from messages import Messages
from storage.models import InboundUpdate, StatusReport


# How often the benchmark counts the reports recorded.  Counting runs in the service's process (on one
# core, under one GIL): every 20 ms it took about 3% of the burst's CPU from the service.  A batch's
# time may come out up to this much long (under 1.5% of a county batch), never short.
POLL_S = 0.05


@dataclass
class InboundFigures:
    reports: int  # per batch
    batches: int
    rate: float  # median over the batches of status reports recorded per second
    rates: list[float]
    seconds: list[float]
    replies_sent: list[int]  # replies the fake accepted during each batch (the sender runs meanwhile)
    cpu: list[float]  # this process's CPU seconds per wall second during each batch (2 cores: at most 2)
    count_429: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prepare(database: Database, jurisdiction: str, count: int, *, first: int = 0) -> list[tuple[int, str]]:
    """Bind the reporters and bring the reminders up to the benchmark's clock (they are marked delivered)."""
    settings = bench_settings(database, jurisdiction)
    runtime = open_runtime(settings)
    try:
        escalation = Escalation(settings, Messages(settings.service.language, settings.tz), make_calendar(settings))
        remind(runtime, escalation, INBOUND_AT)
        settle_outbox(runtime)
        return [(r.user_id, r.text) for r in bind_reporters(runtime, jurisdiction, count, first=first)]
    finally:
        runtime.close()


async def run(
    database: Database,
    jurisdiction: str,
    count: int,
    *,
    batches: int = 1,
    timeout: float = 600.0,
    fake_in_process: bool = False,
) -> InboundFigures:
    """Push ``batches`` × ``count`` one-line reports, a batch at a time, timing each; see the module docstring.

    Every report comes from a different liaison.  The next batch is pushed as
    soon as the previous one is recorded (its replies may still be queued).
    """
    reporters = await asyncio.to_thread(_prepare, database, jurisdiction, count * batches)
    counter = create_engine(database.url)  # a plain engine: SQLite reads here take no write lock
    fake = start_fake(fake_in_process, global_per_second=30, per_chat_per_second=1)
    try:
        settings = bench_settings(
            database,
            jurisdiction,
            **telegram_env(fake.base_url, fake.base_file_url, fake.token, fake.bot_username),
        )
        service = build_service(settings, clock=ManualClock(INBOUND_AT), sender_clock=SystemClock())
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(run_service(service, stop, on_ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), 60)

        def recorded() -> int:
            with counter.connect() as connection:
                return int(connection.scalar(select(func.count()).select_from(StatusReport)) or 0)

        seconds: list[float] = []
        replies: list[int] = []
        cpu: list[float] = []
        try:
            for batch in range(batches):
                before = await asyncio.to_thread(recorded)
                sent_before = len(await asyncio.to_thread(fake.sent_times))
                cpu_before = time.process_time()
                with stopwatch() as elapsed:
                    await asyncio.to_thread(fake.user_messages, reporters[batch * count : (batch + 1) * count])
                    while await asyncio.to_thread(recorded) < before + count:
                        if elapsed() > timeout:
                            done = await asyncio.to_thread(recorded) - before
                            raise TimeoutError(f"only {done} of {count} recorded")
                        await asyncio.sleep(POLL_S)
                seconds.append(elapsed())
                cpu.append((time.process_time() - cpu_before) / elapsed())
                replies.append(len(await asyncio.to_thread(fake.sent_times)) - sent_before)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
        return _figures(counter, fake, count, batches, seconds, replies, cpu)
    finally:
        fake.stop()
        counter.dispose()


ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "bench-inbound"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_child(environ: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], int]:
    """One service process; returns it and its web port once it is ready."""
    with log.open("a") as handle:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.inbound_child"],
            env={**os.environ, **environ},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
        )
    assert child.stdout is not None
    line = child.stdout.readline()  # "ready PORT", or "" when it died
    if not line.startswith("ready "):
        child.kill()
        raise RuntimeError(f"an inbound service process did not start; see {log}")
    return child, int(line.split()[1])


async def run_processes(
    database: Database,
    jurisdiction: str,
    count: int,
    *,
    processes: int = 2,
    batches: int = 1,
    timeout: float = 600.0,
) -> InboundFigures:
    """:func:`run` with ``processes`` service processes on one PostgreSQL database (webhook mode).

    ``cpu`` is the service processes' CPU seconds per wall second together
    (2 cores: at most 2).
    """
    assert database.kind == "postgresql", "several processes share a PostgreSQL database only"
    # Other liaisons than the one-process run's (which may have run on this database before).
    reporters = await asyncio.to_thread(_prepare, database, jurisdiction, count * batches, first=1_000_000)
    counter = create_engine(database.url)
    fake = start_fake(False, global_per_second=30, per_chat_per_second=1)
    assert isinstance(fake, FakeTelegramProcess)
    children: list[subprocess.Popen[str]] = []
    log = database.folder / "inbound-services.log"
    try:
        urls = []
        for number in range(processes):
            environ = bench_environ(
                database,
                jurisdiction,
                **telegram_env(fake.base_url, fake.base_file_url, fake.token, fake.bot_username),
                DUBAN_SERVICE_DATA_DIR=str(database.folder / f"p{number}"),
                DUBAN_TELEGRAM_MODE="webhook",
                DUBAN_TELEGRAM_WEBHOOK_URL="https://duban.example/telegram/webhook",
                DUBAN_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
            )
            child, port = await asyncio.to_thread(_start_child, environ, log)
            children.append(child)
            urls.append(f"http://127.0.0.1:{port}/telegram/webhook")

        def recorded() -> int:
            with counter.connect() as connection:
                return int(connection.scalar(select(func.count()).select_from(StatusReport)) or 0)

        seconds: list[float] = []
        replies: list[int] = []
        cpu: list[float] = []
        for batch in range(batches):
            before = await asyncio.to_thread(recorded)
            sent_before = len(await asyncio.to_thread(fake.sent_times))
            cpu_before = sum(_cpu_seconds(c.pid) for c in children)
            with stopwatch() as elapsed:
                posting = asyncio.ensure_future(
                    asyncio.to_thread(
                        functools.partial(
                            fake.post_updates,
                            urls,
                            WEBHOOK_SECRET,
                            reporters[batch * count : (batch + 1) * count],
                            # the one-process run on this database took the fake's first update ids
                            update_id_offset=10_000_000,
                        )
                    )
                )
                while await asyncio.to_thread(recorded) < before + count:
                    if elapsed() > timeout:
                        done = await asyncio.to_thread(recorded) - before
                        raise TimeoutError(f"only {done} of {count} recorded")
                    if posting.done():
                        posting.result()  # raises what went wrong
                    await asyncio.sleep(POLL_S)
                posted = await posting
            if posted["posted"] != count:
                raise RuntimeError(f"posted {posted['posted']} of {count} updates")
            seconds.append(elapsed())
            cpu.append((sum(_cpu_seconds(c.pid) for c in children) - cpu_before) / elapsed())
            replies.append(len(await asyncio.to_thread(fake.sent_times)) - sent_before)
        return _figures(counter, fake, count, batches, seconds, replies, cpu)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                await asyncio.to_thread(child.wait, 60)
            except subprocess.TimeoutExpired:
                child.kill()
        fake.stop()
        counter.dispose()


def _figures(
    counter: Engine,
    fake: FakeTelegramProcess | FakeTelegramInProcess,
    count: int,
    batches: int,
    seconds: list[float],
    replies: list[int],
    cpu: list[float],
) -> InboundFigures:
    """The run's figures, once every update posted is in the inbox (none was lost on the way)."""
    with counter.connect() as connection:
        handled = connection.scalar(select(func.count()).select_from(InboundUpdate))
    assert handled is not None and handled >= count * batches
    rates = [count / s for s in seconds]
    return InboundFigures(
        reports=count,
        batches=batches,
        rate=median(rates),
        rates=rates,
        seconds=seconds,
        replies_sent=replies,
        cpu=cpu,
        count_429=fake.count_429(),
    )
