"""The dashboard's import page over HTTP: upload, each correction, confirm; nothing written before the confirm."""

# ruff: noqa: F811  (the service and client fixtures come from tests.test_web)

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from bot.service import Service
from core.clock import ManualClock
from core.config import BUNDLED_PLAN
from core.plan_staging import STAGING_TTL
from core.runtime import Runtime
from storage.models import Assignment, AuditLog, Jurisdiction, Plan, Task, Unit, UnitAlias
from tests.test_web import WebClient, client, csrf, service  # noqa: F401

NOTICE = """测试县2025年政府工作报告重点工作责任分解方案
附件1
2025年县《政府工作报告》重点工作责任分解
一、经济发展
1.推进国土空间规划编制。(牵头单位:县自然资源和规划局;责任单位:县自然资源局、各乡镇人民政府)
2.稳定就业。(牵头单位:县人社局;责任单位:县财政局)
"""


def token(client: WebClient) -> str:
    return csrf(client, "/office/import")


def upload(client: WebClient, content: str | bytes = NOTICE, name: str = "notice.txt") -> str:
    data = content.encode("utf-8") if isinstance(content, str) else content
    answer = client.post(
        "/office/import",
        data={"csrf": token(client)},
        files={"file": (name, data, "application/octet-stream")},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    stage = re.search(r"s=([\w-]+)", answer.headers["location"])
    assert stage is not None
    return stage.group(1)


def correct(client: WebClient, stage: str, **fields: str) -> str:
    answer = client.post(f"/office/import/{stage}/correct", data={"csrf": token(client), **fields})
    assert answer.status_code == 200, answer.text
    return answer.text


def rows(runtime: Runtime) -> tuple[int, int, int]:
    with runtime.transaction() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0 for model in (Task, Assignment, AuditLog)
        )


def county_task(runtime: Runtime, number: int) -> dict[str, str]:
    with runtime.transaction() as session:
        found = session.execute(
            select(Unit.name, Assignment.role)
            .join(Assignment, Assignment.unit_id == Unit.id)
            .join(Task, Task.id == Assignment.task_id)
            .join(Plan, Plan.id == Task.plan_id)
            .join(Jurisdiction, Jurisdiction.id == Plan.jurisdiction_id)
            .where(Jurisdiction.name == "嘉鱼县", Task.annex == "county", Task.number == number, Assignment.active)
        ).all()
    return dict(found)  # type: ignore[arg-type]


def test_an_upload_shows_the_preview_and_writes_nothing(client: WebClient, runtime: Runtime) -> None:
    before = rows(runtime)
    stage = upload(client)
    page = client.get(f"/office/import?s={stage}").text
    assert "预览:notice.txt" in page and "尚未导入" in page
    assert "县自然资源和规划局 ~ 县自然资源局" in page
    assert 'data-phrase="各乡镇人民政府"' in page and "待定义" in page
    assert "第5行" in page  # the span of task 1 in the original
    assert rows(runtime) == before


def test_a_staged_upload_belongs_to_the_session_that_made_it(client: WebClient, service: Service) -> None:
    stage = upload(client)
    stranger = WebClient(service)
    try:
        answer = stranger.get(f"/office/import?s={stage}", follow_redirects=True)
        assert "已过期或不存在" in answer.text and "预览:" not in answer.text
    finally:
        stranger.close()


def test_merging_two_spellings_applies_before_import(client: WebClient) -> None:
    stage = upload(client)
    page = correct(client, stage, action="merge", spelling="县自然资源局", canonical="县自然资源和规划局")
    assert "已将“县自然资源局”合并为“县自然资源和规划局”" in page
    assert "合并:县自然资源局 → 县自然资源和规划局" in page
    row = re.search(r'<tr data-task="county-1">.*?</tr>', page, re.S)
    assert row is not None and "县自然资源局" not in row.group(0).split('class="responsible">')[1].split("</td>")[0]


def test_defining_a_group_on_the_page_assigns_its_tasks_in_the_preview(client: WebClient) -> None:
    stage = upload(client)
    page = correct(client, stage, action="group", phrase="各乡镇人民政府", members="甲镇人民政府、乙镇人民政府")
    assert "已定义群体“各乡镇人民政府”" in page
    assert re.search(r'data-task="county-1">.*?甲镇人民政府、乙镇人民政府', page, re.S)


def test_replacing_a_tasks_units_applies_before_import(client: WebClient) -> None:
    stage = upload(client)
    page = correct(client, stage, action="task", task="county-2", lead="县人社局", responsible="县教育局、县财政局")
    row = re.search(r'<tr data-task="county-2">.*?</tr>', page, re.S)
    assert row is not None and "县教育局、县财政局" in row.group(0)


def test_a_bad_correction_is_explained_and_changes_nothing(client: WebClient) -> None:
    stage = upload(client)
    page = correct(client, stage, action="task", task="county-2", lead="", responsible="县财政局")
    assert "更正有误" in page and "至少需要一个牵头单位" in page
    assert "本次更正" not in page


def test_confirm_imports_with_the_corrections_and_clears_the_staging(
    client: WebClient, runtime: Runtime, tmp_path: Path
) -> None:
    edited = BUNDLED_PLAN.read_text(encoding="utf-8").replace(
        "(牵头单位:县民政局;责任单位:县卫健局)", "(牵头单位:县民政局;责任单位:县卫健局、县卫生局)"
    )
    stage = upload(client, edited, "edited.txt")
    correct(client, stage, action="merge", spelling="县卫生局", canonical="县卫健局")
    before = rows(runtime)
    answer = client.post(f"/office/import/{stage}/confirm", data={"csrf": token(client)})
    assert "已重新导入 edited.txt:109 项任务" in answer.text
    assert county_task(runtime, 19) == {"县民政局": "lead", "县卫健局": "responsible"}
    with runtime.transaction() as session:
        assert session.scalar(select(UnitAlias.source).where(UnitAlias.alias == "县卫生局")) == "office"
    assert rows(runtime)[2] == before[2] + 1  # one audit entry
    assert not list((tmp_path / "import-staging").iterdir())


def test_a_truncated_upload_needs_allow_shrink(client: WebClient, runtime: Runtime) -> None:
    text = BUNDLED_PLAN.read_text(encoding="utf-8")
    stage = upload(client, text[: text.index("20.")], "truncated.txt")
    assert "允许大量停用" in client.get(f"/office/import?s={stage}").text
    refused = client.post(f"/office/import/{stage}/confirm", data={"csrf": token(client)})
    assert "未导入:将停用 90 项任务" in refused.text
    assert county_task(runtime, 45)
    done = client.post(f"/office/import/{stage}/confirm", data={"csrf": token(client), "allow_shrink": "1"})
    assert "已重新导入" in done.text and county_task(runtime, 45) == {}


def test_a_correction_without_the_csrf_token_is_refused(client: WebClient) -> None:
    stage = upload(client)
    answer = client.post(f"/office/import/{stage}/correct", data={"action": "merge", "spelling": "a", "canonical": "b"})
    assert answer.status_code == 403


def test_a_file_no_reader_can_open_is_refused_and_not_staged(client: WebClient, tmp_path: Path) -> None:
    answer = client.post(
        "/office/import",
        data={"csrf": token(client)},
        files={"file": ("plan.docx", b"PK\x03\x04 not really a zip", "application/octet-stream")},
    )
    assert "plan.docx" in answer.text and "预览:" not in answer.text
    assert not any((tmp_path / "import-staging").glob("*/source"))


def test_a_word_file_is_previewed_like_the_text(client: WebClient) -> None:
    from docx import Document

    document = Document()
    for line in NOTICE.splitlines():
        document.add_paragraph(line)
    saved = io.BytesIO()
    document.save(saved)
    stage = upload(client, saved.getvalue(), "notice.docx")
    page = client.get(f"/office/import?s={stage}").text
    assert "预览:notice.docx" in page and 'data-task="county-2"' in page


def test_the_ledger_downloaded_from_the_dashboard_imports_back_with_no_change(client: WebClient) -> None:
    ledger = client.get("/office/plan.xlsx")
    assert ledger.status_code == 200 and ledger.content.startswith(b"PK")
    assert "attachment" in ledger.headers["content-disposition"]
    stage = upload(client, ledger.content, "ledger.xlsx")
    page = client.get(f"/office/import?s={stage}").text
    assert '<p id="diff">没有变化。</p>' in page


def test_defining_a_group_of_the_current_plan_assigns_its_tasks(client: WebClient, runtime: Runtime) -> None:
    page = client.get("/office/import").text
    assert 'data-phrase="各镇人民政府"' in page
    answer = client.post(
        "/office/groups", data={"csrf": token(client), "phrase": "各镇人民政府", "members": "陆溪镇、官桥镇"}
    )
    assert "已定义“各镇人民政府”:2 个单位" in answer.text
    assert county_task(runtime, 68).get("官桥镇人民政府") == "responsible"
    assert "高铁岭镇人民政府" not in county_task(runtime, 68)


def test_an_upload_never_confirmed_expires_and_housekeeping_deletes_it(
    client: WebClient, runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    from jobs.ticks import expire_bookkeeping

    stage = upload(client)
    clock.advance(STAGING_TTL + timedelta(minutes=1))
    assert expire_bookkeeping(runtime, tmp_path / "exports", clock.now()).import_uploads == 1
    assert not (tmp_path / "import-staging" / stage).exists()
    assert "已过期或不存在" in client.get(f"/office/import?s={stage}", follow_redirects=True).text


def test_clearing_the_corrections_restores_the_parsed_units(client: WebClient) -> None:
    stage = upload(client)
    correct(client, stage, action="merge", spelling="县自然资源局", canonical="县自然资源和规划局")
    page = correct(client, stage, action="reset")
    assert "已清除全部更正" in page and "本次更正" not in page
    assert re.search(r'data-task="county-1">.*?class="responsible">县自然资源局', page, re.S)


def test_discarding_an_upload_deletes_it_and_writes_nothing(
    client: WebClient, runtime: Runtime, tmp_path: Path
) -> None:
    before = rows(runtime)
    stage = upload(client)
    answer = client.post(f"/office/import/{stage}/discard", data={"csrf": token(client)})
    assert "已放弃本次上传" in answer.text
    assert not (tmp_path / "import-staging" / stage).exists()
    assert rows(runtime) == before
