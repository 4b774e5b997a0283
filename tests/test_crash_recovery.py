"""``duban run`` killed in the middle of a fan-out, then restarted: nothing lost, at most one repeat."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.config import load_settings
from core.outbox import Message, enqueue
from core.runtime import initialise, open_runtime
from tests.fakes.telegram_api import FakeTelegram
from tests.processes import service_env, start_service, telegram_settings, wait_until

CHATS = list(range(7000, 7120))


def kill_mid_fan_out(tmp_path: Path, fake: FakeTelegram) -> Counter[int]:
    """Queue a reminder to each chat, kill -9 the service once 30 are out, restart it: what each chat got."""
    env = service_env(tmp_path, **telegram_settings(fake.base_url, fake.base_file_url, fake.token))
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("DUBAN_")})
    runtime = open_runtime(settings)
    initialise(runtime)
    with runtime.transaction() as session:
        for chat in CHATS:
            enqueue(
                session,
                platform="telegram",
                chat_id=str(chat),
                kind="reminder",
                dedup_key=f"fan-out:{chat}",
                message=Message(text=f"第一季度督办提醒 {chat}"),
                now=datetime.now(UTC),
            )
    runtime.close()
    log = tmp_path / "service.log"

    first = start_service(env, log)
    try:
        wait_until(lambda: len(fake.sent) >= 30, 60, "the fan-out to start")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    at_kill = len(fake.sent)
    assert at_kill < len(CHATS), "killed too late to test anything"

    second = start_service(env, log)
    try:
        wait_until(lambda: {m.chat_id for m in fake.sent} >= set(CHATS), 90, "every chat to get its reminder")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, log.read_text(errors="replace")
    return Counter(m.chat_id for m in fake.sent)


@pytest.mark.timeout(200)
def test_killed_mid_fan_out_loses_nothing_and_repeats_at_most_one(tmp_path: Path) -> None:
    with FakeTelegram(global_per_second=30, per_chat_per_second=1) as fake:
        per_chat = kill_mid_fan_out(tmp_path, fake)
        assert set(per_chat) == set(CHATS)
        assert sum(count - 1 for count in per_chat.values()) <= 1, per_chat.most_common(3)
        assert fake.count_429 == 0


@pytest.mark.timeout(200)
def test_killed_with_sends_in_flight_loses_nothing_and_repeats_only_what_was_out(tmp_path: Path) -> None:
    # 150 ms round trips: about 29 × 0.15 ≈ 5 requests are out at once to keep the rate.
    with FakeTelegram(global_per_second=30, per_chat_per_second=1, latency=0.15) as fake:
        per_chat = kill_mid_fan_out(tmp_path, fake)
        assert set(per_chat) == set(CHATS)  # nothing lost
        assert max(per_chat.values()) <= 2  # a message out at the kill is repeated once at most
        assert fake.peak_open_calls > 1  # several were in flight
        repeats = sum(count - 1 for count in per_chat.values())
        assert repeats <= fake.peak_open_calls, per_chat.most_common(6)  # only those that were out
        assert fake.count_429 == 0
