"""The overdue digest: each working morning and on demand, split where the platform needs it."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from core.clock import ManualClock
from core.config import PersonRole
from core.conversation import Conversation
from core.digest import Digest
from core.escalation import Escalation, make_calendar
from core.runtime import Runtime, current_plan
from jobs.ticks import remind, send_digest
from messages import Messages
from storage.models import Identity
from tests.conftest import local
from tests.support import invite, last_text, make_conversation, outbox, say

OFFICE, LIAISON, TOWN = 31, 32, 33

pytestmark = pytest.mark.both_databases


@pytest.fixture
def digest(runtime: Runtime) -> Digest:
    settings = runtime.settings
    return Digest(settings, Messages("zh", settings.tz), make_calendar(settings))


@pytest.fixture
def people(runtime: Runtime, clock: ManualClock) -> Conversation:
    clock.set(local(2024, 2, 20, 10))
    conv = make_conversation(runtime)
    say(conv, OFFICE, f"/start {invite(runtime, '县政府政务督查室', PersonRole.OFFICE)}")
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    say(conv, TOWN, f"/start {invite(runtime, '簰洲湾镇人民政府')}")
    return conv


def digests(runtime: Runtime, chat: int) -> list[str]:
    """Each digest sent to a chat, its parts joined."""
    whole: dict[str, list[str]] = {}
    for row in outbox(runtime, chat, kind="digest"):
        whole.setdefault(row.dedup_key.rsplit(":", 1)[0], []).append(row.payload["text"])
    return ["\n".join(parts) for parts in whole.values()]


def test_digest_lists_units_with_days_late_and_rung_reached(
    runtime: Runtime, digest: Digest, clock: ManualClock, people: Conversation
) -> None:
    escalation = Escalation(runtime.settings, Messages("zh", runtime.settings.tz), make_calendar(runtime.settings))
    remind(runtime, escalation, local(2024, 3, 4, 9))  # the office rung of the refined plan
    send_digest(runtime, digest, local(2024, 3, 5, 8, 30))
    [text] = digests(runtime, OFFICE)
    assert "逾期未报送:28 个单位、109 项" in text
    assert len(outbox(runtime, OFFICE, kind="digest")) == 2  # split to fit a Telegram message
    block = text.split("■ 县发改局:")[1].split("■")[0]
    assert block.startswith("9 项,最长逾期 5 天,已升级至督查室")
    assert "县1 地区生产总值增长6.5%(细化方案报送,逾期 5 天)" in block
    assert "无人绑定" in text.split("■ 县科经局:")[1].split("■")[0]


def test_unreachable_people_are_named(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    with runtime.transaction() as session:
        session.execute(update(Identity).where(Identity.external_id == str(LIAISON)).values(reachable=False))
    send_digest(runtime, digest, local(2024, 3, 4, 8, 30))
    block = digests(runtime, OFFICE)[0].split("■ 县发改局:")[1].split("■")[0]
    assert "无法送达:用户32(联络员)" in block


def test_empty_digest_says_so_in_one_line(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    send_digest(runtime, digest, local(2024, 2, 26, 8, 30))  # nothing is due yet
    [text] = digests(runtime, OFFICE)
    assert text == "【督办日报】2024-02-26 08:30:目前没有逾期未报送的事项。"


def test_no_digest_on_a_day_off(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    assert send_digest(runtime, digest, local(2024, 3, 2, 8, 30)) == []  # a Saturday
    assert send_digest(runtime, digest, local(2024, 2, 18, 8, 30)) != []  # a make-up Sunday is a working day


def test_digest_goes_out_once_a_day_whatever_restarts(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    send_digest(runtime, digest, local(2024, 3, 4, 8, 30))
    assert send_digest(runtime, digest, local(2024, 3, 4, 8, 45)) == []
    assert len(digests(runtime, OFFICE)) == 1


def test_digest_says_what_changed_since_the_previous_one(
    runtime: Runtime, digest: Digest, clock: ManualClock, people: Conversation, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_escalation import document

    send_digest(runtime, digest, local(2024, 3, 4, 8, 30))
    clock.set(local(2024, 3, 4, 10))
    say(people, LIAISON, "/report 1 按计划推进 补报细化方案", files=(document(tmp_path, "县1.pdf"),))
    send_digest(runtime, digest, local(2024, 3, 5, 8, 30))
    latest = digests(runtime, OFFICE)[-1]
    assert "108 项(较 3月4日 新增 0 项,办结 1 项)" in latest


def test_long_digest_is_split_between_units(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None
        view = digest.build(session, plan, local(2024, 3, 28, 8, 30))  # refined plan and Q1 both overdue
    parts = digest.render_parts(view, 2000)
    assert len(parts) > 3 and all(len(part) <= 2000 for part in parts)
    for block in view.units:
        if len(block.items) < 40:  # a block that fits in a message is never cut
            assert sum(1 for part in parts if f"■ {block.name}:" in part) == 1
            holder = next(part for part in parts if f"■ {block.name}:" in part)
            assert all(item["label"] + " " in holder for item in block.items)
    assert parts[1].startswith("【督办日报(续)】")


def test_office_asks_for_the_digest_any_time(runtime: Runtime, people: Conversation, clock: ManualClock) -> None:
    from core.office import OfficeRequests

    settings = runtime.settings
    messages = Messages("zh", settings.tz)
    conv = Conversation(
        settings,
        runtime.sessions,
        clock,
        messages,
        on_office_request=OfficeRequests(settings, messages, Digest(settings, messages, make_calendar(settings))),
    )
    clock.set(local(2024, 3, 2, 15))  # a Saturday: on demand works any day
    say(conv, OFFICE, "/digest")
    assert digests(runtime, OFFICE)[-1].startswith("【督办日报】2024-03-02 15:00")
    say(conv, LIAISON, "/digest")
    assert "仅限县政府政务督查室" in last_text(runtime, LIAISON)


def test_configured_group_chats_get_the_digest(tmp_path, people: Conversation, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    from core.config import load_settings

    settings = load_settings(environ={"DUBAN_DATABASE_URL": runtime.settings.database_url})
    settings = settings.model_copy(
        update={"digest": settings.digest.model_copy(update={"chats": ["telegram:-100777"]})}
    )
    digest = Digest(settings, Messages("zh", settings.tz), make_calendar(settings))
    send_digest(runtime, digest, local(2024, 3, 4, 8, 30))
    assert digests(runtime, -100777) and digests(runtime, OFFICE)
