"""A batch of stored updates handled in one transaction, each update in a savepoint of its own.

One bad update does not fail its neighbours; a person's later updates wait
for their failed earlier one; nothing is recorded twice, and nothing is lost
when the batch's commit fails.  Files move into place only once the batch
has committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

import core.conversation
from bot.inbox import Inbox
from bot.sandbox import SandboxReader
from core import inbox
from core.clock import ManualClock
from core.conversation import Conversation, Handled, Incoming, _Turn
from core.inbox import Received
from core.runtime import Runtime
from messages import Messages
from storage.models import Attachment, InboundUpdate, Obligation, StatusReport
from storage.threads import DatabaseThreads
from tests.support import invite, outbox, say, staged_file

pytestmark = [pytest.mark.asyncio, pytest.mark.both_databases]

# Three liaisons of 县发改局, who answers for task 12.
ANNA, BO, CHEN = 7001, 7002, 7003
FAULT = "故障"  # a report whose note holds this fails after it has written (so its savepoint has work to undo)


class FaultyConversation(Conversation):
    """The real conversation, except that a turn whose text holds :data:`FAULT` raises once it has written."""

    fault: BaseException = OperationalError("INSERT …", {}, Exception("disk I/O error"))
    armed = True

    def _dispatch(self, turn: _Turn) -> None:
        super()._dispatch(turn)
        if self.armed and FAULT in turn.incoming.text:
            turn.session.flush()
            raise self.fault


@dataclass
class Batch:
    runtime: Runtime
    conversation: FaultyConversation
    box: Inbox
    wall: ManualClock
    keys: list[str] = field(default_factory=list)

    async def send(self, user: int, text: str, *, files: list[dict[str, Any]] | None = None) -> str:
        """Store a sandbox message in the inbox, as the chat page does; its update key."""
        key = f"in-{len(self.keys) + 1}"
        self.keys.append(key)
        payload: dict[str, Any] = {"persona": str(user), "update_key": key, "message_id": f"m-{key}", "text": text}
        if files:
            payload["files"] = files
        await self.box.accept(Received("sandbox", key, payload, str(user), str(user)))
        return key

    def notes(self) -> list[str]:
        with self.runtime.transaction() as session:
            return list(session.scalars(select(StatusReport.note).order_by(StatusReport.id)))

    def states(self) -> dict[str, tuple[str, int]]:
        """Each stored update's state and attempts, by key."""
        with self.runtime.transaction() as session:
            rows = session.execute(
                select(InboundUpdate.update_key, InboundUpdate.state, InboundUpdate.attempts).where(
                    InboundUpdate.update_key.in_(self.keys)
                )
            )
            return {key: (state, attempts) for key, state, attempts in rows}

    async def after_backoff(self) -> int:
        """Handle what is due once the retries' backoff has passed; how many there were."""
        self.wall.advance(timedelta(minutes=5))
        return await self.box.handle_due()


@pytest_asyncio.fixture
async def batch(runtime: Runtime) -> AsyncIterator[Batch]:
    settings = runtime.settings
    conversation = FaultyConversation(
        settings, runtime.sessions, runtime.clock, Messages(settings.service.language, settings.tz)
    )
    for user in (ANNA, BO, CHEN):
        say(conversation, user, f"/start {invite(runtime, '县发改局')}")
    threads = DatabaseThreads.for_engine(runtime.engine)
    wall = ManualClock(datetime(2026, 12, 2, 4, tzinfo=UTC))  # the inbox's retries run on this one
    box = Inbox(runtime, conversation, threads, conversation.m, wake_sender=lambda: None, wall_clock=wall.now)
    box.add_reader(SandboxReader(conversation))
    try:
        yield Batch(runtime, conversation, box, wall)
    finally:
        threads.close()


@pytest.fixture
def one_transaction(db_backend: str) -> None:
    """The batch is one transaction on SQLite only (on PostgreSQL each update has its own, several at once)."""
    if not db_backend.startswith("sqlite"):
        pytest.skip("on PostgreSQL each update of a batch is a transaction of its own")


def report(note: str) -> str:
    return f"/report 12 按计划推进 {note}"


def upload(conversation: Conversation, name: str) -> dict[str, Any]:
    """A PDF the chat page has staged, as its stored payload describes it."""
    file = staged_file(conversation.staging_dir(), name)
    assert file.staged is not None
    staged = {**file.staged.__dict__, "staged_path": str(file.staged.staged_path)}
    return {
        "file_id": file.file_id,
        "file_name": name,
        "size": file.size,
        "mime_type": file.mime_type,
        "staged": staged,
    }


async def handle_due_with_one_failed_commit(batch: Batch, error: Exception) -> None:
    """Handle the due updates as one batch whose commit (the first after the savepoints) raises ``error``."""
    with batch.runtime.transaction() as session:
        due = inbox.due(session, batch.wall.now())
    failures = [error]

    def fail_once(session: Session) -> None:
        if failures and not session.in_nested_transaction():  # a savepoint's release is no commit
            raise failures.pop()

    event.listen(batch.runtime.sessions, "before_commit", fail_once)  # the next commit is the batch's
    try:
        await batch.box.handle_batch(due)
    finally:
        event.remove(batch.runtime.sessions, "before_commit", fail_once)
    assert failures == []


def kept_files(runtime: Runtime) -> list[Path]:
    """Files in the uploads folder outside staging: the ones moved into place."""
    uploads = runtime.settings.path(runtime.settings.uploads.dir)
    return [p for p in uploads.rglob("*") if p.is_file() and "staging" not in p.relative_to(uploads).parts]


async def test_a_batch_whose_middle_update_fails_records_its_neighbours_and_retries_only_it(batch: Batch) -> None:
    first = await batch.send(ANNA, report("第一份"))
    middle = await batch.send(BO, report(f"第二份{FAULT}"))
    last = await batch.send(CHEN, report("第三份"))

    assert await batch.box.handle_due() == 3
    # Sorted: on PostgreSQL a wave's updates are transactions side by side, recorded in either order.
    assert sorted(batch.notes()) == sorted(["第一份", "第三份"])  # the middle one's was rolled back with its savepoint
    assert batch.states() == {first: ("handled", 0), middle: ("pending", 1), last: ("handled", 0)}

    batch.conversation.armed = False
    assert await batch.after_backoff() == 1
    assert batch.notes()[2:] == [f"第二份{FAULT}"]
    assert batch.states()[middle] == ("handled", 1)


async def test_a_persons_later_update_in_the_batch_waits_for_their_failed_earlier_one(batch: Batch) -> None:
    earlier = await batch.send(ANNA, report(f"先报{FAULT}"))
    later = await batch.send(ANNA, report("后报"))
    other = await batch.send(BO, report("他人"))

    assert await batch.box.handle_due() == 3
    assert batch.notes() == ["他人"]
    assert batch.states() == {earlier: ("pending", 1), later: ("pending", 0), other: ("handled", 0)}

    assert await batch.box.handle_due() == 0  # the later one waits behind the earlier one's backoff
    batch.conversation.armed = False
    assert await batch.after_backoff() == 2
    assert batch.notes() == ["他人", f"先报{FAULT}", "后报"]


async def test_an_update_that_fails_for_good_in_a_batch_is_answered_alone(batch: Batch) -> None:
    batch.conversation.fault = ValueError("a bug")  # not passing: given up at once
    await batch.send(ANNA, report("照常"))
    failed = await batch.send(BO, report(f"坏的{FAULT}"))

    assert await batch.box.handle_due() == 2
    assert batch.notes() == ["照常"]
    assert batch.states()[failed] == ("failed", 1)
    assert "未能记录" in outbox(batch.runtime, BO)[-1].payload["text"]
    assert "已记录" in outbox(batch.runtime, ANNA)[-1].payload["text"]


async def test_a_report_after_a_rolled_back_one_answers_the_obligation_the_rolled_back_one_did_not(
    batch: Batch,
) -> None:
    # Both answer 县发改局's owed obligation for task 12; the first is undone, so the second must find it still owed.
    await batch.send(ANNA, report(f"撤销{FAULT}"))
    await batch.send(BO, report("有效"))

    await batch.box.handle_due()
    with batch.runtime.transaction() as session:
        (recorded,) = session.scalars(select(StatusReport))
        answered = session.scalars(select(Obligation).where(Obligation.last_report_id == recorded.id)).all()
    assert recorded.note == "有效"
    assert len(answered) == 1


async def test_a_batch_whose_commit_fails_leaves_every_update_pending_and_loses_none(
    batch: Batch, runtime: Runtime, one_transaction: None
) -> None:
    keys = [
        await batch.send(ANNA, report("甲")),
        await batch.send(BO, report("乙"), files=[upload(batch.conversation, "乙.pdf")]),
        await batch.send(CHEN, report("丙")),
    ]
    await handle_due_with_one_failed_commit(batch, OperationalError("COMMIT", {}, Exception("database is locked")))
    assert batch.notes() == []
    assert batch.states() == {key: ("pending", 1) for key in keys}
    assert kept_files(runtime) == []
    assert [p.name for p in batch.conversation.staging_dir().iterdir()] == ["staged-乙.pdf"]  # kept for the retry

    assert await batch.after_backoff() == 3
    assert sorted(batch.notes()) == ["丙", "乙", "甲"]
    assert [p.read_bytes() for p in kept_files(runtime)] == [b"%PDF-1.4 refined plan"]
    assert await batch.box.handle_due() == 0


async def test_a_batchs_files_move_into_place_only_after_it_has_committed(
    batch: Batch, runtime: Runtime, one_transaction: None
) -> None:
    await batch.send(ANNA, report("甲"), files=[upload(batch.conversation, "甲.pdf")])
    await batch.send(BO, report("乙"), files=[upload(batch.conversation, "乙.pdf")])
    in_place_at_commits: list[list[Path]] = []

    def look(session: Session) -> None:
        in_place_at_commits.append(kept_files(runtime))

    event.listen(runtime.sessions, "before_commit", look)
    try:
        assert await batch.box.handle_due() == 2
    finally:
        event.remove(runtime.sessions, "before_commit", look)
    assert in_place_at_commits and all(placed == [] for placed in in_place_at_commits)
    with runtime.transaction() as session:
        stored = sorted(Path(path) for path in session.scalars(select(Attachment.stored_path)))
    assert len(stored) == 2
    assert sorted(kept_files(runtime)) == stored
    assert list(batch.conversation.staging_dir().iterdir()) == []


async def test_a_batch_whose_commit_fails_for_good_is_handled_again_one_update_at_a_time(
    batch: Batch, one_transaction: None
) -> None:
    keys = [await batch.send(ANNA, report("甲")), await batch.send(BO, report("乙"))]
    # Not passing: no reason to wait.
    await handle_due_with_one_failed_commit(batch, ValueError("a commit that will not work again"))
    assert batch.notes() == ["甲", "乙"]  # alone, neither failed: no update is given up for the batch
    assert batch.states() == {key: ("handled", 0) for key in keys}


class ReadWatcher(SandboxReader):
    """The sandbox's reader, noting for each update read which reports were recorded by then."""

    def __init__(self, conversation: Conversation, runtime: Runtime) -> None:
        super().__init__(conversation)
        self.runtime = runtime
        self.seen: dict[str, list[str]] = {}

    async def read(self, payload: dict[str, Any]) -> Incoming | None:
        with self.runtime.transaction() as session:
            self.seen[payload["text"]] = list(session.scalars(select(StatusReport.note).order_by(StatusReport.id)))
        return await super().read(payload)


async def test_a_persons_later_update_is_read_only_once_their_earlier_one_is_handled(
    batch: Batch, runtime: Runtime
) -> None:
    # Reading may depend on what the earlier message did (a file is downloaded only for someone bound).
    watcher = ReadWatcher(batch.conversation, runtime)
    batch.box.add_reader(watcher)
    await batch.send(ANNA, report("安一"))
    await batch.send(BO, report("博一"))
    await batch.send(ANNA, report("安二"))

    assert await batch.box.handle_due() == 3
    # Sorted: on PostgreSQL a wave's updates are transactions side by side, recorded in either order.
    assert sorted(watcher.seen[report("安二")]) == sorted(["安一", "博一"])
    assert watcher.seen[report("博一")] == []  # different people's updates are read side by side
    notes = batch.notes()
    assert sorted(notes[:2]) == sorted(["安一", "博一"]) and notes[2] == "安二"


def incoming(user: int, key: str, text: str) -> Incoming:
    return Incoming(
        platform="sandbox", user_id=str(user), chat_id=str(user), update_key=key, message_id=f"m-{key}", text=text
    )


async def test_an_update_given_twice_in_one_batch_is_answered_once(batch: Batch) -> None:
    twice = incoming(ANNA, "dup-1", report("一次"))
    outcomes = batch.conversation.handle_many([twice, incoming(BO, "dup-2", report("另一份")), twice])

    first, other, again = outcomes
    assert isinstance(first, Handled) and not first.duplicate and first.queued
    assert isinstance(other, Handled) and not other.duplicate
    assert again == Handled(duplicate=True)
    assert batch.notes() == ["一次", "另一份"]
    assert len([m for m in outbox(batch.runtime, ANNA) if "已记录" in m.payload["text"]]) == 1


async def test_a_raced_duplicate_in_a_batch_is_answered_as_one_and_its_neighbours_recorded(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = incoming(BO, "raced", report("另一进程已处理"))
    batch.conversation.handle(raced)  # "another process" handled it first
    claim = core.conversation.mark_handled

    def colliding(session: Session, platform: str, update_key: str, now: datetime) -> bool:
        # The claim found nothing pending, then the insert met the other process's row.
        if update_key == "raced":
            raise IntegrityError("INSERT INTO inbound_update …", {}, Exception("UNIQUE constraint failed"))
        return claim(session, platform, update_key, now)

    monkeypatch.setattr(core.conversation, "mark_handled", colliding)
    outcomes = batch.conversation.handle_many(
        [incoming(ANNA, "before", report("之前")), raced, incoming(CHEN, "after", report("之后"))]
    )

    assert [o.duplicate if isinstance(o, Handled) else o for o in outcomes] == [False, True, False]
    assert batch.notes() == ["另一进程已处理", "之前", "之后"]
