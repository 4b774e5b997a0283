"""``duban run`` as a process under bad luck: killed with reports queued inbound, a huge request body.

Nothing a person sent and Telegram was told we have is lost, and nothing is
recorded twice: the update is in the durable inbox before it is acknowledged
(the webhook's 200, the next getUpdates offset), and is handled from there
after a restart.
"""

from __future__ import annotations

import asyncio
import select
import signal
import socket
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select as sql_select

from core.binding import issue_code, redeem_code
from core.config import PersonRole, load_settings
from core.runtime import current_plan, initialise, open_runtime
from storage.models import StatusReport
from storage.queries import find_unit
from tests.fakes.telegram_api import FakeTelegram
from tests.processes import service_env, start_service, telegram_settings, wait_until

LIAISONS = (8101, 8102, 8103)  # three liaisons of 县发改局, who answer for task 12
REPORTS = 300
WEBHOOK_SECRET = "inbound-faults"


def prepare(env: dict[str, str]) -> None:
    """The database initialised, with the liaisons bound."""
    runtime = open_runtime(load_settings(environ={k: v for k, v in env.items() if k.startswith("DUBAN_")}))
    try:
        initialise(runtime)
        now = datetime.now(UTC)
        with runtime.transaction() as session:
            plan = current_plan(session, runtime.settings)
            assert plan is not None
            unit = find_unit(session, plan.jurisdiction_id, "县发改局")
            assert unit is not None
            for chat in LIAISONS:
                code = issue_code(session, unit, PersonRole.LIAISON, now=now, ttl=timedelta(days=1), created_by="test")
                bound = redeem_code(
                    session,
                    code.code,
                    platform="telegram",
                    user_id=str(chat),
                    chat_id=str(chat),
                    display_name="",
                    username="",
                    now=now,
                )
                assert bound.binding is not None
    finally:
        runtime.close()


def recorded_notes(env: dict[str, str]) -> list[str]:
    runtime = open_runtime(load_settings(environ={k: v for k, v in env.items() if k.startswith("DUBAN_")}))
    try:
        with runtime.transaction() as session:
            return list(session.scalars(sql_select(StatusReport.note)))
    finally:
        runtime.close()


def note(i: int) -> str:
    return f"第{i:03d}次进展"


def report_updates(fake: FakeTelegram) -> list[dict[str, object]]:
    """Three hundred one-line reports, queued at the fake Telegram (each is also returned)."""
    return [fake.user_message(LIAISONS[i % len(LIAISONS)], f"/report 12 按计划推进 {note(i)}") for i in range(REPORTS)]


def assert_each_recorded_once(env: dict[str, str]) -> None:
    counts = Counter(recorded_notes(env))
    assert set(counts) == {note(i) for i in range(REPORTS)}, f"lost: {REPORTS - len(counts)}"
    assert max(counts.values()) == 1, counts.most_common(3)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0, log.read_text(errors="replace")


@pytest.mark.timeout(180)
def test_killed_while_polling_loses_no_report_and_records_none_twice(tmp_path: Path) -> None:
    with FakeTelegram(enforce_limits=False) as fake:
        env = service_env(tmp_path, **telegram_settings(fake.base_url, fake.base_file_url, fake.token))
        prepare(env)
        report_updates(fake)
        log = tmp_path / "service.log"

        first = start_service(env, log)
        try:
            # Killed as soon as Telegram has been told it may forget some: the next getUpdates offset.
            wait_until(lambda: fake.pending_updates < REPORTS, 60, "a batch to be acknowledged")
        finally:
            kill(first)
        assert fake.pending_updates < REPORTS
        assert len(recorded_notes(env)) < REPORTS, "killed too late to test anything"

        second = start_service(env, log)
        try:
            wait_until(lambda: len(recorded_notes(env)) >= REPORTS, 90, "every report to be recorded")
            wait_until(lambda: fake.pending_updates == 0, 30, "every update to be acknowledged")
        finally:
            stop(second, log)
        assert_each_recorded_once(env)


@pytest.mark.timeout(240)
def test_killed_while_answering_webhooks_loses_no_report_and_records_none_twice(tmp_path: Path) -> None:
    with FakeTelegram(enforce_limits=False) as fake:
        env = service_env(
            tmp_path,
            **telegram_settings(fake.base_url, fake.base_file_url, fake.token),
            DUBAN_TELEGRAM_MODE="webhook",
            DUBAN_TELEGRAM_WEBHOOK_URL="https://duban.example/telegram/webhook",
            DUBAN_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
            DUBAN_WEB_PORT=str(free_port()),
        )
        url = f"http://127.0.0.1:{env['DUBAN_WEB_PORT']}/telegram/webhook"
        prepare(env)
        updates = report_updates(fake)
        log = tmp_path / "service.log"

        first = start_service(env, log)
        try:
            wait_until(lambda: fake.webhook is not None, 60, "the webhook to be set")
            # Killed in the middle: half the updates answered 200, others in flight or not yet sent.
            statuses = asyncio.run(post_all(fake, url, updates, kill_after=(REPORTS // 2, first)))
        finally:
            if first.poll() is None:
                kill(first)
            first.wait(10)
        assert statuses.count(200) >= REPORTS // 2
        assert set(statuses) <= {200, None}, Counter(statuses)

        second = start_service(env, log)
        try:
            wait_until(lambda: _answers(int(env["DUBAN_WEB_PORT"])), 60, "the service to listen")
            # Telegram delivers again what was not answered 200, and now and then also what was.
            again = [u for u, status in zip(updates, statuses, strict=True) if status != 200]
            acknowledged = [u for u, status in zip(updates, statuses, strict=True) if status == 200]
            assert set(asyncio.run(post_all(fake, url, again + acknowledged[-20:]))) <= {200}
            wait_until(lambda: len(recorded_notes(env)) >= REPORTS, 120, "every report to be recorded")
        finally:
            stop(second, log)
        assert_each_recorded_once(env)


async def post_all(
    fake: FakeTelegram,
    url: str,
    updates: list[dict[str, object]],
    *,
    kill_after: tuple[int, subprocess.Popen[bytes]] | None = None,
) -> list[int | None]:
    """Post updates as Telegram does, several connections at once; None where no answer came.

    With ``kill_after`` the service is killed (SIGKILL) as soon as that many were answered 200.
    """
    gate = asyncio.Semaphore(20)
    answered = 0

    async def post(update: dict[str, object]) -> int | None:
        nonlocal answered
        async with gate:
            if kill_after is not None and kill_after[1].poll() is not None:
                return None
            try:
                status = await fake.post_update_to_async(url, update, WEBHOOK_SECRET)
            except httpx.HTTPError:
                return None
            answered += status == 200
            if kill_after is not None and answered == kill_after[0]:
                kill_after[1].send_signal(signal.SIGKILL)
            return status

    return list(await asyncio.gather(*(post(update) for update in updates)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def offer_body(port: int, path: str, total: int, *, declare_length: bool, headers: str = "") -> tuple[bytes, int]:
    """POST a ``total``-byte body, produced as it goes (never held whole), until the server answers.

    Returns the server's answer and how many body bytes it let us send.
    """
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{headers}"
    head += f"Content-Length: {total}\r\n" if declare_length else "Transfer-Encoding: chunked\r\n"
    chunk = b"[" + b"0," * (32 * 1024 - 1)
    framed = chunk if declare_length else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall((head + "\r\n").encode())
        while not answer:
            readable, writable, _ = select.select([connection], [connection] if sent < total else [], [], 30)
            if readable:
                answer = connection.recv(4096)
                break
            if not writable:
                raise AssertionError("the server neither read nor answered")
            try:
                connection.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                answer = connection.recv(4096)
                break
            sent += len(chunk)
    return answer, sent


@pytest.mark.timeout(120)
def test_a_400_mb_body_is_refused_without_being_read_into_memory(tmp_path: Path) -> None:
    port = free_port()
    with FakeTelegram(enforce_limits=False) as fake:
        env = service_env(
            tmp_path,
            **telegram_settings(fake.base_url, fake.base_file_url, fake.token),
            DUBAN_TELEGRAM_MODE="webhook",
            DUBAN_TELEGRAM_WEBHOOK_URL="https://duban.example/telegram/webhook",
            DUBAN_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
            DUBAN_WEB_PORT=str(port),
            DUBAN_WEB_SANDBOX="on",
        )
        log = tmp_path / "service.log"
        service = start_service(env, log)
        try:
            wait_until(lambda: _answers(port), 60, "the service to listen")
            before = rss_kib(service.pid)
            total = 400 * 1024 * 1024
            secret = f"X-Telegram-Bot-Api-Secret-Token: {WEBHOOK_SECRET}\r\n"
            offers = [
                ("/telegram/webhook", True),  # declared: refused before a byte is read
                ("/telegram/webhook", False),  # chunked: refused once 1 MB has been counted
                ("/sandbox/send", True),  # an upload: its own cap, the file size limit
                ("/office/login/secret", True),  # a form
            ]
            for path, declare_length in offers:
                answer, sent = offer_body(port, path, total, declare_length=declare_length, headers=secret)
                assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
                assert sent < total // 4, path
            grown = rss_kib(service.pid) - before
            assert grown < 20 * 1024, f"RSS grew by {grown} KiB"
        finally:
            stop(service, log)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
