"""The overdue digest: each working morning and on demand, one screen with the full list as an XLSX file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import update

from core.clock import ManualClock
from core.config import PersonRole
from core.conversation import Conversation
from core.digest import Digest
from core.escalation import Escalation, make_calendar
from core.runtime import Runtime
from jobs.ticks import remind, send_digest
from messages import Messages
from storage.models import Identity, OutboxMessage
from storage.queries import newest_plans
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
    """Each digest's text sent to a chat."""
    return [row.payload["text"] for row in outbox(runtime, chat, kind="digest")]


def attached_rows(runtime: Runtime, chat: int) -> list[dict[str, Any]]:
    """The rows of the XLSX list attached to the chat's latest digest, by column header."""
    document = outbox(runtime, chat, kind="digest")[-1].payload["document"]
    book = load_workbook(Path(document["path"]), read_only=True)
    try:
        _title, header, *rows = [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_digest_is_one_screen_with_the_worst_units_and_the_full_list_attached(
    runtime: Runtime, digest: Digest, clock: ManualClock, people: Conversation
) -> None:
    escalation = Escalation(runtime.settings, Messages("zh", runtime.settings.tz), make_calendar(runtime.settings))
    remind(runtime, escalation, local(2024, 3, 4, 9))  # the office rung of the refined plan
    send_digest(runtime, digest, local(2024, 3, 5, 8, 30))
    [row] = outbox(runtime, OFFICE, kind="digest")  # one message, not dozens
    text = row.payload["text"]
    assert "逾期未报送:28 个单位、109 项" in text and len(text) < 1000
    assert text.count("项,最长逾期") == 5 and "……另有 23 个单位" in text
    assert f"完整清单见附件《{row.payload['document']['file_name']}》" in text
    listed = attached_rows(runtime, OFFICE)
    assert len(listed) == 109
    mine = [r for r in listed if r["单位"] == "县发改局"]
    assert len(mine) == 9
    first = next(r for r in mine if r["任务"] == "县1")
    assert (first["督查轮次"], first["逾期天数"], first["已升级至"]) == ("细化方案报送", 5, "督查室")
    assert all(r["无法送达"] == "无人绑定" for r in listed if r["单位"] == "县科经局")


def test_unreachable_people_are_named(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    with runtime.transaction() as session:
        session.execute(update(Identity).where(Identity.external_id == str(LIAISON)).values(reachable=False))
    send_digest(runtime, digest, local(2024, 3, 4, 8, 30))
    assert "1 人无法送达" in digests(runtime, OFFICE)[0]
    assert {r["无法送达"] for r in attached_rows(runtime, OFFICE) if r["单位"] == "县发改局"} == {"用户32(联络员)"}


def test_empty_digest_says_so_in_one_line(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    send_digest(runtime, digest, local(2024, 2, 26, 8, 30))  # nothing is due yet
    [text] = digests(runtime, OFFICE)
    assert text == "【督办日报】2024-02-26 08:30:目前没有逾期未报送的事项。"
    assert "document" not in outbox(runtime, OFFICE, kind="digest")[0].payload


def test_no_digest_on_a_day_off(runtime: Runtime, digest: Digest, people: Conversation) -> None:
    assert send_digest(runtime, digest, local(2024, 3, 2, 8, 30)) == []  # a Saturday
    assert send_digest(runtime, digest, local(2024, 2, 18, 8, 30)) != []  # a make-up Sunday is a working day


def test_a_friday_digest_matters_until_mondays_and_an_asked_for_one_for_a_day(
    runtime: Runtime, digest: Digest, people: Conversation
) -> None:
    send_digest(runtime, digest, local(2024, 3, 8, 8, 30))  # a Friday
    [scheduled] = outbox(runtime, OFFICE, kind="digest")
    assert scheduled.matters_until == local(2024, 3, 11, 8, 30)  # not delivered after Monday's replaces it
    # the office's /digest in the afternoon: queued without a moment of its own, so a day
    with runtime.transaction() as session:
        plan = newest_plans(session)[0]
        [asked] = digest.queue(
            session,
            digest.build(session, plan, local(2024, 3, 8, 15)),
            [("sandbox", str(OFFICE), None)],
            key="asked",
            now=local(2024, 3, 8, 15),
        )
        row = session.get(OutboxMessage, asked)
        assert row is not None and row.matters_until == local(2024, 3, 9, 15)


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
