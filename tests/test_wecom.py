"""WeCom end to end: callbacks signed and encrypted as WeCom does, against the real service and a fake WeCom API."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.service import Service, build_service, run_service
from bot.wecom.crypto import WeComCrypto
from core.clock import ManualClock, SystemClock
from core.config import PersonRole, Settings, load_settings
from jobs.ticks import send_digest
from storage.models import StatusReport
from tests.conftest import local
from tests.fakes.wecom_api import FakeWeCom, card_event_xml, make_callback, text_message_xml
from tests.support import invite

pytestmark = pytest.mark.asyncio

TOKEN = "duban-callback-token"
AES_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode().rstrip("=")
LIAISON, OFFICE = "zhangsan", "lisi"
_msg_ids = itertools.count(7_000_000_000_000_000_000)


@pytest.fixture
def fake() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server
        # Every body the service sent had the shape WeCom documents.
        assert server.schema_errors == []


def wecom_settings(tmp_path: Path, fake: FakeWeCom, **extra: str) -> Settings:
    return load_settings(
        environ={
            "DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'duban.sqlite3'}",
            "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
            "DUBAN_SERVICE_DATA_DIR": str(tmp_path),
            "DUBAN_WEB_PORT": "0",
            "DUBAN_ESCALATION_RESOLUTION": "1h",
            "DUBAN_DIGEST_ENABLED": "false",
            "DUBAN_REPORT_FILE_WORKERS": "0",
            "DUBAN_WECOM_CORP_ID": fake.corp_id,
            "DUBAN_WECOM_AGENT_ID": str(fake.agent_id),
            "DUBAN_WECOM_SECRET": fake.secret,
            "DUBAN_WECOM_CALLBACK_TOKEN": TOKEN,
            "DUBAN_WECOM_ENCODING_AES_KEY": AES_KEY,
            "DUBAN_WECOM_API_BASE": fake.url,
            "DUBAN_WECOM_ROBOT_KEYS": "office=robot-key-1",
            **extra,
        }
    )


class WeComUser:
    """Sends what a member types to the service's callback URL, as WeCom would."""

    def __init__(self, service: Service, fake: FakeWeCom, http: httpx.AsyncClient) -> None:
        self.service = service
        self.fake = fake
        self.http = http
        self.crypto = WeComCrypto(TOKEN, AES_KEY, fake.corp_id)
        self.url = f"http://127.0.0.1:{service.port}{service.settings.wecom.callback_path}"

    async def post(self, inner_xml: str, **overrides: str) -> httpx.Response:
        params, body = make_callback(self.crypto, inner_xml)
        return await self.http.post(self.url, params={**params, **overrides}, content=body)

    async def text(self, user: str, content: str, msg_id: str | None = None) -> httpx.Response:
        xml = text_message_xml(
            self.fake.corp_id, user, content, msg_id or str(next(_msg_ids)), self.fake.agent_id, int(time.time())
        )
        return await self.post(xml)

    async def press(self, user: str, key: str, task_id: str, response_code: str) -> httpx.Response:
        xml = card_event_xml(self.fake.corp_id, user, key, task_id, response_code, self.fake.agent_id, int(time.time()))
        return await self.post(xml)

    async def says(self, user: str, content: str) -> dict[str, Any]:
        """Send text; the next message the app sends that member."""
        before = len(self.to(user))
        response = await self.text(user, content)
        assert response.status_code == 200
        return await self.next_to(user, before)

    def to(self, user: str) -> list[dict[str, Any]]:
        return [m for m in self.fake.sent if m.get("touser") == user]

    async def next_to(self, user: str, before: int) -> dict[str, Any]:
        deadline = (
            time.monotonic() + 20
        )  # a loaded machine is slow, not wrong: waiting longer costs a passing test nothing
        while len(self.to(user)) <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing more sent to {user}: {self.to(user)}")
            await asyncio.sleep(0.01)
        return self.to(user)[before]


def body_text(message: dict[str, Any]) -> str:
    if message["msgtype"] == "text":
        return message["text"]["content"]
    if message["msgtype"] == "template_card":
        card = message["template_card"]
        return card["main_title"]["title"] + "\n" + card.get("sub_title_text", "")
    return str(message)


@pytest_asyncio.fixture
async def member(tmp_path: Path, fake: FakeWeCom) -> AsyncIterator[WeComUser]:
    service = build_service(
        wecom_settings(tmp_path, fake), clock=ManualClock(local(2024, 3, 10, 10)), sender_clock=SystemClock()
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(service, stop, on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 15)
    async with httpx.AsyncClient(trust_env=False) as http:
        user = WeComUser(service, fake, http)
        bind = await user.says(LIAISON, f"绑定 {invite(service.runtime, '县发改局')}")
        assert "绑定成功" in body_text(bind)
        office = await user.says(OFFICE, f"绑定 {invite(service.runtime, '县政府政务督查室', PersonRole.OFFICE)}")
        assert "督查室" in body_text(office)
        yield user
    stop.set()
    await asyncio.wait_for(task, 15)


def reports(user: WeComUser) -> list[StatusReport]:
    with user.service.runtime.transaction() as session:
        return list(
            session.scalars(
                select(StatusReport).options(selectinload(StatusReport.task), selectinload(StatusReport.attachments))
            )
        )


async def test_url_verification_answers_the_decrypted_echostr(member: WeComUser) -> None:
    echostr = member.crypto.encrypt("echo-1616140317555161061")
    timestamp, nonce = str(int(time.time())), "12345"
    params = {
        "msg_signature": member.crypto.signature(timestamp, nonce, echostr),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }
    response = await member.http.get(member.url, params=params)
    assert (response.status_code, response.text) == (200, "echo-1616140317555161061")
    forged = await member.http.get(member.url, params={**params, "msg_signature": "0" * 40})
    assert forged.status_code == 403


async def test_text_commands_go_to_the_same_conversation(member: WeComUser) -> None:
    tasks = await member.says(LIAISON, "任务")
    assert "牵头任务(9 项)" in body_text(tasks)


async def test_report_by_text_is_recorded(member: WeComUser) -> None:
    reply = await member.says(LIAISON, "报告 12 按计划推进 已对接绿色食品企业5家")
    assert "已记录" in body_text(reply)
    [report] = reports(member)
    assert (report.task.number, report.status, report.platform) == (12, "on_track", "wecom")
    sent = member.to(LIAISON)[-1]
    # an answer is never duplicate-checked: two identical answers are both wanted
    assert "enable_duplicate_check" not in sent and sent["agentid"] == member.fake.agent_id


async def test_report_by_card_button_records_the_status_and_updates_the_card(member: WeComUser) -> None:
    card = await member.says(LIAISON, "报告 12 已对接5家企业")
    assert card["msgtype"] == "template_card"
    buttons = {b["text"]: b["key"] for b in card["template_card"]["button_list"]}
    assert "存在风险" in buttons and len(buttons) <= 6
    member.fake.register_response_code("code-1")
    response = await member.press(LIAISON, buttons["存在风险"], card["template_card"]["task_id"], "code-1")
    assert response.status_code == 200
    deadline = time.monotonic() + 20  # a loaded machine is slow, not wrong: waiting longer costs a passing test nothing
    while not reports(member) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    [report] = reports(member)
    assert (report.status, report.note) == ("at_risk", "已对接5家企业")
    update = await asyncio.wait_for(_first_card_update(member.fake), 20)
    # the documented update: the card's buttons greyed out, naming what was recorded
    assert (update["response_code"], update["button"]) == ("code-1", {"replace_name": "已报送:存在风险"})
    receipt = await member.next_to(LIAISON, member.to(LIAISON).index(card) + 1)
    assert "已记录" in body_text(receipt)


async def _first_card_update(fake: FakeWeCom) -> dict[str, Any]:
    while not fake.card_updates:
        await asyncio.sleep(0.01)
    return fake.card_updates[0]


async def test_the_same_msg_id_twice_is_processed_once(member: WeComUser) -> None:
    await member.text(LIAISON, "报告 12 按计划推进 只报一次", msg_id="8000000000000000001")
    await member.text(LIAISON, "报告 12 按计划推进 只报一次", msg_id="8000000000000000001")
    await member.says(LIAISON, "我是谁")
    assert len(reports(member)) == 1


async def test_forged_signature_gets_403_and_changes_nothing(member: WeComUser) -> None:
    xml = text_message_xml(
        member.fake.corp_id,
        LIAISON,
        "报告 12 按计划推进 伪造",
        "9000000000000000001",
        member.fake.agent_id,
        int(time.time()),
    )
    response = await member.post(xml, msg_signature="f" * 40)
    assert response.status_code == 403
    await member.says(LIAISON, "我是谁")
    assert reports(member) == []


def _encrypt_raw(raw: bytes) -> str:
    key = base64.b64decode(AES_KEY + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode()


async def _post_encrypted(member: WeComUser, encrypted: str) -> httpx.Response:
    timestamp, nonce = str(int(time.time())), "777"
    body = f"<xml><ToUserName><![CDATA[{member.fake.corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[{member.fake.agent_id}]]></AgentID></xml>"
    params = {
        "msg_signature": member.crypto.signature(timestamp, nonce, encrypted),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return await member.http.post(member.url, params=params, content=body.encode())


async def test_bad_padding_gets_403(member: WeComUser) -> None:
    inner = text_message_xml(
        member.fake.corp_id,
        LIAISON,
        "报告 12 按计划推进 坏填充",
        "9000000000000000002",
        member.fake.agent_id,
        int(time.time()),
    ).encode()
    raw = os.urandom(16) + struct.pack(">I", len(inner)) + inner + member.fake.corp_id.encode()
    raw += b"\x00" * (32 - len(raw) % 32)  # zero is never a PKCS#7 pad value
    assert (await _post_encrypted(member, _encrypt_raw(raw))).status_code == 403
    assert reports(member) == []


async def test_wrong_corp_id_gets_403(member: WeComUser) -> None:
    other = WeComCrypto(TOKEN, AES_KEY, "wwsomebodyelse")
    inner = text_message_xml(
        "wwsomebodyelse",
        LIAISON,
        "报告 12 按计划推进 别家企业",
        "9000000000000000003",
        member.fake.agent_id,
        int(time.time()),
    )
    assert (await _post_encrypted(member, other.encrypt(inner))).status_code == 403
    assert reports(member) == []


async def test_stale_callback_gets_403(member: WeComUser) -> None:
    xml = text_message_xml(
        member.fake.corp_id, LIAISON, "报告 12 按计划推进 重放", "9000000000000000004", member.fake.agent_id, 1
    )
    params, body = make_callback(member.crypto, xml, timestamp=str(int(time.time()) - 3600))
    assert (await member.http.post(member.url, params=params, content=body)).status_code == 403


async def test_token_expiry_mid_run_is_recovered(member: WeComUser) -> None:
    requests_before = member.fake.token_requests
    member.fake.expire_tokens()
    reply = await member.says(LIAISON, "我是谁")
    assert "县发改局" in body_text(reply)
    assert member.fake.token_requests == requests_before + 1


async def test_refined_plan_file_is_downloaded_and_kept(member: WeComUser) -> None:
    member.service.runtime.clock.set(local(2024, 2, 26, 10))  # type: ignore[attr-defined]
    ask = await member.says(LIAISON, "报告 1 按计划推进 细化方案经局长审定")
    assert "需上传" in body_text(ask)
    media_id = member.fake.user_media("县1细化方案.pdf", b"%PDF-1.7 refined plan")
    xml = (
        f"<xml><ToUserName><![CDATA[{member.fake.corp_id}]]></ToUserName><FromUserName><![CDATA[{LIAISON}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[file]]></MsgType><MediaId><![CDATA[{media_id}]]></MediaId>"
        f"<FileName><![CDATA[县1细化方案.pdf]]></FileName><MsgId>9100000000000000001</MsgId><AgentID>{member.fake.agent_id}</AgentID></xml>"
    )
    before = len(member.to(LIAISON))
    assert (await member.post(xml)).status_code == 200
    done = await member.next_to(LIAISON, before)
    assert "已记录" in body_text(done)
    [report] = reports(member)
    assert Path(report.attachments[0].stored_path).read_bytes() == b"%PDF-1.7 refined plan"


async def test_invalid_user_is_marked_unreachable(member: WeComUser) -> None:
    member.fake.mark_invalid_user(LIAISON)
    await member.text(LIAISON, "我是谁")
    from storage.models import Identity

    deadline = time.monotonic() + 20  # a loaded machine is slow, not wrong: waiting longer costs a passing test nothing
    while time.monotonic() < deadline:
        with member.service.runtime.transaction() as session:
            identity = session.scalar(select(Identity).where(Identity.external_id == LIAISON))
        if identity is not None and not identity.reachable:
            break
        await asyncio.sleep(0.02)
    assert identity is not None and not identity.reachable


async def test_digest_goes_to_the_office_group_robot(tmp_path: Path, fake: FakeWeCom) -> None:
    settings = wecom_settings(tmp_path, fake, DUBAN_DIGEST_CHATS="wecom_robot:office")
    service = build_service(settings, clock=ManualClock(local(2024, 3, 4, 8, 30)), sender_clock=SystemClock())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(service, stop, on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        await asyncio.to_thread(send_digest, service.runtime, service.digest, local(2024, 3, 4, 8, 30))
        service.sender.wake()
        deadline = time.monotonic() + 20

        def digest() -> list[dict[str, Any]]:
            return [
                m
                for m in fake.robot_messages["robot-key-1"]
                if m["msgtype"] == "markdown" and "【督办日报" in m["markdown"]["content"]
            ]

        def files() -> list[dict[str, Any]]:
            return [m for m in fake.robot_messages["robot-key-1"] if m["msgtype"] == "file"]

        while (not digest() or len(files()) < 2) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # one screen, however many items are overdue; the full list is the file beside it
        [summary] = digest()
        assert summary["markdown"]["content"].startswith("【督办日报】2024-03-04 08:30")
        assert len(summary["markdown"]["content"].encode()) <= 4096
        uploads = {u["media_id"]: u["file_name"] for u in fake.uploads}
        assert any(uploads[m["file"]["media_id"]].startswith("逾期清单-") for m in files())
        # the refined plan's 通报 went to the same group as a file when the service started on 4 March
        assert any(uploads[m["file"]["media_id"]].startswith("通报") for m in files())
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


# --- scenarios, as WeCom's servers and members behave --------------------------------------------


TOWN = "wangwu"  # 簰洲湾镇人民政府: responsible for 县1 and 县12, leads nothing, so owes no refined plan


async def _remind_about(member: WeComUser, user: str, tasks: str = "12") -> dict[str, Any]:
    """The office adds a round for ``tasks``; its first rung reaches ``user``."""
    added = await member.says(OFFICE, f"新增督查 zx{tasks.replace(',', '-')} 2024-03-15 {tasks} 专项督查{tasks}")
    assert "专项督查" in body_text(added), body_text(added)
    before = len(member.to(user))
    await asyncio.to_thread(member.service.remind_now)
    return await member.next_to(user, before)


async def _remind_about_task_12(member: WeComUser) -> dict[str, Any]:
    return await _remind_about(member, LIAISON)


async def _bind_town(member: WeComUser) -> None:
    bound = await member.says(TOWN, f"绑定 {invite(member.service.runtime, '簰洲湾镇人民政府')}")
    assert "绑定成功" in body_text(bound)


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _cards(member: WeComUser, user: str) -> list[dict[str, Any]]:
    return [m for m in member.to(user) if m["msgtype"] == "template_card"]


async def test_reminder_on_wecom_says_to_press_or_type_not_to_reply(member: WeComUser) -> None:
    reminder = await _remind_about_task_12(member)
    text = body_text(reminder)
    assert "回复本消息" not in text and "点下方“报送”按钮,或直接发送进展" in text
    await _until(lambda: bool(_cards(member, LIAISON)))
    [card] = _cards(member, LIAISON)
    assert [b["text"] for b in card["template_card"]["button_list"]] == ["报送 县12"]
    assert reminder["enable_duplicate_check"] == 1  # a rung resent after a timeout reaches the member once


async def test_a_status_typed_without_a_reply_answers_the_one_open_reminder(member: WeComUser) -> None:
    await _bind_town(member)
    await _remind_about(member, TOWN, "12")
    await _until(lambda: bool(_cards(member, TOWN)))
    receipt = await member.says(TOWN, "按计划推进 已签约两家绿色食品企业")
    assert "已记录" in body_text(receipt) and "专项督查12" in body_text(receipt)
    [report] = reports(member)
    assert (report.task.number, report.status, report.note, report.via) == (
        12,
        "on_track",
        "已签约两家绿色食品企业",
        "reply",
    )


async def test_with_several_open_reminders_a_typed_status_asks_which_with_buttons(member: WeComUser) -> None:
    await _bind_town(member)
    await _remind_about(member, TOWN, "12,1")
    await _until(lambda: bool(_cards(member, TOWN)))
    question = await member.says(TOWN, "按计划推进 已签约两家")
    await _until(lambda: len(_cards(member, TOWN)) == 2)
    menu = _cards(member, TOWN)[-1]["template_card"]
    assert "哪一项" in body_text(question) + menu["main_title"]["title"] + menu.get("sub_title_text", "")
    keys = {b["text"].split()[0]: b["key"] for b in menu["button_list"]}
    assert {"县1", "县12"} <= set(keys)
    member.fake.register_response_code("code-which")
    await member.press(TOWN, keys["县12"], menu["task_id"], "code-which")
    await _until(lambda: bool(reports(member)))
    [report] = reports(member)
    assert (report.task.number, report.status, report.note) == (12, "on_track", "已签约两家")


async def test_a_member_owing_a_catch_up_and_a_new_round_is_asked_which(member: WeComUser) -> None:
    await _remind_about_task_12(member)  # on top of the refined plan the liaison was told of on binding
    await _until(lambda: bool(_cards(member, LIAISON)))  # the new round's card, after its text
    question = await member.says(LIAISON, "按计划推进 已签约两家")
    assert "哪一项" in body_text(question) and "县12" in body_text(question)
    assert reports(member) == []


async def test_answer_by_buttons_leaves_the_reminder_and_the_status_card_showing_the_record(
    member: WeComUser,
) -> None:
    await _remind_about_task_12(member)
    await _until(lambda: bool(_cards(member, LIAISON)))
    reminder = _cards(member, LIAISON)[0]["template_card"]
    member.fake.register_response_code("code-reminder")
    before = len(member.to(LIAISON))
    await member.press(LIAISON, reminder["button_list"][0]["key"], reminder["task_id"], "code-reminder")
    await member.next_to(LIAISON, before)
    await _until(lambda: len(_cards(member, LIAISON)) == 2)
    status_card = _cards(member, LIAISON)[1]["template_card"]
    statuses = {b["text"]: b["key"] for b in status_card["button_list"]}
    member.fake.register_response_code("code-status")
    before = len(member.to(LIAISON))
    await member.press(LIAISON, statuses["按计划推进"], status_card["task_id"], "code-status")
    ask = await member.next_to(LIAISON, before)
    assert "说明" in body_text(ask)
    receipt = await member.says(LIAISON, "已签约两家")
    assert "已记录" in body_text(receipt)
    await _until(lambda: len(member.fake.card_updates) == 2)
    updates = {u["response_code"]: u for u in member.fake.card_updates}
    for code in ("code-reminder", "code-status"):
        # both cards: buttons greyed out (no live buttons), naming what was recorded
        assert updates[code]["button"] == {"replace_name": "已报送:按计划推进"}


async def test_two_identical_unclear_messages_are_both_answered(member: WeComUser) -> None:
    first = await member.says(LIAISON, "这个怎么弄")
    second = await member.says(LIAISON, "这个怎么弄")
    assert body_text(first) == body_text(second) and "没有看懂" in body_text(second)
    assert member.fake.duplicates_suppressed == []


async def test_overdue_on_wecom_is_one_short_answer_and_a_file(member: WeComUser) -> None:
    before = len(member.to(OFFICE))
    answer = await member.says(OFFICE, "逾期")
    assert body_text(answer).startswith("逾期未报送(2024-03-10 10:00)")
    await _until(lambda: any(m["msgtype"] == "file" for m in member.to(OFFICE)[before:]))
    await asyncio.sleep(0.3)  # anything more would have been sent by now
    sent = member.to(OFFICE)[before:]
    assert [m["msgtype"] for m in sent] == ["text", "file"]
    [upload] = [u for u in member.fake.uploads if u["media_id"] == sent[1]["file"]["media_id"]]
    assert upload["file_name"] == "逾期清单-20240310-1000.xlsx" and upload["content"].startswith(b"PK")


async def test_a_departed_member_is_marked_unreachable_shown_to_the_office_and_not_sent_to(
    member: WeComUser,
) -> None:
    member.fake.mark_invalid_user(LIAISON)
    await member.says(OFFICE, "新增督查 zx12 2024-03-15 12 专项督查12")
    await asyncio.to_thread(member.service.remind_now)
    from storage.models import Identity

    def reachable() -> bool:
        with member.service.runtime.transaction() as session:
            identity = session.scalar(select(Identity).where(Identity.external_id == LIAISON))
            assert identity is not None
            return identity.reachable

    await _until(lambda: not reachable())
    who = await member.says(OFFICE, "绑定情况")
    assert "无法送达" in body_text(who)
    urged = await member.says(OFFICE, "催办 县发改局")
    assert "无法" in body_text(urged)
    rejected = [r for r in member.fake.requests if r[0] == "/cgi-bin/message/send" and r[2] == 81013]
    assert len(rejected) == 1, "the ladder stops sending to the departed member"


async def test_the_morning_digest_reaches_the_office_member_without_a_drop(tmp_path: Path, fake: FakeWeCom) -> None:
    """A month of overdue items, the digest and the office's questions inside half an hour: nothing dropped."""
    clock = ManualClock(local(2024, 3, 28, 8, 30))
    service = build_service(wecom_settings(tmp_path, fake), clock=clock, sender_clock=SystemClock())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(service, stop, on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            user = WeComUser(service, fake, http)
            await user.says(OFFICE, f"绑定 {invite(service.runtime, '县政府政务督查室', PersonRole.OFFICE)}")
            await asyncio.to_thread(send_digest, service.runtime, service.digest, clock.now())
            service.sender.wake()
            for minute in (5, 12, 20, 29):
                clock.set(local(2024, 3, 28, 8, 30 + minute))
                await user.says(OFFICE, "逾期" if minute % 2 else "日报")
            await _until(lambda: sum(m["msgtype"] == "file" for m in user.to(OFFICE)) == 5, timeout=10)
        assert fake.dropped == [] and fake.schema_errors == []
        assert len(user.to(OFFICE)) <= 12  # binding, then text and file per answer, not hundreds
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
