"""The outbox sender against the fake Telegram server with Telegram's flood limits switched on."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from bot.telegram_adapter import TelegramTransport, build_application
from core.config import Settings
from core.outbox import About, Message, enqueue
from core.runtime import Runtime, initialise, open_runtime
from jobs.sender import OutboxSender
from storage.models import OutboxMessage
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram_harness import telegram_settings


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(global_per_second=30, per_chat_per_second=1) as server:
        yield server


pytestmark = pytest.mark.both_databases


@pytest.fixture
def limited_settings(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> Settings:
    # Telegram's real limits, as the service uses them by default.
    return telegram_settings(
        tmp_path, fake, db_backend, DUBAN_TELEGRAM_PER_CHAT_INTERVAL="1.05s", DUBAN_TELEGRAM_MESSAGES_PER_SECOND="29"
    )


@pytest.fixture
def store(limited_settings: Settings) -> Iterator[Runtime]:
    runtime = open_runtime(limited_settings)
    initialise(runtime, import_plan_if_empty=False)
    yield runtime
    runtime.close()


@pytest_asyncio.fixture
async def sender(store: Runtime, limited_settings: Settings) -> AsyncIterator[OutboxSender]:
    application = build_application(limited_settings)
    await application.bot.initialize()
    shared = store.engine.dialect.name == "postgresql"  # as the service does: pace through the database
    yield OutboxSender(
        store.sessions,
        [TelegramTransport(application, limited_settings)],
        worker="test",
        retry_base=0.05,
        shared=shared,
    )
    await application.bot.shutdown()


def queue(store: Runtime, chats: list[int], text: str = "提醒") -> None:
    now = datetime.now(UTC)
    with store.transaction() as session:
        for index, chat in enumerate(chats):
            enqueue(
                session,
                platform="telegram",
                chat_id=str(chat),
                kind="reminder",
                dedup_key=f"test:{index}:{chat}",
                message=Message(text=f"{text} {index}"),
                now=now,
            )


def states(store: Runtime) -> dict[str, int]:
    with store.transaction() as session:
        rows = session.scalars(select(OutboxMessage.state)).all()
    return {state: rows.count(state) for state in set(rows)}


def send_times(fake: FakeTelegram) -> list[float]:
    return [r.at for r in fake.requests if r.method == "sendMessage" and r.status == 200]


@pytest.mark.asyncio
async def test_fan_out_stays_within_the_overall_limit_and_loses_nothing(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    queue(store, list(range(1000, 1045)))
    await sender.drain(timeout=20)
    assert states(store) == {"sent": 45}
    assert fake.count_429 == 0
    times = send_times(fake)
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 30
    if store.engine.dialect.name == "postgresql":  # paced through the shared slot, as several processes are
        from storage.models import RateSlot

        with store.transaction() as session:
            assert session.get(RateSlot, "telegram") is not None


@pytest.mark.asyncio
async def test_messages_to_one_chat_go_at_most_one_a_second(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    queue(store, [7, 7, 7])
    await sender.drain(timeout=10)
    times = send_times(fake)
    assert len(times) == 3 and fake.count_429 == 0
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
    assert [m.text for m in fake.messages_to(7)] == ["提醒 0", "提醒 1", "提醒 2"]  # in order


@pytest.mark.asyncio
async def test_a_429_pauses_the_platform_for_retry_after(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    fake.fail_next("sendMessage", 429, retry_after=1, times=2)
    queue(store, [21, 22, 23])
    await sender.drain(timeout=15)
    assert states(store) == {"sent": 3}
    sends = [r for r in fake.requests if r.method == "sendMessage"]
    refusals = [r.at for r in sends if r.status == 429]
    assert len(refusals) == 2
    for refused_at in refusals:
        following = [r.at for r in sends if r.at > refused_at]
        assert following and min(following) - refused_at >= 0.99  # nothing went to Telegram early
    assert sender.stats.rate_limited == 2


@pytest.mark.asyncio
async def test_server_errors_and_dropped_connections_are_retried(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    fake.fail_next("sendMessage", 502, times=2)
    fake.drop_next("sendMessage", times=1)
    queue(store, [31])
    await sender.drain(timeout=15)
    assert states(store) == {"sent": 1}
    assert [m.text for m in fake.messages_to(31)] == ["提醒 0"]
    with store.transaction() as session:
        row = session.scalar(select(OutboxMessage))
        assert row is not None and row.attempts == 4 and row.platform_message_id is not None


@pytest.mark.asyncio
async def test_a_blocked_user_fails_permanently_and_the_rest_are_delivered(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    fake.block_user(42)
    queue(store, [41, 42, 43])
    await sender.drain(timeout=10)
    assert states(store) == {"sent": 2, "unreachable": 1}
    with store.transaction() as session:
        failed = session.scalar(select(OutboxMessage).where(OutboxMessage.state == "unreachable"))
        assert failed is not None and "blocked" in (failed.last_error or "")


@pytest.mark.asyncio
async def test_a_failing_platform_is_retried_until_the_message_stops_mattering_then_it_is_expired(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    fake.fail_next("sendMessage", 502, times=1000)
    now = datetime.now(UTC)
    with store.transaction() as session:
        enqueue(
            session,
            platform="telegram",
            chat_id="51",
            kind="reminder",
            dedup_key="test:expiring",
            message=Message(text="提醒"),
            now=now,
            about=About(until=now + timedelta(seconds=1.5)),  # a try a second (the per-chat interval)
        )
    await sender.drain(timeout=10)
    assert states(store) == {"expired": 1}
    assert fake.messages_to(51) == []
    with store.transaction() as session:
        row = session.scalar(select(OutboxMessage))
        assert row is not None and row.attempts >= 2  # retried, not given up at the first failure
        assert "stopped mattering" in (row.last_error or "") and "Bad Gateway" in (row.last_error or "")


@pytest.mark.asyncio
async def test_a_row_whose_moment_passed_in_the_queue_is_expired_and_never_sent(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    now = datetime.now(UTC)
    with store.transaction() as session:
        for chat, until in ((52, now - timedelta(seconds=1)), (53, None)):
            enqueue(
                session,
                platform="telegram",
                chat_id=str(chat),
                kind="reminder",
                dedup_key=f"test:{chat}",
                message=Message(text="提醒"),
                now=now - timedelta(hours=2),
                about=About(until=until),
            )
    await sender.drain(timeout=10)
    assert states(store) == {"expired": 1, "sent": 1}
    assert fake.messages_to(52) == [] and len(fake.messages_to(53)) == 1


@pytest.mark.asyncio
async def test_rows_left_in_flight_by_a_dead_process_are_sent_after_the_lease(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    queue(store, [61])
    with store.transaction() as session:
        session.execute(
            update(OutboxMessage).values(
                state="sending", claimed_by="dead:1", claimed_at=datetime.now(UTC) - timedelta(minutes=5)
            )
        )
    assert await asyncio.to_thread(sender.recover) == 1
    await sender.drain(timeout=10)
    assert states(store) == {"sent": 1}
    assert len(fake.messages_to(61)) == 1


@pytest.mark.asyncio
async def test_a_fresh_claim_is_not_taken_from_a_live_process(store: Runtime, sender: OutboxSender) -> None:
    queue(store, [71])
    with store.transaction() as session:
        session.execute(
            update(OutboxMessage).values(state="sending", claimed_by="alive:2", claimed_at=datetime.now(UTC))
        )
    assert await asyncio.to_thread(sender.recover) == 0


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_per_member_windows_hold_back_the_thirty_first_message_in_a_minute() -> None:
    from jobs.sender import Pacer, SendLimits

    clock = FakeTime()
    pacer = Pacer(SendLimits(per_chat_windows=((30, 60.0), (1000, 3600.0))), now=clock)
    for _ in range(30):
        assert pacer.chat_wait("zhangsan") == 0
        pacer.record("zhangsan")
        clock.now += 0.5
    assert pacer.chat_wait("zhangsan") == pytest.approx(45.0)  # the first of the 30 leaves the window at 1060
    assert pacer.chat_wait("lisi") == 0
    clock.now += 45.0
    assert pacer.chat_wait("zhangsan") == 0


def test_per_member_hourly_window_is_enforced_too() -> None:
    from jobs.sender import Pacer, SendLimits

    clock = FakeTime()
    pacer = Pacer(SendLimits(per_chat_windows=((30, 60.0), (40, 3600.0))), now=clock)
    for _ in range(40):
        while pacer.chat_wait("zhangsan") > 0:
            clock.now += pacer.chat_wait("zhangsan")
        pacer.record("zhangsan")
    assert pacer.chat_wait("zhangsan") > 3000  # the hour's quota is spent


def test_a_send_that_wakes_late_gives_up_its_slot_for_the_next_free_one() -> None:
    from jobs.sender import Pacer, SendLimits

    clock = FakeTime()
    pacer = Pacer(SendLimits(per_second=29), now=clock)
    first, second = pacer.reserve(2)
    assert second - first == pytest.approx(1 / 29)  # reserved before the send, one schedule
    clock.now = first + 0.005
    assert pacer.usable(first)  # a few milliseconds late is on time
    clock.now = first + 0.2  # a loaded machine woke it late
    assert not pacer.usable(first)
    (again,) = pacer.reserve()
    assert again >= clock.now and again - second >= 1 / 29  # never in the past slot, never bunched


def test_without_an_overall_rate_a_send_is_never_late() -> None:
    from jobs.sender import Pacer, SendLimits

    clock = FakeTime()
    pacer = Pacer(SendLimits(), now=clock)
    (slot,) = pacer.reserve()
    clock.now += 5.0
    assert pacer.usable(slot)


def test_a_429_pause_holds_back_slots_already_reserved() -> None:
    from jobs.sender import Pacer, SendLimits

    clock = FakeTime()
    pacer = Pacer(SendLimits(per_second=29), now=clock)
    (slot,) = pacer.reserve()
    pacer.pause(3.0)
    assert not pacer.usable(slot)
    assert pacer.reserve()[0] >= clock.now + 3.0


def test_member_windows_keep_a_margin_and_a_guard_second() -> None:
    from jobs.pacing import below
    from jobs.sender import Pacer, SendLimits

    assert (below(30), below(1000), below(20)) == (29, 990, 19)
    clock = FakeTime()
    pacer = Pacer(SendLimits(per_chat_windows=((below(30), 60.0),), guard=1.0), now=clock)
    for _ in range(29):
        assert pacer.chat_wait("zhangsan") == 0
        pacer.record("zhangsan")
        clock.now += 0.5
    # the 30th waits until the first has been out of the window for a guard second: 1000 + 61
    assert pacer.chat_wait("zhangsan") == pytest.approx(1061.0 - clock.now)


def test_a_row_of_two_calls_counts_twice_in_the_member_window() -> None:
    from jobs.sender import Pacer, SendLimits

    clock = FakeTime()
    pacer = Pacer(SendLimits(per_chat_windows=((3, 60.0),)), now=clock)
    pacer.record("zhangsan", calls=2)
    assert pacer.chat_wait("zhangsan") == 0
    pacer.record("zhangsan")
    assert pacer.chat_wait("zhangsan") == pytest.approx(60.0)


@pytest.mark.asyncio
async def test_several_sends_are_in_flight_at_a_long_round_trip_within_every_limit(
    store: Runtime, sender: OutboxSender, fake: FakeTelegram
) -> None:
    fake.set_latency(0.15)
    queue(store, [7, 7, 7, *range(2000, 2040)])
    await sender.drain(timeout=30)
    assert states(store) == {"sent": 43}
    assert fake.count_429 == 0
    assert fake.peak_open_calls > 1  # not one at a time
    to_seven = [r.at for r in fake.requests if r.method == "sendMessage" and r.chat_id == 7]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(to_seven))
    assert [m.text for m in fake.messages_to(7)] == ["提醒 0", "提醒 1", "提醒 2"]  # one at a time, in order


@pytest.mark.asyncio
async def test_two_processes_sharing_the_database_keep_to_the_limit_together(
    store: Runtime, limited_settings: Settings, fake: FakeTelegram
) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("several processes share one database on PostgreSQL only")
    application = build_application(limited_settings)
    await application.bot.initialize()
    transport = TelegramTransport(application, limited_settings)
    senders = [OutboxSender(store.sessions, [transport], worker=f"p{n}", shared=True) for n in range(2)]
    queue(store, list(range(3000, 3070)))
    await asyncio.gather(*(sender.drain(timeout=30, alone=False) for sender in senders))
    await application.bot.shutdown()
    assert states(store) == {"sent": 70}
    assert fake.count_429 == 0
    assert sorted(m.chat_id for m in fake.sent) == list(range(3000, 3070))  # each once
    assert all(sender.stats.sent > 0 for sender in senders)
