"""The sandbox chat and the office dashboard in a real browser (Playwright driving Debian's Chromium).

The service runs as ``duban run`` in its own process; screenshots of each step
are kept under ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.telegram_api import FakeTelegram
from tests.processes import ROOT, service_env

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    def __init__(self, tmp_path: Path, **extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = service_env(tmp_path, DUBAN_WEB_PORT=str(self.port), DUBAN_ESCALATION_RESOLUTION="1s", **extra)
        self.log = (tmp_path / "service.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()  # no process or open log left behind to fail a later test
                raise RuntimeError(f"duban run did not start: {(tmp_path / 'service.log').read_text(errors='replace')}")
            time.sleep(0.1)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bot", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        return done.stdout

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    running = ServiceProcess(tmp_path)
    yield running
    running.stop()


def sent_to(fake: FakeTelegram, chat: int, words: str, timeout: float = 10) -> str:
    """Poll what the bot (another process) sent; Playwright's own loop forbids the fake's blocking wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in fake.messages_to(chat):
            if words in (message.text or ""):
                return message.text or ""
        time.sleep(0.05)
    raise AssertionError(f"nothing with {words!r} sent to {chat}: {[m.text for m in fake.messages_to(chat)]}")


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
def test_liaison_answers_a_reminder_and_the_dashboard_light_turns_green(
    browser, service: ServiceProcess, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="zh-CN")
    office = context.new_page()
    office.goto(f"{service.url}/office")
    assert "嘉鱼县" in office.inner_text("h1")
    shot(office, "01-dashboard")

    chat = context.new_page()
    chat.goto(f"{service.url}/")
    chat.fill("input[name=name]", "王联络")
    chat.select_option("#unit", "县发改局")
    chat.select_option("#role", "liaison")
    chat.click("#join button[type=submit]")
    chat.wait_for_url("**/chat")
    chat.wait_for_selector("li.msg.out >> text=绑定成功")
    shot(chat, "02-bound")

    # A round due in three minutes whose only rung is five seconds from now (no calendar: a demo).
    service.cli("checkpoint", "add", "demo", "--title", "演示督办", "--due", "+3m", "--tasks", "45", "--ladder=-175s")
    office.goto(f"{service.url}/office/checkpoint/demo")
    assert office.get_attribute("tr[data-task='县45']", "data-light") == "yellow"  # owed, not yet due

    reminder = chat.wait_for_selector("li.msg.out:has-text('【督办提醒】演示督办')", timeout=30_000)
    shot(chat, "03-reminder")
    reminder.query_selector("button.reply").click()  # type: ignore[union-attr]
    chat.fill("#text", "按计划推进 可研报告已获批复")
    chat.click("#composer button.primary")
    chat.wait_for_selector("li.msg.out:has-text('已记录')")
    assert "计入:演示督办 —— 按时报送" in chat.inner_text("li.msg.out:has-text('已记录')")
    shot(chat, "04-recorded")

    office.reload()
    assert office.get_attribute("tr[data-task='县45']", "data-light") == "green"
    assert "按计划推进" in office.inner_text("tr[data-task='县45']")
    shot(office, "05-light-green")

    with office.expect_download() as waiting:
        office.click("text=下载通报 XLSX")
    download = waiting.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    from openpyxl import load_workbook

    book = load_workbook(saved)
    assert {"概况", "任务", "单位"} <= set(book.sheetnames)
    context.close()


@pytest.mark.timeout(120)
def test_menu_buttons_work_in_the_browser_on_a_phone(browser, service: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{service.url}/")
    page.select_option("#unit", "县科经局")
    page.click("#join button[type=submit]")
    page.wait_for_url("**/chat")
    page.click("button.chip[data-say='/report']")
    page.wait_for_selector("button.kb:has-text('县12')").click()
    page.wait_for_selector("button.kb:has-text('存在风险')").click()
    page.wait_for_selector("li.msg.out:has-text('请用一段话说明进展')")
    page.fill("#text", "两个技改项目用地尚未落实")
    page.click("#composer button.primary")
    page.wait_for_selector("button.kb:has-text('确认提交')").click()
    page.wait_for_selector("li.msg.out:has-text('已记录')")
    shot(page, "06-phone-report")
    context.close()


@pytest.mark.timeout(120)
def test_office_imports_a_corrected_plan_from_the_dashboard(browser, service: ServiceProcess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from core.config import BUNDLED_PLAN

    edited = tmp_path / "edited.txt"
    edited.write_text(
        BUNDLED_PLAN.read_text(encoding="utf-8").replace(
            "11.县城建地比提高2%。(牵头单位:县自然资源规划局", "11.县城建地比提高2%。(牵头单位:县自然资源和规划局"
        ),
        encoding="utf-8",
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{service.url}/office")
    page.click("nav >> text=导入方案")
    page.set_input_files("input[name=file]", str(edited))
    page.click("text=上传并预览")
    page.wait_for_selector("#summary >> text=尚未导入")
    assert page.inner_text("#count-county") == "76" and page.inner_text("#count-assignments") == "1341"
    page.click("tr[data-task='county-11'] >> text=第30行")
    assert "县自然资源和规划局" in page.inner_text("tr[data-task='county-11'] pre.source")
    shot(page, "09-import-preview")

    page.click("tr.similar:has-text('县自然资源和规划局') >> text=并入 县自然资源规划局")
    page.wait_for_selector("text=已将“县自然资源和规划局”合并为“县自然资源规划局”")
    assert page.inner_text("tr[data-task='county-11'] td.lead") == "县自然资源规划局"

    page.click("tr[data-task='county-19'] >> text=修改单位")
    page.fill("tr[data-task='county-19'] input[name=responsible]", "县卫健局、县财政局")
    page.click("tr[data-task='county-19'] >> text=保存")
    page.wait_for_selector("text=已修改任务 county-19 的单位")
    assert page.inner_text("tr[data-task='county-19'] td.responsible") == "县卫健局、县财政局"
    shot(page, "10-import-corrected")

    page.click("#confirm >> text=确认导入")
    page.wait_for_url("**/office?*")
    assert "已重新导入 edited.txt:109 项任务,1342 条分工" in page.inner_text(".flash")
    shot(page, "11-imported")
    context.close()
    tasks = {row["label"]: row for row in json.loads(service.cli("tasks", "--json"))}
    assert tasks["县11"]["lead"] == ["县自然资源规划局"]
    assert tasks["县19"]["responsible"] == ["县卫健局", "县财政局"]


def test_forged_form_posts_are_refused(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url) as client:
        client.get("/office")  # gets a session cookie and a CSRF token
        assert client.post("/office/urge", data={"target": "县发改局"}).status_code == 403
        assert client.post("/office/urge", data={"target": "县发改局", "csrf": "guessed"}).status_code == 403
    with httpx.Client(base_url=service.url) as stranger:  # no session at all
        assert stranger.post("/office/round", data={"key": "x", "csrf": ""}).status_code == 403


@pytest.mark.timeout(120)
def test_sign_in_is_required_when_a_platform_is_configured(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FakeTelegram(enforce_limits=False) as fake:
        service = ServiceProcess(
            tmp_path,
            DUBAN_TELEGRAM_TOKEN=fake.token,
            DUBAN_TELEGRAM_BASE_URL=fake.base_url,
            DUBAN_TELEGRAM_BASE_FILE_URL=fake.base_file_url,
            DUBAN_WEB_DASHBOARD_SECRET="correct horse battery staple",
        )
        try:
            code = re.search(r"^\s+(\S{6,24})$", service.cli("invite", "县政府政务督查室", "--role", "office"), re.M)
            assert code is not None
            fake.user_message(777, f"/start {code.group(1)}", username="duchashi")
            sent_to(fake, 777, "绑定成功")

            context = browser.new_context(locale="zh-CN")
            page = context.new_page()
            page.goto(f"{service.url}/office")
            assert page.url.endswith("/office/login")
            assert page.goto(f"{service.url}/").url.endswith("/office/login")  # no sandbox once a platform is set up
            page.fill("input[name=secret]", "wrong")
            page.click("text=口令登录")
            page.wait_for_selector("text=口令不正确")
            shot(page, "07-login-refused")

            page.fill("input[name=who]", "duchashi")
            page.click("text=发送登录码")
            page.wait_for_selector("text=登录码已通过机器人发送")
            login_code = re.search(r"(\d{6})", sent_to(fake, 777, "登录码"))
            assert login_code is not None
            page.fill("input[name=code]", login_code.group(1))
            page.click("form[action='/office/login/verify'] button")
            page.wait_for_url("**/office")
            assert "嘉鱼县" in page.inner_text("h1")
            shot(page, "08-signed-in")
            context.close()
        finally:
            service.stop()


# --- acceptance: a 细化方案 from upload to the 通报 (issue 14) ------------------------------------


def join_sandbox(page: object, url: str, unit: str, name: str) -> None:
    page.goto(f"{url}/")  # type: ignore[attr-defined]
    page.fill("input[name=name]", name)  # type: ignore[attr-defined]
    page.select_option("#unit", unit)  # type: ignore[attr-defined]
    page.select_option("#role", "liaison")  # type: ignore[attr-defined]
    page.click("#join button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url("**/chat")  # type: ignore[attr-defined]
    page.wait_for_selector("li.msg.out >> text=绑定成功")  # type: ignore[attr-defined]


def send_with_file(page: object, text: str, file: Path) -> None:
    page.set_input_files("#file", str(file))  # type: ignore[attr-defined]
    page.fill("#text", text)  # type: ignore[attr-defined]
    page.click("#composer button.primary")  # type: ignore[attr-defined]


@pytest.fixture
def desktop(browser, service: ServiceProcess) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A desktop browser window, closed before the service stops (an open event stream would hold it up)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="zh-CN")
    yield context
    context.close()


@pytest.fixture
def phone(browser, service: ServiceProcess) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN", accept_downloads=True
    )
    yield context
    context.close()


@pytest.mark.timeout(180)
def test_acceptance_a_refined_plan_uploaded_opened_returned_resubmitted_and_notified(
    desktop, service: ServiceProcess, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    first = tmp_path / "县1细化方案.pdf"
    first.write_bytes(b"%PDF-1.4 first draft")
    second = tmp_path / "县1细化方案(盖章版).pdf"
    second.write_bytes(b"%PDF-1.4 signed")
    context = desktop
    chat = context.new_page()
    join_sandbox(chat, service.url, "县发改局", "王联络")

    # The liaison uploads the 细化方案; the chat shows the file and survives a reload.
    send_with_file(chat, "报告 1 按计划推进 细化方案已经主要负责人审定", first)
    chat.wait_for_selector("li.msg.out:has-text('已记录')")
    chat.reload()
    sent = chat.wait_for_selector("li.msg.in .file a:has-text('县1细化方案.pdf')")
    assert "KB" in sent.evaluate("a => a.parentElement.textContent") or " B" in sent.evaluate(
        "a => a.parentElement.textContent"
    )
    shot(chat, "acceptance-01-liaison-uploaded")

    # The office opens it from the dashboard …
    office = context.new_page()
    office.goto(f"{service.url}/office")
    office.click("#recent-reports a[href^='/office/report/']")
    office.wait_for_selector("#report")
    assert "细化方案已经主要负责人审定" in office.inner_text("#report")
    with office.expect_download() as waiting:
        office.click("#files a:has-text('县1细化方案.pdf')")
    assert Path(waiting.value.path()).read_bytes() == b"%PDF-1.4 first draft"
    shot(office, "acceptance-02-office-report-page")

    # … and from the XLSX: the 明细 sheet names the file and links to it.
    office.goto(f"{service.url}/office/checkpoint/refined-plan")
    with office.expect_download() as waiting:
        office.click("text=下载通报 XLSX")
    from openpyxl import load_workbook

    workbook = tmp_path / "通报.xlsx"
    waiting.value.save_as(workbook)
    sheet = load_workbook(workbook)["明细"]
    header = [c.value for c in sheet[2]]
    cell = next(r for r in sheet.iter_rows(min_row=3) if r[0].value == "县1" and r[2].value == "县发改局")[
        header.index("附件")
    ]
    assert cell.value == "县1细化方案.pdf" and cell.hyperlink is not None
    with office.expect_download() as waiting:
        office.evaluate(
            "url => { const a = document.createElement('a'); a.href = url; a.click(); }", cell.hyperlink.target
        )
    assert Path(waiting.value.path()).read_bytes() == b"%PDF-1.4 first draft"

    # The office accepts, then returns it: a return after acceptance asks for confirmation.
    office.goto(f"{service.url}/office")
    office.click("#recent-reports a[href^='/office/report/']")
    office.click("#review-form button[value=accepted]")
    office.wait_for_selector(".flash")
    office.fill("#reason", "缺主要负责人签字页,请补充盖章版")
    office.click("#review-form button[value=returned]")
    assert "确认撤销通过并退回" in office.inner_text(".flash")
    shot(office, "acceptance-03-return-asks-confirmation")
    office.fill("#reason", "缺主要负责人签字页,请补充盖章版")
    office.check("#confirm")
    office.click("#review-form button[value=returned]")
    office.wait_for_selector("#review .tag.red")
    shot(office, "acceptance-04-returned")

    # The liaison is told why and resubmits.
    chat.wait_for_selector("li.msg.out:has-text('【退回】')", timeout=30_000)
    send_with_file(chat, "报告 1 按计划推进 已补充盖章版", second)
    chat.wait_for_selector("li.msg.out:has-text('已补充盖章版')")
    shot(chat, "acceptance-05-resubmitted")

    # The 通报 opens in the browser and shows both the return and the files.
    office.goto(f"{service.url}/office/export/refined-plan.html")
    text = office.inner_text("body")
    assert "缺主要负责人签字页" in text and "已重新报送" in text
    assert "县1细化方案.pdf" in text and "县1细化方案(盖章版).pdf" in text
    assert "是否按时以首次报送时间为准" in text
    shot(office, "acceptance-06-notification")


@pytest.mark.timeout(180)
def test_acceptance_on_a_phone_upload_find_and_open_the_report(phone, service: ServiceProcess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "细化方案.pdf"
    plan.write_bytes(b"%PDF-1.4 phone")
    context = phone
    chat = context.new_page()
    join_sandbox(chat, service.url, "县发改局", "李联络")
    send_with_file(chat, "报告 1 按计划推进 细化方案", plan)
    chat.wait_for_selector("li.msg.out:has-text('已记录')")
    chat.wait_for_selector("li.msg.in .file a:has-text('细化方案.pdf')")
    shot(chat, "acceptance-phone-01-uploaded")

    office = context.new_page()
    office.goto(f"{service.url}/office/checkpoint/refined-plan")
    office.fill("#matrix-search", "县1 ")
    office.select_option("#matrix-files", "1")
    visible = office.locator("#matrix tbody tr:not([hidden])")
    assert visible.count() == 1 and "县1" in visible.first.inner_text()
    shot(office, "acceptance-phone-02-round-filtered")
    visible.first.locator("a[href^='/office/report/']").click()
    office.wait_for_selector("#report")
    assert office.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
    shot(office, "acceptance-phone-03-report")


def test_a_liaison_reports_a_targets_figure_in_the_sandbox(browser, service: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{service.url}/")
    page.select_option("#unit", "县科经局")
    page.click("#join button[type=submit]")
    page.wait_for_url("**/chat")
    page.fill("#text", "报告 12 按计划推进 已签约绿色食品企业3家")
    page.click("#composer button.primary")
    page.wait_for_selector("li.msg.out:has-text('绿色食品全产业链规模 已完成 ___ 亿元(目标 165亿元)')")
    page.fill("#text", "80亿元")
    page.click("#composer button.primary")
    page.wait_for_selector("li.msg.out:has-text('已记录目标完成值')")
    assert "80亿元(目标 165亿元" in page.inner_text("li.msg.out:has-text('已记录目标完成值')")
    shot(page, "07-target-figure")
    context.close()
