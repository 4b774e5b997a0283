"""The sandbox chat and the office dashboard as served, in-process: Starlette's test client on the real app.

Playwright tests (tests/test_browser.py) drive the same pages in Chromium; these
check what the server answers, quickly.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from bot.sandbox import SandboxHub, event_stream
from bot.service import Service, build_service
from bot.web import build_web_app
from core.clock import ManualClock
from core.config import Settings
from core.runtime import Runtime
from storage.models import AuditLog, Obligation, SandboxMessage
from tests.conftest import local


@pytest.fixture
def service(runtime: Runtime, settings: Settings, clock: ManualClock) -> Iterator[Service]:
    built = build_service(settings, clock=clock, sender_clock=clock)
    yield built
    built.threads.close()
    built.runtime.close()


class WebClient:
    """httpx on the ASGI app, driven from a synchronous test through one event loop."""

    def __init__(self, service: Service) -> None:
        self.runner = asyncio.Runner()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_web_app(service)), base_url="http://127.0.0.1"
        )
        self.cookies = self.http.cookies

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.runner.run(self.http.get(path, **options))

    def post(self, path: str, *, follow_redirects: bool = True, **options: Any) -> httpx.Response:
        return self.runner.run(self.http.post(path, follow_redirects=follow_redirects, **options))

    def run(self, awaitable: Any) -> Any:
        return self.runner.run(awaitable)

    def close(self) -> None:
        self.runner.run(self.http.aclose())
        self.runner.close()


@pytest.fixture
def client(service: Service) -> Iterator[WebClient]:
    browser = WebClient(service)
    yield browser
    browser.close()


def csrf(client: WebClient, path: str = "/") -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def join(client: WebClient, unit: str = "县发改局", role: str = "liaison", name: str = "王联络") -> str:
    token = csrf(client)
    answer = client.post(
        "/sandbox/join", data={"csrf": token, "name": name, "unit": unit, "role": role}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client.cookies["duban_sandbox"]


def deliver(client: WebClient, service: Service) -> None:
    client.run(service.sender.drain())


def send(client: WebClient, service: Service, text: str, file: tuple[str, bytes] | None = None) -> None:
    files = {"file": (file[0], file[1], "application/pdf")} if file else None
    answer = client.post("/sandbox/send", data={"csrf": csrf(client, "/chat"), "text": text}, files=files)
    assert answer.status_code == 200, answer.text
    deliver(client, service)


def test_a_file_sent_in_the_sandbox_is_shown_with_its_size_and_a_link_and_the_chat_still_loads(
    client: WebClient, service: Service
) -> None:
    join(client)
    send(client, service, "报告 45 按计划推进 细化方案见附件", ("细化方案.pdf", b"%PDF-1.4 " + b"x" * 2000))
    page = client.get("/chat")
    assert page.status_code == 200
    assert "已记录" in page.text
    link = re.search(r'<a href="(/sandbox/upload/[^"]+)">细化方案.pdf</a> <span class="muted">2.0 KB</span>', page.text)
    assert link is not None, page.text
    download = client.get(link.group(1))
    assert download.status_code == 200 and download.content.startswith(b"%PDF-1.4")


def test_someone_elses_sent_file_is_not_served(client: WebClient, service: Service) -> None:
    join(client)
    send(client, service, "报告 45 按计划推进 细化方案见附件", ("细化方案.pdf", b"%PDF-1.4 plan"))
    link = re.search(r'href="(/sandbox/upload/[^"]+)"', client.get("/chat").text)
    assert link is not None
    client.cookies.clear()
    join(client, "县科经局")
    refused = client.get(link.group(1))
    assert refused.status_code == 404 and "没有这个文件" in refused.text and "/static/duban.css" in refused.text


def test_a_message_that_cannot_be_shown_does_not_break_the_chat(
    client: WebClient, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    persona = join(client)
    deliver(client, service)
    with service.runtime.transaction() as session:
        session.add(
            SandboxMessage(
                chat_id=persona, direction="out", text="坏消息", buttons=[["not a button"]], files=["not a file"]
            )
        )
    with caplog.at_level(logging.ERROR, logger="duban.sandbox"):
        page = client.get("/chat")
    assert page.status_code == 200
    assert "绑定成功" in page.text  # the rest of the conversation
    assert "坏消息" in page.text and "无法显示" in page.text
    assert "could not be rendered" in caplog.text


def test_bubble_times_are_in_the_office_zone_with_the_year_when_not_this_year(
    client: WebClient, service: Service, clock: ManualClock
) -> None:
    persona = join(client)
    with service.runtime.transaction() as session:
        session.add(SandboxMessage(chat_id=persona, direction="out", text="今天", created_at=local(2024, 2, 22, 8, 59)))
        session.add(SandboxMessage(chat_id=persona, direction="out", text="去年", created_at=local(2023, 12, 30, 9, 5)))
        session.add(SandboxMessage(chat_id=persona, direction="out", text="前天", created_at=local(2024, 2, 20, 17, 0)))
    page = client.get("/chat").text
    assert '">08:59</time>' in page  # stored as 00:59 UTC
    assert '">2023-12-30 09:05</time>' in page
    assert '">02-20 17:00</time>' in page


def test_the_event_stream_survives_idle_periods_and_ends_quietly_when_the_browser_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = SandboxHub()
    gone = asyncio.Event()

    async def is_disconnected() -> bool:
        return gone.is_set()

    async def watch() -> list[bytes]:
        stream = event_stream(hub, "sb-1", is_disconnected, keepalive=0.01)
        seen = [await anext(stream), await anext(stream)]  # connected, then a keep-alive after an idle spell
        hub.publish("sb-1", 7)
        seen.append(await anext(stream))
        gone.set()
        seen += [chunk async for chunk in stream]
        return seen

    with caplog.at_level(logging.DEBUG):
        seen = asyncio.run(watch())
    assert seen == [b": connected\n\n", b": keep-alive\n\n", b'data: {"id": 7}\n\n']
    assert hub.watching("sb-1") == 0
    assert "StopAsyncIteration" not in caplog.text and "Traceback" not in caplog.text


def test_a_stream_cancelled_by_the_server_leaves_no_listener() -> None:
    hub = SandboxHub()

    async def is_disconnected() -> bool:
        return False

    async def watch() -> None:
        stream = event_stream(hub, "sb-2", is_disconnected, keepalive=60)
        await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        assert hub.watching("sb-2") == 1
        waiting.cancel()  # the client went away: Starlette cancels the response
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stream.aclose()

    asyncio.run(watch())
    assert hub.watching("sb-2") == 0


def test_the_audit_log_records_an_urge_only_for_units_reached_and_names_people(
    client: WebClient, service: Service
) -> None:
    join(client, "县发改局", name="王联络")
    client.cookies.clear()
    token = csrf(client, "/office")
    for target in ("县发改局", "县科经局"):  # 县科经局 has nobody bound
        answer = client.post("/office/urge", data={"csrf": token, "target": target, "back": "/office"})
        assert answer.status_code == 200
    with service.runtime.transaction() as session:
        urged = session.scalars(select(AuditLog.subject).where(AuditLog.action == "urge")).all()
    assert urged == ["县发改局"]
    audit = re.search(r"<h2>最近操作</h2>.*?</table>", client.get("/office").text, re.S)
    assert audit is not None
    assert "王联络" in audit.group(0) and "看板(本机)" in audit.group(0)
    assert "sb-" not in audit.group(0) and "web:" not in audit.group(0) and "sandbox:" not in audit.group(0)


def report_with_file(client: WebClient, service: Service) -> int:
    join(client, "县发改局", name="王联络")
    send(client, service, "报告 1 按计划推进 细化方案已审定", ("县1细化方案.pdf", b"%PDF-1.4 plan"))
    client.cookies.clear()
    with service.runtime.transaction() as session:
        from storage.models import StatusReport

        report_id = session.scalars(select(StatusReport.id)).one()
    return report_id


def test_a_report_has_a_page_with_unit_task_round_status_note_files_reviews_and_history(
    client: WebClient, service: Service
) -> None:
    report_id = report_with_file(client, service)
    overview = client.get("/office").text
    assert f'href="/office/report/{report_id}"' in overview and "县1细化方案.pdf" in overview
    page = client.get(f"/office/report/{report_id}").text
    for shown in ("县发改局", "县1", "细化方案报送", "按计划推进", "细化方案已审定", "王联络", "尚未审核"):
        assert shown in page, shown
    link = re.search(r'<a href="(/office/file/\d+)">县1细化方案.pdf</a>', page)
    assert link is not None
    assert client.get(link.group(1)).content == b"%PDF-1.4 plan"
    token = csrf(client, "/office")
    client.post("/office/review", data={"csrf": token, "task": "县1", "unit": "县发改局", "decision": "accepted"})
    page = client.get(f"/office/report/{report_id}").text
    assert "通过" in page and 'id="confirm"' in page  # returning now needs the confirmation box
    unit_page = client.get("/office/unit/县发改局").text
    task_page = client.get("/office/task/县1").text
    for shown in (unit_page, task_page):
        assert f'href="/office/report/{report_id}"' in shown and "县1细化方案.pdf" in shown
    assert client.get("/office/report/99999").status_code == 404
    assert client.get("/office/file/99999").status_code == 404


def test_returning_an_accepted_report_on_the_dashboard_needs_the_confirmation_box(
    client: WebClient, service: Service
) -> None:
    report_id = report_with_file(client, service)
    token = csrf(client, "/office")
    form = {"csrf": token, "task": "县1", "unit": "县发改局", "back": f"/office/report/{report_id}"}
    client.post("/office/review", data={**form, "decision": "accepted"})
    refused = client.post("/office/review", data={**form, "decision": "returned", "reason": "缺盖章页"})
    assert "已审核通过" in refused.text and "确认撤销通过并退回" in refused.text
    with service.runtime.transaction() as session:
        assert session.scalars(select(Obligation.state).where(Obligation.last_report_id == report_id)).one() == (
            "accepted"
        )
    done = client.post("/office/review", data={**form, "decision": "returned", "reason": "缺盖章页", "confirm": "1"})
    assert "缺盖章页" in done.text
    with service.runtime.transaction() as session:
        assert session.scalars(select(Obligation.state).where(Obligation.last_report_id == report_id)).one() == (
            "returned"
        )


def test_a_rounds_files_download_as_one_zip_and_the_html_notification_opens_inline(
    client: WebClient, service: Service
) -> None:
    report_with_file(client, service)
    archive = client.get("/office/files/refined-plan.zip")
    assert archive.status_code == 200 and archive.content[:2] == b"PK"
    assert quote("附件-嘉鱼县-refined-plan.zip") in archive.headers["content-disposition"]
    assert client.get("/office/files/nothing.zip").status_code == 404
    html = client.get("/office/export/refined-plan.html")
    assert html.headers["content-disposition"].startswith("inline")
    assert client.get("/office/export/refined-plan.xlsx").headers["content-disposition"].startswith("attachment")


def test_submitted_files_are_for_the_office_only(service: Service, settings: Settings, clock: ManualClock) -> None:
    sandbox = WebClient(service)
    try:
        report_with_file(sandbox, service)
    finally:
        sandbox.close()
    guarded = settings.model_copy(update={"web": settings.web.model_copy(update={"host": "0.0.0.0"})})
    public = build_service(guarded, clock=clock, sender_clock=clock)
    stranger = WebClient(public)
    try:
        for path in ("/office/file/1", "/office/report/1", "/office/files/refined-plan.zip", "/office/unit/县发改局"):
            answer = stranger.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/office/login", path
    finally:
        stranger.close()
        public.threads.close()
        public.runtime.close()


# --- rounds on the dashboard -------------------------------------------------------------------


def test_a_refused_round_names_the_unknown_task_and_keeps_what_was_typed(client: WebClient, service: Service) -> None:
    token = csrf(client, "/office/checkpoints")
    typed = {"key": "防汛", "title": "防汛专项督查", "due": "2030-07-10T18:00", "tasks": "30,999"}
    answer = client.post("/office/round", data={"csrf": token, **typed})
    assert answer.status_code == 400
    assert "县999" in answer.text
    for value in typed.values():
        assert f'value="{value}"' in answer.text, value
    with service.runtime.transaction() as session:
        assert session.scalars(select(AuditLog.subject).where(AuditLog.action == "checkpoint.add")).all() == []


def test_a_round_is_edited_and_cancelled_on_its_page_and_both_are_recorded(client: WebClient, service: Service) -> None:
    token = csrf(client, "/office/checkpoints")
    form = {"csrf": token, "key": "防汛", "title": "防汛专项督查", "due": "2030-07-10T18:00", "tasks": "41"}
    added = client.post("/office/round", data=form)
    assert added.status_code == 200 and "防汛专项督查" in added.text and 'value="县41"' in added.text
    page = f"/office/checkpoint/{quote('防汛')}"
    edited = client.post(
        f"{page}/edit", data={"csrf": token, "title": "防汛抗旱专项督查", "due": "2030-07-20T18:00", "tasks": "41,43"}
    )
    assert "已修改督查轮次" in edited.text and "防汛抗旱专项督查" in edited.text
    refused = client.post(f"{page}/edit", data={"csrf": token, "title": "x", "due": "2030-07-20T18:00", "tasks": "999"})
    assert "县999" in refused.text
    cancelled = client.post(f"{page}/cancel", data={"csrf": token, "reason": "与季度督办重复"})
    assert "已撤销该督查轮次" in cancelled.text and "防汛抗旱专项督查" not in cancelled.text
    with service.runtime.transaction() as session:
        logged = session.execute(select(AuditLog.action, AuditLog.detail).where(AuditLog.subject == "防汛")).all()
    assert [action for action, _ in logged] == ["checkpoint.add", "checkpoint.edit", "checkpoint.cancel"]
    assert logged[1][1]["title"] == {"from": "防汛专项督查", "to": "防汛抗旱专项督查"}
    assert logged[2][1] == {"reason": "与季度督办重复"}


def test_a_binding_code_is_shown_with_a_qr_code_of_the_telegram_link_and_the_wecom_instruction(
    runtime: Runtime, settings: Settings, clock: ManualClock
) -> None:
    named = settings.model_copy(
        update={"telegram": settings.telegram.model_copy(update={"bot_username": "jiayu_duban_bot"})}
    )
    service = build_service(named, clock=clock, sender_clock=clock)
    client = WebClient(service)
    try:
        token = csrf(client, "/office/people")
        answer = client.post("/office/invite", data={"csrf": token, "unit": "官桥镇", "role": "liaison"})
    finally:
        client.close()
        service.threads.close()
        service.runtime.close()
    assert "官桥镇人民政府" in answer.text
    code = re.search(r'<code id="binding-code"[^>]*>(\w+)</code>', answer.text)
    assert code is not None
    link = f"https://t.me/jiayu_duban_bot?start={code.group(1)}"
    assert f'href="{link}"' in answer.text and f'data-copy="{link}"' in answer.text
    assert "<svg" in answer.text and "Telegram 绑定二维码" in answer.text
    assert f"绑定 {code.group(1)}" in answer.text
    assert code.group(1) not in str(answer.url)


def test_a_page_that_is_not_there_is_a_styled_chinese_page(client: WebClient) -> None:
    answer = client.get("/office/no-such-page")
    assert answer.status_code == 404
    assert "页面不存在" in answer.text and "/static/duban.css" in answer.text and "Not Found" not in answer.text


def test_web_forms_answer_in_plain_words_not_chat_syntax(client: WebClient) -> None:
    token = csrf(client, "/office")
    empty = client.post("/office/urge", data={"csrf": token, "target": " "})
    assert "请填写要催办的单位或任务编号" in empty.text and "用法" not in empty.text
    unknown = client.post(
        "/office/review", data={"csrf": token, "task": "县999", "unit": "县发改局", "decision": "accepted"}
    )
    assert "没有编号为" in unknown.text and "发送 /tasks" not in unknown.text


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/office/checkpoint/no-such-round", "没有这个督查轮次"),
        ("/office/export/no-such-round.xlsx", "没有这个督查轮次"),
        ("/office/export/bad..name.pdf", "文件名应为"),
        ("/office/file/99999", "没有这个文件"),
        ("/office/files/nothing.zip", "没有这个督查轮次"),
    ],
)
def test_a_round_or_file_that_is_not_there_is_named_on_a_styled_chinese_page(
    client: WebClient, path: str, says: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert says in answer.text and "/static/duban.css" in answer.text


def test_a_form_sent_from_an_expired_page_is_refused_in_chinese_and_changes_nothing(
    client: WebClient, service: Service
) -> None:
    csrf(client, "/office")
    answer = client.post("/office/urge", data={"csrf": "stale-token", "target": "县发改局"})
    assert answer.status_code == 403
    assert "页面已过期" in answer.text and "/static/duban.css" in answer.text and "forbidden" not in answer.text
    with service.runtime.sessions() as session:
        assert session.scalars(select(AuditLog).where(AuditLog.action == "urge")).first() is None
