"""``duban run``: the service — chat adapters, the scheduler, the outbox sender and the web server, in one process.

Everything is built here at start-up from the settings and passed down; the
order matters: database first, then the core, then the transports the sender
needs, then the things that produce work (chat adapters, scheduler).  Stopping
(SIGTERM/SIGINT) runs the same list backwards and lets the send in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from telegram.ext import Application

from bot.inbox import Inbox
from bot.logs import configure_logging
from bot.metrics import Metrics
from bot.sandbox import SandboxHub
from core.clock import Clock, SystemClock
from core.config import Settings
from core.conversation import Conversation
from core.digest import Digest
from core.documents import FileFormat, FileWriter
from core.escalation import Escalation, make_calendar
from core.office import OfficeRequests, export_folder
from core.quarter_end import DueNotification
from core.runtime import Runtime, initialise, open_runtime
from jobs.scheduler import build_scheduler
from jobs.sender import OutboxSender, Transport
from jobs.ticks import (
    drop_stale_drafts,
    expire_bookkeeping,
    prepare_county,
    queue_written,
    remind,
    send_digest,
    tick,
)

if TYPE_CHECKING:
    from bot.wecom.adapter import WeComAdapter
from messages import Messages
from storage.locks import AnotherProcess, SchedulerLease, SqliteProcessLock
from storage.threads import DatabaseThreads

log = logging.getLogger("duban.service")


@dataclass
class Service:
    """The assembled service; build it with :func:`build_service`."""

    settings: Settings
    runtime: Runtime
    messages: Messages
    conversation: Conversation
    escalation: Escalation
    digest: Digest
    sender: OutboxSender
    metrics: Metrics
    threads: DatabaseThreads
    inbox: Inbox
    files: FileWriter  # writes the 通报 files, in processes of its own (stopped with the service)
    transports: list[Transport] = field(default_factory=list)
    telegram: Application | None = None  # type: ignore[type-arg]
    wecom: WeComAdapter | None = None
    http: httpx.AsyncClient | None = None
    sandbox_hub: SandboxHub | None = None
    web_app: Any = None
    port: int | None = None

    def remind_now(self) -> int:
        """Run the reminder tick once now (the scheduler's job) and wake the sender."""
        report = remind(self.runtime, self.escalation, self.runtime.clock.now(), self.files)
        self.sender.wake()
        return report.queued


def build_service(settings: Settings, *, clock: Clock | None = None, sender_clock: Clock | None = None) -> Service:
    """Create every resource the service needs, from the settings."""
    from bot.sandbox import SandboxReader, SandboxTransport
    from bot.telegram_adapter import TelegramAdapter, TelegramTransport, build_application
    from bot.wecom.adapter import RobotTransport, WeComAdapter, WeComTransport, build_crypto, build_wecom_client

    runtime = open_runtime(settings, clock=clock or SystemClock())
    messages = Messages(settings.service.language, settings.tz)
    calendar = make_calendar(settings)
    digest = Digest(settings, messages, calendar)
    conversation = Conversation(
        settings,
        runtime.sessions,
        runtime.clock,
        messages,
        on_office_request=OfficeRequests(settings, messages, digest),
    )
    escalation = Escalation(settings, messages, calendar)
    transports: list[Transport] = []
    application = None
    if settings.telegram.enabled:
        application = build_application(settings)
        transports.append(TelegramTransport(application, settings))
    http = None
    wecom_client = None
    if settings.wecom.enabled or settings.wecom.robot_keys:
        http = httpx.AsyncClient(timeout=15.0, trust_env=False)
        if settings.wecom.enabled:
            wecom_client = build_wecom_client(settings, http)
            transports.append(WeComTransport(wecom_client, settings, messages))
        if settings.wecom.robot_keys:
            transports.append(RobotTransport(http, settings))
    # Every database call of the service goes through these (one thread on SQLite: see storage.threads).
    threads = DatabaseThreads.for_engine(runtime.engine)
    sandbox_hub = SandboxHub()
    transports.append(SandboxTransport(runtime, sandbox_hub, threads))
    send_clock = sender_clock or SystemClock()
    metrics = Metrics(
        runtime,
        conversation,
        send_clock=send_clock,
        platforms=[t.platform for t in transports],
        alert_after=settings.outbox.alert_after,
    )
    sender = OutboxSender(
        runtime.sessions,
        transports,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        clock=send_clock,
        lease=settings.outbox.lease,
        retry_base=settings.outbox.retry_base.total_seconds(),
        retry_cap=settings.outbox.retry_cap.total_seconds(),
        deadline_clock=runtime.clock,
        on_result=metrics.record_send,
        shared=runtime.engine.dialect.name == "postgresql",
        threads=threads,
    )
    inbox = Inbox(runtime, conversation, threads, messages, wake_sender=sender.wake)
    inbox.add_reader(SandboxReader(conversation))
    if application is not None:
        inbox.add_reader(TelegramAdapter(settings, conversation, threads, application.bot))
    wecom_adapter = None
    if http is not None and wecom_client is not None:
        crypto = build_crypto(settings)
        if crypto is None:
            log.warning("WeCom callback not configured (callback_token, encoding_aes_key): replies cannot be received")
        else:
            wecom_adapter = WeComAdapter(settings, conversation, threads, inbox, wecom_client, crypto)
            inbox.add_reader(wecom_adapter)
    return Service(
        settings=settings,
        runtime=runtime,
        messages=messages,
        conversation=conversation,
        escalation=escalation,
        digest=digest,
        sender=sender,
        transports=transports,
        telegram=application,
        wecom=wecom_adapter,
        http=http,
        sandbox_hub=sandbox_hub,
        metrics=metrics,
        threads=threads,
        inbox=inbox,
        files=FileWriter(messages, settings.report.file_processes()),
    )


class PortTaken(RuntimeError):
    """The web server's address is in use (another duban, or another program)."""


def listen(host: str, port: int) -> socket.socket:
    """The web server's listening socket, bound before the service starts; :class:`PortTaken` when in use."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise PortTaken(
            f"无法启动:{host}:{port} 已被占用(另一个 duban 或其他程序正在使用)。"
            "请先停止它,或在 config.toml 的 [web] port 中换一个端口。"
        ) from exc


async def run_service(
    service: Service, stop: asyncio.Event, *, on_ready: Callable[[Service], None] | None = None
) -> None:
    """Run until ``stop`` is set."""
    from bot.telegram_adapter import UpdateFeed, poll_updates, set_up_bot
    from bot.web import build_web_app

    settings = service.settings
    single_process = service.runtime.engine.dialect.name == "sqlite"
    process_lock = SqliteProcessLock(service.runtime.engine) if single_process else None
    if process_lock is not None:
        process_lock.acquire()  # AnotherProcess: a second duban run on this SQLite file
    try:  # before anything starts: a port in use is said in one line, with nothing to undo
        listener = listen(settings.web.host, settings.web.port)
    except PortTaken:
        if process_lock is not None:
            process_lock.release()
        await asyncio.to_thread(service.threads.close)
        service.runtime.close()
        raise
    lease = SchedulerLease(service.runtime.engine)
    await asyncio.to_thread(initialise, service.runtime)
    # One process alone may requeue everything left in flight; several share by lease.
    sender_task = asyncio.create_task(service.sender.run(stop, requeue_all_in_flight=single_process), name="outbox")
    # Everything stored and not yet handled (a crash, a restart) is handled first; then what comes.
    inbox_task = asyncio.create_task(service.inbox.run(stop), name="inbox")

    async def remind_job(now: Any) -> None:
        started = time.monotonic()
        # The tick and each county's 通报 are separate calls, so that on SQLite's one
        # database thread chat replies get their turn between counties; the files are
        # written off that thread, by the service's processes while the next counties are built.
        report, plan_ids = await service.threads.run(tick, service.runtime, service.escalation, now)
        report.notifications += await notify_counties(plan_ids, now)
        service.metrics.tick_seconds.observe(time.monotonic() - started)
        if report.notices:
            log.info(
                "reminders queued",
                extra={
                    "queued": report.queued,
                    "rungs": sorted({f"{n.checkpoint}:{n.rung}:{n.role}" for n in report.notices}),
                },
            )
        service.sender.wake()

    async def notify_counties(plan_ids: list[int], now: Any) -> list[int]:
        """jobs.ticks.notify_counties, each database step a call of its own on the database thread."""
        runtime, escalation, files = service.runtime, service.escalation, service.files
        window: deque[tuple[DueNotification, Future[list[Path]]]] = deque()
        queued: list[int] = []

        async def queue_oldest() -> None:
            due, written = window.popleft()
            with contextlib.suppress(Exception):  # queue_written logs it and records nothing
                await asyncio.wrap_future(written)
            queued.extend(await service.threads.run(queue_written, runtime, escalation, due, written, now))

        # Processes only when several counties' rounds close at once: for one county's file (the usual
        # deployment) starting them costs more than it saves.  They are stopped once the files are
        # written, so a year of idle minutes holds no writer processes in memory.
        side_by_side = files.workers > 0 and len(plan_ids) > 1
        depth = files.depth if side_by_side else 0
        try:
            for plan_id in plan_ids:
                for due in await service.threads.run(prepare_county, runtime, escalation, plan_id, now):
                    target: list[tuple[FileFormat, Path]] = [("xlsx", due.path)]
                    if side_by_side:
                        window.append((due, files.submit(due.view, target)))
                    else:  # written here: off the event loop and the database thread, as by a process
                        window.append((due, await asyncio.to_thread(files.submit, due.view, target, here=True)))
                    while len(window) > depth:
                        await queue_oldest()
            while window:
                await queue_oldest()
        finally:
            if side_by_side:
                await asyncio.to_thread(files.close)
        return queued

    async def is_scheduler() -> bool:
        holds = await service.threads.run(lease.holds)
        service.metrics.scheduler.set(1 if holds else 0)
        return holds

    async def digest_job(now: Any) -> None:
        await service.threads.run(send_digest, service.runtime, service.digest, now)
        service.sender.wake()

    async def housekeeping_job(now: Any) -> None:
        staging = service.conversation.staging_dir()
        await service.threads.run(drop_stale_drafts, service.runtime, staging, now)
        await service.threads.run(expire_bookkeeping, service.runtime, export_folder(settings), now)

    scheduler = build_scheduler(
        settings,
        service.runtime.clock,
        remind=remind_job,
        digest=digest_job,
        housekeeping=housekeeping_job,
        guard=is_scheduler,
    )
    scheduler.start()

    application = service.telegram
    polling_task = None
    if application is not None:
        await application.initialize()
        await set_up_bot(application, settings, service.messages)
        if settings.telegram.mode == "polling":
            polling_task = asyncio.create_task(
                poll_updates(
                    UpdateFeed(application.bot, settings),
                    service.inbox,
                    stop,
                    retry_base=settings.inbox.retry_base.total_seconds(),
                ),
                name="telegram-polling",
            )

    service.web_app = build_web_app(service)
    config = uvicorn.Config(
        service.web_app,
        host=settings.web.host,
        port=settings.web.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        log_config=None,  # uvicorn's own handlers would bypass the root handler's redaction
    )
    server = uvicorn.Server(config)
    server_task = asyncio.create_task(server.serve(sockets=[listener]), name="web")
    while not server.started and not server_task.done():
        await asyncio.sleep(0.01)
    if server.started:
        service.port = server.servers[0].sockets[0].getsockname()[1]
    # What start-up built (modules, mappers, prebuilt statements, compiled templates, the web app)
    # lives as long as the service: frozen, the cycle collector no longer walks it at every full
    # collection, ~8% of the CPU of a burst of replies (bench/README.md).  Thawed when it stops.
    gc.freeze()
    if on_ready is not None:
        on_ready(service)
    try:
        await stop.wait()
    finally:
        gc.unfreeze()  # first, so that a failure while stopping cannot leave the heap frozen
        log.info("stopping")
        # First nothing new comes in, then the send in flight completes, then the clients close.
        server.should_exit = True
        scheduler.shutdown(wait=False)
        if polling_task is not None:
            await polling_task
        with contextlib.suppress(asyncio.CancelledError):
            await server_task
        # What is being handled finishes; what is still pending is handled after the next start.
        await inbox_task
        await sender_task
        if application is not None:
            await application.shutdown()
        if service.http is not None:
            await service.http.aclose()
        await asyncio.to_thread(service.threads.close)
        await asyncio.to_thread(service.files.close)
        await asyncio.to_thread(lease.release)
        if process_lock is not None:
            process_lock.release()
        service.runtime.close()


def serve_forever(settings: Settings) -> int:
    """``duban run``: build the service and run it until SIGTERM or Ctrl-C; returns the exit status."""
    configure_logging(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        service = build_service(settings)

        def ready(service: Service) -> None:
            platforms = [t.platform for t in service.transports]
            print(
                f"duban 已启动: http://{settings.web.host}:{service.port}/  (平台: {', '.join(platforms)})", flush=True
            )

        await run_service(service, stop, on_ready=ready)

    try:
        asyncio.run(main())
    except (AnotherProcess, PortTaken) as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    return 0
