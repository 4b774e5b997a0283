"""The durable inbox in the running service: bad bodies refused, a locked database waited out, failures answered."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.inbox import Inbox
from bot.sandbox import SandboxReader
from core import inbox
from core.clock import ManualClock
from core.config import PersonRole, load_settings
from core.inbox import Received
from core.runtime import open_runtime
from storage.models import InboundUpdate, StatusReport
from storage.threads import DatabaseThreads
from tests.conftest import local
from tests.fakes.telegram_api import FakeTelegram, SentMessage
from tests.support import invite, make_conversation, say
from tests.telegram_harness import Running, running_service, telegram_settings

pytestmark = pytest.mark.asyncio

LIAISON = 5001  # 县发改局, who answers for task 12
SECRET = "inbox-test-secret"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(enforce_limits=False) as server:
        yield server


@pytest_asyncio.fixture
async def webhook_bot(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> AsyncIterator[Running]:
    settings = telegram_settings(
        tmp_path,
        fake,
        db_backend,
        DUBAN_TELEGRAM_MODE="webhook",
        DUBAN_TELEGRAM_WEBHOOK_URL="https://duban.example/telegram/webhook",
        DUBAN_TELEGRAM_WEBHOOK_SECRET=SECRET,
        DUBAN_WEB_SANDBOX="on",
        DUBAN_SERVICE_DATA_DIR=str(tmp_path),
    )
    async with running_service(settings, fake) as running:
        yield running


@pytest_asyncio.fixture
async def polling_bot(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> AsyncIterator[Running]:
    # SQLite's busy timeout stands in for the real 30 s, the retry for its real backoff: the test is fast.
    settings = telegram_settings(
        tmp_path,
        fake,
        db_backend,
        DUBAN_DATABASE_BUSY_TIMEOUT="0.2s",
        DUBAN_INBOX_RETRY_BASE="0.1s",
        DUBAN_INBOX_RETRY_MAX="0.4s",
        DUBAN_SERVICE_DATA_DIR=str(tmp_path),
    )
    async with running_service(settings, fake) as running:
        await running.bind(LIAISON, "县发改局", PersonRole.LIAISON)
        yield running


def base(bot: Running) -> str:
    return f"http://127.0.0.1:{bot.service.port}"


def answer_to(message: SentMessage, words: str) -> bool:
    """A message of the bot's to the liaison that says ``words`` (reminders may come in between)."""
    return message.chat_id == LIAISON and words in (message.text or "")


def reports(bot: Running) -> list[str]:
    with bot.service.runtime.transaction() as session:
        return list(session.scalars(select(StatusReport.note)))


async def test_webhook_refuses_a_json_array_or_string_with_400(webhook_bot: Running) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base(webhook_bot), trust_env=False) as client:
        for body in ("[1, 2, 3]", '"an update"', "42", "{}", '{"update_id": "7"}', "not json"):
            response = await client.post("/telegram/webhook", content=body, headers=headers)
            assert response.status_code == 400, body
    with webhook_bot.service.runtime.transaction() as session:
        assert session.scalar(select(InboundUpdate).where(InboundUpdate.platform == "telegram")) is None


async def test_webhook_answers_200_once_the_update_is_stored(webhook_bot: Running) -> None:
    update = webhook_bot.fake.user_message(LIAISON, "/help")
    url = f"{base(webhook_bot)}/telegram/webhook"
    assert await webhook_bot.fake.post_update_to_async(url, update, SECRET) == 200
    with webhook_bot.service.runtime.transaction() as session:
        stored = session.scalar(select(InboundUpdate).where(InboundUpdate.update_key == str(update["update_id"])))
        assert stored is not None


async def test_huge_numeric_id_on_a_sandbox_file_or_message_is_404(webhook_bot: Running) -> None:
    huge = "9" * 40
    async with httpx.AsyncClient(base_url=base(webhook_bot), trust_env=False) as client:
        assert (await client.get(f"/sandbox/file/{huge}")).status_code == 404
        assert (await client.get(f"/sandbox/fragment/{huge}")).status_code == 404
        assert (await client.get(f"/sandbox/file/{2**63}")).status_code == 404


async def test_report_sent_while_another_process_locks_the_database_is_recorded_once_it_clears(
    polling_bot: Running, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "duban.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing for a long while
        polling_bot.fake.user_message(LIAISON, "/report 12 按计划推进 锁库期间报送")
        # The lock is held for ten busy timeouts: the update cannot go into the database meanwhile,
        # so it waits in the spool folder, on disk before Telegram is told it may forget it.
        await asyncio.sleep(2.0)
        assert len(list((tmp_path / "inbox-spool").glob("*.json"))) == 1
        assert holder.execute("SELECT count(*) FROM status_report").fetchone() == (0,)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await polling_bot.fake.wait_for_async(lambda m: answer_to(m, "已记录"), timeout=15)
    assert reports(polling_bot) == ["锁库期间报送"]
    assert list((tmp_path / "inbox-spool").glob("*.json")) == []


async def test_a_429_on_get_updates_is_waited_out_and_polling_goes_on(polling_bot: Running) -> None:
    # Telegram may answer any method 429 with a retry_after (https://core.telegram.org/bots/api#responseparameters).
    polling_bot.fake.fail_next("getUpdates", 429, retry_after=1)
    polling_bot.fake.user_message(LIAISON, "/report 12 按计划推进 第一份")  # ends the long poll under way
    await polling_bot.fake.wait_for_async(lambda m: answer_to(m, "第一份"), timeout=15)
    polling_bot.fake.user_message(LIAISON, "/report 12 按计划推进 第二份")  # fetched after the 429 and the wait
    await polling_bot.fake.wait_for_async(lambda m: answer_to(m, "第二份"), timeout=15)
    assert sorted(reports(polling_bot)) == ["第一份", "第二份"]


async def test_update_that_cannot_be_handled_is_answered_with_a_reference_and_listed(polling_bot: Running) -> None:
    # A message Telegram would never send (no date, no message id): handling it fails for good.
    polling_bot.fake.push_update(
        {"message": {"chat": {"id": LIAISON, "type": "private"}, "from": {"id": LIAISON, "is_bot": False}}}
    )
    reply = await polling_bot.fake.wait_for_async(lambda m: answer_to(m, "未能记录"), timeout=15)
    with polling_bot.service.runtime.transaction() as session:
        failed = inbox.failed_updates(session)
    assert len(failed) == 1
    async with httpx.AsyncClient(base_url=base(polling_bot), trust_env=False) as client:
        metrics = (await client.get("/metrics")).text
    assert 'duban_inbound_updates{state="failed"} 1.0' in metrics
    assert (
        reply.text
        == f"未能记录,请稍后重试(参考编号:{failed[0].reference})。如再次失败,请联系县政府政务督查室并告知该编号。"
    )


class ReadOnlyFolder:
    """A folder the service cannot write to: its mode for a normal user; root ignores modes, so the immutable flag."""

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.as_root = os.geteuid() == 0

    def lock(self) -> None:
        for folder in self.folders:
            if not self.as_root:
                folder.chmod(0o555)
            elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
                self.unlock()
                pytest.skip("running as root on a file system without chattr +i: no folder is read-only")

    def unlock(self) -> None:
        for folder in self.folders:
            if self.as_root:
                subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
            folder.chmod(0o755)


async def test_file_sent_while_the_uploads_folder_is_read_only_is_answered_and_kept_after(
    polling_bot: Running, tmp_path: Path
) -> None:
    uploads = tmp_path / "files"
    (uploads / "staging").mkdir(parents=True, exist_ok=True)
    folder = ReadOnlyFolder(uploads / "staging", uploads)
    folder.lock()
    try:
        polling_bot.fake.user_document(
            LIAISON, "进展材料.pdf", b"%PDF-1.4 progress", caption="/report 12 按计划推进 见附件"
        )
        notice = await polling_bot.fake.wait_for_async(lambda m: answer_to(m, "暂时无法保存"), timeout=15)
        assert "文件“进展材料.pdf”暂时无法保存" in (notice.text or ""), notice.text
        assert "系统会自动重试" in (notice.text or "")
        assert [p for p in uploads.rglob("*") if p.is_file()] == []  # nothing partial left behind
        assert reports(polling_bot) == []
    finally:
        folder.unlock()
    await polling_bot.fake.wait_for_async(lambda m: answer_to(m, "已记录"), timeout=15)
    with polling_bot.service.runtime.transaction() as session:
        report = session.scalars(select(StatusReport)).one()
        stored = [Path(a.stored_path) for a in report.attachments]
    assert [p.read_bytes() for p in stored] == [b"%PDF-1.4 progress"]
    assert list((uploads / "staging").iterdir()) == []


async def test_update_stored_before_a_lock_is_handled_once_after_it_clears(tmp_path: Path, db_backend: str) -> None:
    settings = load_settings(
        environ={
            "DUBAN_DATABASE_URL": db_backend,
            "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
            "DUBAN_DATABASE_BUSY_TIMEOUT": "0.1s",  # standing in for the real 30 s
        }
    )
    runtime = open_runtime(settings, clock=ManualClock(local(2024, 2, 22, 10)))
    threads = DatabaseThreads.for_engine(runtime.engine)
    wall = ManualClock(datetime(2026, 12, 2, 4, tzinfo=UTC))  # the inbox's retries run on this one
    try:
        conversation = make_conversation(runtime)
        box = Inbox(runtime, conversation, threads, conversation.m, wake_sender=lambda: None, wall_clock=wall.now)
        box.add_reader(SandboxReader(conversation))
        say(conversation, 7001, f"/start {invite(runtime, '县发改局')}")
        payload = {"persona": "7001", "update_key": "in-1", "text": "/report 12 按计划推进 解锁后记录"}
        await box.accept(Received("sandbox", "in-1", payload, "7001", "7001"))

        with runtime.transaction() as session:
            batch = inbox.due(session, wall.now())
        holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # another process, just as the update is being handled
            with pytest.raises(OperationalError):
                await box.handle_due()  # nor can the inbox be read meanwhile; the service's loop tries again
            await box.handle_batch(batch)  # handling fails: the update waits for its retry
            assert holder.execute("SELECT count(*) FROM status_report").fetchone() == (0,)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await box.handle_due() == 0  # not before its backoff
        wall.advance(timedelta(minutes=5))
        assert await box.handle_due() == 1
        assert await box.handle_due() == 0
        with runtime.transaction() as session:
            assert list(session.scalars(select(StatusReport.note))) == ["解锁后记录"]
            assert session.scalar(select(InboundUpdate.state).where(InboundUpdate.update_key == "in-1")) == "handled"
    finally:
        threads.close()
        runtime.close()


async def test_with_several_processes_each_takes_its_own_updates_and_anothers_only_once_it_is_overdue(
    tmp_path: Path,
) -> None:
    settings = load_settings(environ={"DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}"})
    runtime = open_runtime(settings, clock=ManualClock(local(2024, 2, 22, 10)))
    now = datetime(2026, 12, 2, 4, tzinfo=UTC)
    try:
        from storage.db import upgrade

        upgrade(runtime.engine)
        with runtime.transaction() as session:

            def stored(key: str, user: str, seconds_ago: int) -> int:
                received = Received("sandbox", key, {"text": key}, user, user)
                update_id = inbox.store(session, received, now - timedelta(seconds=seconds_ago))
                assert update_id is not None
                return update_id

            other_old = stored("other-old", "7001", 60)  # another process's, waiting a minute: it is gone
            other_new = stored("other-new", "7002", 5)  # another process's, just received: it handles it
            behind = stored("mine-behind", "7002", 1)  # mine, but the same person's earlier one comes first
            mine = stored("mine", "7003", 1)
            chosen = inbox.due(session, now, others_before=now - timedelta(seconds=20), mine={behind, mine})
            everything = inbox.due(session, now)
        assert [u.id for u in chosen] == [other_old, mine]
        assert other_new not in [u.id for u in chosen]
        assert [u.id for u in everything] == [other_old, other_new, behind, mine]  # one process: all, in order
    finally:
        runtime.close()
