"""Unfinished /report drafts: dropped with their staged files after ``[limits] draft_ttl``, nothing recorded lost."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.clock import ManualClock
from core.conversation import Conversation, IncomingFile
from core.runtime import Runtime
from jobs.ticks import drop_stale_drafts
from storage.models import ConversationState, StatusReport
from tests.support import invite, last_text, make_conversation, say, staged_file

LIAISON = 1001  # 县发改局


@pytest.fixture
def conv(runtime: Runtime) -> Conversation:
    conversation = make_conversation(runtime)
    say(conversation, LIAISON, f"/start {invite(runtime, '县发改局')}")
    return conversation


def stage(conv: Conversation, name: str) -> IncomingFile:
    """A file as an adapter leaves it: downloaded into the staging folder."""
    return staged_file(conv.staging_dir(), name, b"%PDF-1.4 draft")


def draft_with_file(conv: Conversation, runtime: Runtime, name: str) -> Path:
    say(conv, LIAISON, "/report 12 已对接企业")  # no status yet: the draft waits for one
    file = stage(conv, name)
    say(conv, LIAISON, "", files=(file,))
    assert "请选择进展状态" in last_text(runtime, LIAISON)
    assert file.staged is not None and file.staged.staged_path.exists()
    return file.staged.staged_path


def drafts(runtime: Runtime) -> int:
    with runtime.transaction() as session:
        return session.scalar(select(func.count()).select_from(ConversationState)) or 0


def age(path: Path, clock: ManualClock, by: timedelta) -> None:
    moment = (clock.now() - by).timestamp()
    os.utime(path, (moment, moment))


def test_a_draft_untouched_past_the_ttl_is_dropped_with_its_file(
    runtime: Runtime, conv: Conversation, clock: ManualClock
) -> None:
    path = draft_with_file(conv, runtime, "进展材料.pdf")
    clock.advance(timedelta(days=3, minutes=1))
    sweep = drop_stale_drafts(runtime, conv.staging_dir(), clock.now())
    assert (sweep.drafts, sweep.files) == (1, [path])
    assert drafts(runtime) == 0 and not path.exists()


def test_a_draft_touched_within_the_ttl_is_kept(runtime: Runtime, conv: Conversation, clock: ManualClock) -> None:
    path = draft_with_file(conv, runtime, "进展材料.pdf")
    age(path, clock, timedelta(days=10))  # the file's age on disk does not matter while a draft holds it
    clock.advance(timedelta(days=2, hours=23))
    sweep = drop_stale_drafts(runtime, conv.staging_dir(), clock.now())
    assert (sweep.drafts, sweep.files) == (0, [])
    assert drafts(runtime) == 1 and path.exists()


def test_a_dropped_draft_leaves_recorded_reports_alone(
    runtime: Runtime, conv: Conversation, clock: ManualClock
) -> None:
    say(conv, LIAISON, "/report 12 按计划推进 已对接企业3家")
    draft_with_file(conv, runtime, "进展材料.pdf")
    clock.advance(timedelta(days=4))
    drop_stale_drafts(runtime, conv.staging_dir(), clock.now())
    with runtime.transaction() as session:
        assert session.scalar(select(func.count()).select_from(StatusReport)) == 1


def test_a_staged_file_no_draft_holds_is_swept_only_once_old(
    runtime: Runtime, conv: Conversation, clock: ManualClock
) -> None:
    old = stage(conv, "旧.pdf").staged
    young = stage(conv, "新.pdf").staged
    assert old is not None and young is not None
    age(old.staged_path, clock, timedelta(days=4))
    age(young.staged_path, clock, timedelta(minutes=5))  # perhaps a download whose turn is still running
    sweep = drop_stale_drafts(runtime, conv.staging_dir(), clock.now())
    assert sweep.files == [old.staged_path]
    assert not old.staged_path.exists() and young.staged_path.exists()


def test_starting_a_report_over_discards_the_file_of_the_abandoned_draft(runtime: Runtime, conv: Conversation) -> None:
    first = draft_with_file(conv, runtime, "第一稿.pdf")
    say(conv, LIAISON, "/report 13 已对接")  # a new draft replaces the old one
    assert drafts(runtime) == 1
    assert not first.exists()
