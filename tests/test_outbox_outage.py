"""Outages of the chat platform: nothing given up on silently, nothing sent late or early, the office told.

The service is built as in production (``build_service``) against the fake
Bot API, with one manual clock for the core and the sender: the test walks a
scaled clock a minute at a time, runs the reminder tick and sends what is due
at each moment (``drain(due_only=True)``), so half an hour of outage takes
seconds.  The health endpoint and the metrics are read over HTTP (httpx on the
ASGI app).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.service import Service, build_service
from bot.web import build_web_app
from core.checkpoints import add_adhoc_checkpoint
from core.clock import ManualClock
from core.config import Ladder, Settings
from core.conversation import Incoming
from core.runtime import current_plan, initialise
from storage.models import AuditLog, OutboxMessage, RungRun
from tests.conftest import local
from tests.fakes.telegram_api import FakeTelegram
from tests.support import invite
from tests.telegram_harness import telegram_settings

OFFICE_SECRET = "outbox-test-dashboard-secret"
LIAISONS = {101: "县发改局", 102: "县科经局", 103: "县财政局"}
LATE_BINDER = (104, "县住建局")  # binds during the outage: the round's reminder is queued then


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(enforce_limits=False) as server:  # pacing is tested elsewhere; the clock is scaled here
        yield server


@pytest.fixture
def outage_settings(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> Settings:
    return telegram_settings(
        tmp_path, fake, db_backend, DUBAN_OUTBOX_ALERT_AFTER="15m", DUBAN_WEB_DASHBOARD_SECRET=OFFICE_SECRET
    )


@pytest_asyncio.fixture
async def service(outage_settings: Settings) -> AsyncIterator[Service]:
    clock = ManualClock(local(2024, 2, 22, 8, 0))
    built = build_service(outage_settings, clock=clock, sender_clock=clock)
    initialise(built.runtime)
    assert built.telegram is not None
    await built.telegram.bot.initialize()
    yield built
    await built.telegram.bot.shutdown()
    built.threads.close()
    built.runtime.close()


def clock_of(service: Service) -> ManualClock:
    clock = service.runtime.clock
    assert isinstance(clock, ManualClock)
    return clock


async def step(service: Service, moment: datetime) -> None:
    """The scheduler's minute at ``moment``: the reminder tick, then everything due is sent."""
    clock_of(service).set(moment)
    service.remind_now()
    await service.sender.drain(timeout=20, due_only=True)


def bind(service: Service, user: int, unit: str) -> None:
    """A liaison sends /start CODE in a private Telegram chat (the welcome answers their message)."""
    service.conversation.handle(
        Incoming(
            platform="telegram",
            user_id=str(user),
            chat_id=str(user),
            update_key=f"bind-{user}",
            message_id=str(user),
            text=f"/start {invite(service.runtime, unit)}",
            display_name=f"联络员{user}",
        )
    )


async def health(service: Service) -> tuple[int, dict[str, object], str]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_web_app(service)), base_url="http://127.0.0.1"
    ) as client:
        answer = await client.get("/healthz")
        metrics = await client.get("/metrics")
    return answer.status_code, answer.json(), metrics.text


def failing_seconds(metrics: str, platform: str) -> float:
    found = re.search(rf'^duban_platform_failing_seconds{{platform="{platform}"}} (\S+)$', metrics, re.M)
    assert found is not None, metrics
    return float(found.group(1))


def add_spot_check(service: Service, *rungs: str) -> None:
    """A round "专项督查" due at 17:50 on 2024-02-22 whose liaisons are reminded at each of ``rungs``."""
    with service.runtime.transaction() as session:
        plan = current_plan(session, service.settings)
        assert plan is not None
        add_adhoc_checkpoint(
            session,
            plan,
            key="spot",
            title="专项督查",
            due_at=local(2024, 2, 22, 17, 50),
            now=clock_of(service).now(),
            ladder=Ladder.model_validate({"rungs": [{"offset": rung, "roles": ["liaison"]} for rung in rungs]}),
            actor="test",
        )


@pytest.mark.asyncio
async def test_a_thirty_minute_outage_delivers_every_reminder_once_after_it_and_none_before_its_rung(
    service: Service, fake: FakeTelegram
) -> None:
    for user, unit in LIAISONS.items():
        bind(service, user, unit)
    # A spot check due at 17:50 today: its liaisons are reminded at 08:50 and again at 14:50.
    add_spot_check(service, "-9h", "-3h")
    await step(service, local(2024, 2, 22, 8, 0))  # the welcomes go out before the outage

    # 08:50: the spot check's first rung is queued, and Telegram goes down before it is sent.
    clock_of(service).set(local(2024, 2, 22, 8, 50))
    service.remind_now()
    outage_start, outage_end = local(2024, 2, 22, 8, 50), local(2024, 2, 22, 9, 20)
    fake.start_outage(502)
    sent_before = len(fake.sent)
    moment = outage_start
    while moment < outage_end:
        if moment == local(2024, 2, 22, 9, 10):  # someone binds meanwhile: the round's reminder is queued
            bind(service, *LATE_BINDER)
        await step(service, moment)  # 09:00: the refined-plan round's -7d rung is queued during the outage
        moment += timedelta(minutes=2)
    delivered_during = fake.sent[sent_before:]
    fake.end_outage()
    while moment <= local(2024, 2, 22, 9, 40):
        await step(service, moment)
        moment += timedelta(minutes=2)
    await step(service, local(2024, 2, 22, 14, 50))  # the spot check's second rung

    with service.runtime.transaction() as session:
        reminders = list(
            session.scalars(select(OutboxMessage).where(OutboxMessage.kind.in_(("reminder", "escalation"))))
        )
        rung_times = {(run.checkpoint_id, run.rung_key): run.fires_at for run in session.scalars(select(RungRun))}
    before_end = [r for r in reminders if r.created_at < outage_end]
    assert {r.rung for r in before_end} >= {"-9h", "-7d"}  # both rounds queued before the platform came back
    assert any(r.chat_id == "104" for r in before_end)
    assert max(r.attempts for r in before_end) >= 5  # retried through the outage, not given up
    assert {r.state for r in reminders} == {"sent"}
    assert delivered_during == []
    for row in reminders:
        assert row.sent_at is not None
        assert row.sent_at >= rung_times.get((row.checkpoint_id, row.rung), row.created_at)  # never early
        if row.created_at < outage_end:
            assert row.sent_at >= outage_end
    # exactly once: one Telegram message per reminder row, none repeated
    by_id = {(str(m.chat_id), str(m.message_id)): m for m in fake.sent if m.method == "sendMessage"}
    assert all((r.chat_id, r.platform_message_id) in by_id for r in reminders)
    with service.runtime.transaction() as session:
        rows_sent = session.scalars(select(OutboxMessage.id).where(OutboxMessage.state == "sent")).all()
    assert len(by_id) == len(rows_sent)  # every message Telegram accepted is one row, sent once
    assert sum(1 for r in reminders if r.rung == "-3h") == len(LIAISONS) + 1  # the second rung, after it


@pytest.mark.asyncio
async def test_health_and_metrics_report_a_platform_failing_longer_than_alert_after_without_a_503(
    service: Service, fake: FakeTelegram
) -> None:
    bind(service, 101, "县发改局")  # a welcome to send
    fake.start_outage(503)
    start = clock_of(service).now()
    for minute in range(0, 21):
        await step(service, start + timedelta(minutes=minute))
        if minute == 10:
            status, body, metrics = await health(service)
            assert status == 200 and body["status"] == "ok" and body["failing"] == []
            assert 9 * 60 <= failing_seconds(metrics, "telegram") <= 10 * 60
    status, body, metrics = await health(service)
    assert status == 200  # a load balancer must not restart us for Telegram's outage
    assert body["status"] == "degraded"
    [failing] = body["failing"]  # type: ignore[misc]
    assert failing["platform"] == "telegram" and failing["seconds"] >= 15 * 60
    assert 'duban_platform_failing{platform="telegram"} 1.0' in metrics
    fake.end_outage()
    await step(service, start + timedelta(minutes=26))
    status, body, metrics = await health(service)
    assert status == 200 and body["status"] == "ok" and body["failing"] == []
    assert failing_seconds(metrics, "telegram") == 0.0


# --- the dashboard's 发件箱 ------------------------------------------------------------------------


async def stuck_and_expired(service: Service, fake: FakeTelegram) -> None:
    """王联络 of 县发改局 is bound; Telegram goes down for good at 08:50 before a round's rungs at 08:50 and 09:50.

    By 10:00 the 08:50 reminder has expired (the 09:50 rung made it out of date); the
    09:50 one and the refined-plan round's 09:00 one are being retried.
    """
    service.conversation.handle(
        Incoming(
            platform="telegram",
            user_id="101",
            chat_id="101",
            update_key="bind-101",
            message_id="1",
            text=f"/start {invite(service.runtime, '县发改局')}",
            display_name="王联络",
        )
    )
    add_spot_check(service, "-9h", "-8h")
    await step(service, local(2024, 2, 22, 8, 0))
    fake.start_outage(502)
    for hour, minute in ((8, 50), (9, 0), (9, 20), (9, 50), (10, 0)):
        await step(service, local(2024, 2, 22, hour, minute))


@contextlib.asynccontextmanager
async def office(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard, signed in with the dashboard secret (a Telegram bot is configured: sign-in is required)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_web_app(service)), base_url="http://127.0.0.1"
    ) as client:
        signed = await client.post(
            "/office/login/secret", data={"csrf": await csrf(client, "/office/login"), "secret": OFFICE_SECRET}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/office", signed.text
        yield client


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    token = re.search(r'name="csrf-token" content="([^"]+)"', (await client.get(path)).text)
    assert token is not None
    return token.group(1)


def reminders(service: Service) -> dict[str, OutboxMessage]:
    with service.runtime.transaction() as session:
        return {
            row.rung or "": row
            for row in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))
        }


@pytest.mark.asyncio
async def test_the_outbox_page_names_the_person_and_says_what_is_stuck_in_plain_words(
    service: Service, fake: FakeTelegram
) -> None:
    await stuck_and_expired(service, fake)
    async with office(service) as client:
        answer = await client.get("/office/outbox")
    assert answer.status_code == 200, answer.headers
    page = answer.text
    trouble = re.search(r"<h2>需要处理\((\d+)\)</h2>.*?</section>", page, re.S)
    assert trouble is not None, page
    assert trouble.group(1) == "3"  # the spot check's two, the refined-plan round's -7d one
    rows = trouble.group(0)
    assert rows.count("王联络(县发改局)") == 3 and rows.count("催办提醒") == 3
    assert "已过期未送达(平台或网络一直不可用)" in rows
    retry = reminders(service)["-8h"]
    assert f"重试中(第{retry.attempts}次未成功,下次 {service.messages.local(retry.next_attempt_at, '%H:%M')})" in rows
    assert rows.count("重新发送</button>") == 3
    assert "Telegram 已连续" in page and "分钟发送失败" in page  # failing longer than alert_after
    assert "绑定成功" in page and "已送达" in page  # the welcome, delivered before the outage
    for internal in ("reminder", "expired", "queued", "sent<", ">101<", "telegram<"):
        assert internal not in page


@pytest.mark.asyncio
async def test_resending_an_expired_reminder_queues_it_for_another_day_records_it_and_delivers_it(
    service: Service, fake: FakeTelegram
) -> None:
    await stuck_and_expired(service, fake)
    expired = reminders(service)["-9h"]
    assert expired.state == "expired"
    async with office(service) as client:
        answer = await client.post(
            "/office/outbox/resend",
            data={"csrf": await csrf(client, "/office/outbox"), "id": str(expired.id)},
            follow_redirects=True,
        )
        overview = (await client.get("/office")).text
    assert answer.status_code == 200 and f"第 {expired.id} 条消息已重新排队" in answer.text
    assert "重新发送消息" in overview and "催办提醒 王联络(县发改局)" in overview  # 最近操作
    now = clock_of(service).now()
    again = reminders(service)["-9h"]
    assert again.state == "queued" and again.attempts == 0 and again.matters_until == now + timedelta(days=1)
    with service.runtime.transaction() as session:
        [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "outbox.resend")).all()
    assert entry.subject == f"#{expired.id} 催办提醒 王联络(县发改局)" and entry.detail["was"] == "expired"
    fake.end_outage()
    await step(service, now + timedelta(minutes=5))
    assert reminders(service)["-9h"].state == "sent"
    assert sum(1 for m in fake.messages_to(101) if "专项督查" in (m.text or "")) == 2  # this one and the retried one


@pytest.mark.asyncio
async def test_a_resend_without_the_form_token_or_of_a_delivered_message_changes_nothing(
    service: Service, fake: FakeTelegram
) -> None:
    await stuck_and_expired(service, fake)
    expired = reminders(service)["-9h"]
    with service.runtime.transaction() as session:
        welcome = session.scalars(select(OutboxMessage).where(OutboxMessage.state == "sent")).first()
    assert welcome is not None
    async with office(service) as client:
        forged = await client.post("/office/outbox/resend", data={"csrf": "forged", "id": str(expired.id)})
        refused = await client.post(
            "/office/outbox/resend",
            data={"csrf": await csrf(client, "/office/outbox"), "id": str(welcome.id)},
            follow_redirects=True,
        )
    assert forged.status_code == 403
    assert refused.status_code == 200 and "不能重新发送" in refused.text
    assert reminders(service)["-9h"].state == "expired"
    with service.runtime.transaction() as session:
        assert session.get(OutboxMessage, welcome.id).state == "sent"  # type: ignore[union-attr]
        assert session.scalars(select(AuditLog).where(AuditLog.action == "outbox.resend")).all() == []
