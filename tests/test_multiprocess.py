"""Several ``duban run`` processes on one PostgreSQL database, one killed mid fan-out; one process per SQLite file."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from core.binding import issue_code, redeem_code
from core.checkpoints import add_adhoc_checkpoint
from core.config import Ladder, PersonRole, Rung, load_settings
from core.durations import parse_offset
from core.runtime import current_plan, open_runtime
from storage.models import Assignment, OutboxMessage, RungRun, Task, Unit
from tests.databases import PostgresTemplate
from tests.fakes.telegram_api import FakeTelegram
from tests.processes import ROOT, service_env, start_service, telegram_settings, wait_until

PER_UNIT = 3


def process_env(database_url: str, tmp_path: Path, fake: FakeTelegram, name: str) -> dict[str, str]:
    """One of several processes on one PostgreSQL database, each with its own data folder."""
    return service_env(
        tmp_path,
        DUBAN_DATABASE_URL=database_url,
        DUBAN_SERVICE_DATA_DIR=str(tmp_path / name),
        **telegram_settings(fake.base_url, fake.base_file_url, fake.token),
        DUBAN_TELEGRAM_MODE="webhook",  # any process may take updates; none polls
        DUBAN_TELEGRAM_WEBHOOK_URL="https://duban.example/telegram/webhook",
        DUBAN_TELEGRAM_WEBHOOK_SECRET="multi-process",
        DUBAN_ESCALATION_RESOLUTION="1s",
        DUBAN_OUTBOX_LEASE="3s",
    )


def bind_liaisons(database_url: str) -> tuple[list[int], datetime]:
    """Three liaisons for every unit of county task 71, and a round whose one rung fires in ten seconds."""
    runtime = open_runtime(load_settings(environ={"DUBAN_DATABASE_URL": database_url}))
    now = datetime.now(UTC)
    chats = []
    try:
        with runtime.transaction() as session:
            plan = current_plan(session, runtime.settings)
            assert plan is not None
            units = session.scalars(
                select(Unit)
                .join(Assignment, Assignment.unit_id == Unit.id)
                .join(Task, Task.id == Assignment.task_id)
                .where(Task.plan_id == plan.id, Task.annex == "county", Task.number == 71, Assignment.active.is_(True))
                .order_by(Unit.id)
            ).all()
            for unit in units:
                for _ in range(PER_UNIT):
                    chat = 90_000 + len(chats)
                    code = issue_code(
                        session, unit, PersonRole.LIAISON, now=now, ttl=timedelta(days=1), created_by="test"
                    ).code
                    result = redeem_code(
                        session,
                        code,
                        platform="telegram",
                        user_id=str(chat),
                        chat_id=str(chat),
                        display_name="",
                        username="",
                        now=now,
                    )
                    assert result.binding is not None
                    chats.append(chat)
            ladder = Ladder(
                rungs=[Rung(offset=parse_offset("-140s"), roles=[PersonRole.LIAISON])],
                repeat_cap=0,
                follow_calendar=False,
            )
            due = now + timedelta(seconds=150)
            add_adhoc_checkpoint(
                session,
                plan,
                key="multi",
                title="多进程演练",
                due_at=due,
                now=now,
                tasks=["county-71"],
                ladder=ladder,
                actor="test",
            )
    finally:
        runtime.close()
    return chats, now + timedelta(seconds=10)


def undelivered_reminders(database_url: str) -> int:
    """Reminder rows still queued or claimed by a process (the killed one's, until its lease runs out)."""
    runtime = open_runtime(load_settings(environ={"DUBAN_DATABASE_URL": database_url}))
    try:
        with runtime.transaction() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.kind == "reminder", OutboxMessage.state.in_(("queued", "sending")))
                )
                or 0
            )
    finally:
        runtime.close()


@pytest.mark.timeout(330)
def test_three_processes_share_the_fan_out_and_survive_one_killed(
    tmp_path: Path, postgres_template: PostgresTemplate
) -> None:
    database_url = postgres_template.copy()
    chats, fires_at = bind_liaisons(database_url)
    log = tmp_path / "services.log"
    with FakeTelegram(global_per_second=30, per_chat_per_second=1) as fake:
        processes = [start_service(process_env(database_url, tmp_path, fake, f"p{n}"), log) for n in range(3)]
        try:
            # Generous waits: three services starting on a loaded 2-core machine can take a minute.
            wait_until(lambda: len(fake.sent) >= 30, 120, f"the fan-out to start (rung at {fires_at:%H:%M:%S})")
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait(10)
            wait_until(lambda: {m.chat_id for m in fake.sent} >= set(chats), 120, "every liaison to be reminded")
            # The killed process's row in flight comes back after its lease: a repeat, if any, is sent by then.
            wait_until(lambda: undelivered_reminders(database_url) == 0, 30, "every reminder row to be delivered")
        finally:
            if processes[0].poll() is None:  # the test failed before killing it
                processes[0].kill()
                processes[0].wait(10)
            for process in processes[1:]:
                process.send_signal(signal.SIGTERM)
            exits = [process.wait(20) for process in processes[1:]]
        assert exits == [0, 0], log.read_text(errors="replace")[-3000:]
        per_chat = Counter(m.chat_id for m in fake.sent if m.chat_id in set(chats))
        assert set(per_chat) == set(chats)
        assert sum(count - 1 for count in per_chat.values()) <= 1, per_chat.most_common(3)
        assert fake.count_429 == 0, "three processes together kept to Telegram's 30 messages a second"

    runtime = open_runtime(load_settings(environ={"DUBAN_DATABASE_URL": database_url}))
    try:
        with runtime.transaction() as session:
            runs = session.execute(
                select(RungRun.rung_key, RungRun.role, func.count()).group_by(RungRun.rung_key, RungRun.role)
            ).all()
            queued = session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "reminder")
            )
    finally:
        runtime.close()
    assert [(key, role, count) for key, role, count in runs if key == "-140s"] == [("-140s", "liaison", 1)]
    assert queued == len(chats), "one reminder row per liaison: the tick ran once"


def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    log = tmp_path / "first.log"
    first = start_service(env, log)
    try:
        wait_until(lambda: "已启动" in log.read_text(errors="replace"), 30, "the first process")
        second = subprocess.run(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 2
        assert "SQLite 只支持单进程运行" in second.stderr and "PostgreSQL" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0


def test_health_and_metrics_endpoints(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    log = tmp_path / "service.log"
    process = start_service(env, log)
    try:
        wait_until(lambda: "已启动" in log.read_text(errors="replace"), 30, "the service")
        url = next(word for word in log.read_text().split() if word.startswith("http://"))
        health = httpx.get(f"{url}healthz").json()
        assert health["status"] == "ok" and health["scheduler"] is True
        metrics = httpx.get(f"{url}metrics").text
        for name in ("duban_outbox_messages", "duban_sends_total", "duban_tick_seconds_count", "duban_scheduler 1.0"):
            assert name in metrics or name.split()[0] in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    # one JSON event per line
    import json

    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert events and all({"ts", "level", "logger", "event"} <= set(e) for e in events)
