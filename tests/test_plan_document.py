"""Plans read from Word, PDF and Excel files give the same tasks and units as their text."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import BUNDLED_PLAN, Settings
from core.plan_document import parse_document
from core.plan_parser import Annex, ParsedPlan, parse_plan
from core.plan_sources import SourceRefused, read_source
from core.reconcile import Reconciliation, reconcile
from core.units import UnitDirectory
from tests.plan_files import DISTRICT_PREAMBLE, bundled_docx, district_docx, workbook_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIMIT = 20 * 1024 * 1024


def plan_of(data: bytes, name: str, directory: UnitDirectory) -> ParsedPlan:
    return parse_document(read_source(data, name, max_bytes=LIMIT), directory)


def summary(plan: ParsedPlan) -> dict[tuple[Annex, int], tuple[object, ...]]:
    return {t.key: (t.text, t.section, t.subsection, t.lead, t.responsible, t.via_group, t.aliases) for t in plan.tasks}


def without_lines(rec: Reconciliation) -> set[tuple[object, ...]]:
    return {(d.kind, d.unit, d.annex, d.task, d.detail) for d in rec.disagreements}


@pytest.fixture
def directory(settings: Settings) -> UnitDirectory:
    return settings.unit_directory(BUNDLED_PLAN)  # the bundled notice's own unit tables


@pytest.fixture
def text_plan(bundled_text: str, directory: UnitDirectory) -> ParsedPlan:
    return parse_plan(bundled_text, directory)


@pytest.fixture
def text_rec(text_plan: ParsedPlan, directory: UnitDirectory) -> Reconciliation:
    return reconcile(text_plan, directory)


@pytest.mark.parametrize("task_tables", [False, True], ids=["annexes-as-text", "annexes-as-tables"])
def test_bundled_notice_as_word_gives_the_same_plan_as_its_text(
    bundled_text: str,
    text_plan: ParsedPlan,
    text_rec: Reconciliation,
    directory: UnitDirectory,
    task_tables: bool,
) -> None:
    data = bundled_docx(bundled_text, text_plan, text_rec, task_tables=task_tables)
    plan = plan_of(data, "嘉鱼.docx", directory)
    assert plan.errors == []
    assert len(plan.tasks) == 109
    assert sum(len(t.units()) for t in plan.tasks) == 1341
    assert summary(plan) == summary(text_plan)
    assert (plan.title, plan.year, plan.issued_on) == (text_plan.title, text_plan.year, text_plan.issued_on)


def test_bundled_matrix_as_a_word_table_needs_no_guessing(
    bundled_text: str, text_plan: ParsedPlan, text_rec: Reconciliation, directory: UnitDirectory
) -> None:
    plan = plan_of(bundled_docx(bundled_text, text_plan, text_rec), "嘉鱼.docx", directory)
    rec = reconcile(plan, directory)
    assert len(rec.placed) == len(text_rec.placed)
    assert not any(p.guessed for p in rec.placed)
    # 县委组织部's numbers sit in the city-responsible column of the table itself.
    row = next(p.row for p in rec.placed if p.row.unit == "县委组织部")
    assert row.labels is not None and row.labels[3] == "市《政府工作报告》责任分解序号/责任事项"
    assert row.cells == [[], [], [], [22, 26]]
    assert without_lines(rec) == without_lines(text_rec)


def test_district_notice_with_a_task_table_in_word(directory: UnitDirectory) -> None:
    plan = plan_of(district_docx(), "江城区.docx", UnitDirectory())
    assert plan.errors == []
    assert plan.title == DISTRICT_PREAMBLE[0]
    assert [(t.number, t.section, t.lead, t.responsible) for t in plan.tasks] == [
        (1, "一、推动经济高质量发展", ["区经发局"], ["区统计局", "区财政局"]),
        (2, "一、推动经济高质量发展", ["区商务局"], ["区市场监管局"]),
        (3, "二、保障和改善民生", ["区民政局"], ["区卫健局", "区住建局"]),
        (4, "二、保障和改善民生", ["区人社局"], []),
    ]
    assert [t.unresolved_groups for t in plan.tasks if t.unresolved_groups] == [
        [("responsible", "各街道办事处")],
        [("responsible", "各街道办事处")],
    ]


def test_district_notice_as_pdf_gives_the_same_tasks_as_the_word_file() -> None:
    pdf = plan_of((FIXTURES / "district-notice.pdf").read_bytes(), "江城区.pdf", UnitDirectory())
    word = plan_of(district_docx(), "江城区.docx", UnitDirectory())
    assert pdf.errors == []
    assert summary(pdf) == summary(word)


def test_ledger_header_below_a_title_row_is_found(directory: UnitDirectory) -> None:
    data = workbook_bytes(
        [
            (
                "Sheet1",
                [
                    ["江城区2025年重点工作任务台账"],
                    [],
                    ["序号", "工作任务", "具体措施", "牵头单位", "协办单位", "时间节点", "分管领导", "备注"],
                    [
                        1,
                        "城镇新增就业3000人",
                        "开展招聘活动",
                        "区人社局",
                        "区财政局 区税务局",
                        "2025年12月底前",
                        "张三",
                        "",
                    ],
                    [2, "新建5G基站100个", "", "区经发局", "区通信公司、区铁塔公司", "2025年9月底前", "李四", ""],
                ],
            )
        ]
    )
    plan = plan_of(data, "台账.xlsx", UnitDirectory())
    assert plan.errors == []
    assert plan.title == "江城区2025年重点工作任务台账"
    assert [(t.number, t.text, t.lead, t.responsible) for t in plan.tasks] == [
        (1, "城镇新增就业3000人", ["区人社局"], ["区财政局", "区税务局"]),
        (2, "新建5G基站100个", ["区经发局"], ["区通信公司", "区铁塔公司"]),
    ]


def test_spreadsheet_with_no_recognisable_header_is_refused() -> None:
    data = workbook_bytes([("数据", [["a", "b", "c"], [1, 2, 3]])])
    with pytest.raises(SourceRefused) as refused:
        plan_of(data, "台账.xlsx", UnitDirectory())
    assert "台账.xlsx" in refused.value.message and "数据" in refused.value.message
    assert "表头" in refused.value.message


def test_ledger_with_a_header_and_no_tasks_is_an_error() -> None:
    data = workbook_bytes([("台账", [["序号", "任务", "牵头单位", "责任单位"]])])
    plan = plan_of(data, "台账.xlsx", UnitDirectory())
    assert [p.reason for p in plan.errors] == ["文档中没有找到编号任务"]


def test_unrecognised_table_is_read_as_text_lines() -> None:
    import docx

    from tests.plan_files import add_table, docx_bytes

    document = docx.Document()
    document.add_paragraph("附件1")
    document.add_paragraph("重点任务")
    add_table(document, [["1.城镇新增就业3000人。(牵头单位:区人社局)"]])
    plan = plan_of(docx_bytes(document), "a.docx", UnitDirectory())
    assert [(t.number, t.lead) for t in plan.tasks] == [(1, ["区人社局"])]


def test_pdf_task_broken_by_a_page_break_and_its_page_number_reads_as_one() -> None:
    plan = plan_of((FIXTURES / "long-notice.pdf").read_bytes(), "江城区.pdf", UnitDirectory())
    assert plan.errors == []
    assert [t.number for t in plan.tasks] == list(range(1, 41))
    # Task 31 starts at the foot of page 2 and ends on page 3, under the "— 2 —" footer.
    task = plan.tasks[30]
    assert task.text == "推进第31项重点工作,完善工作机制,细化工作措施,明确时间节点,确保按期完成年度目标任务。"
    assert (task.lead, task.responsible) == (["区经发局"], ["区财政局", "区统计局"])


def test_workbook_with_a_task_sheet_per_list_reads_one_annex_per_sheet() -> None:
    header = ["序号", "任务", "牵头单位", "责任单位"]
    data = workbook_bytes(
        [
            (
                "县级任务",
                [header, [1, "城镇新增就业3000人。", "县人社局", "县财政局"], [2, "新建基站100个。", "县科经局", ""]],
            ),
            ("市级任务", [header, [1, "建设高标准农田1万亩。", "县农业农村局", "县自然资源局"]]),
        ]
    )
    plan = plan_of(data, "台账.xlsx", UnitDirectory())
    assert plan.errors == []
    assert [(t.annex, t.number, t.lead) for t in plan.tasks] == [
        (Annex.COUNTY, 1, ["县人社局"]),
        (Annex.COUNTY, 2, ["县科经局"]),
        (Annex.CITY, 1, ["县农业农村局"]),
    ]
