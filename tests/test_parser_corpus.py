"""Notices of the genre from other offices (tests/corpus/*.txt, written for these tests), read with no
configuration at all: every task found, with the document's own lead and responsible units.

Each notice covers layouts the bundled one does not: a bare 附件 or none, tasks numbered （一）…（十七）
or restarting per section, label lines under a task, State Council phrasing, a 责任单位 list alone
(with or without 排在第一位的为牵头单位), lines wrapped by PDF, shortened names, aliases and scope
notes, deadlines in the text or a 完成时限 field, and group phrases kept for the office to define.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from core.config import BUNDLED_PLAN, Settings
from core.plan_parser import Annex, ParsedPlan, ParsedTask, Role, parse_plan
from core.units import UnitDirectory

CORPUS = Path(__file__).resolve().parent / "corpus"


def read(name: str) -> ParsedPlan:
    return parse_plan((CORPUS / name).read_text(encoding="utf-8"), UnitDirectory())


def task(plan: ParsedPlan, number: int) -> ParsedTask:
    found = plan.task(Annex.COUNTY, number)
    assert found is not None, f"no task {number}"
    return found


def groups(found: ParsedTask) -> list[str]:
    return [phrase for _, phrase in found.groups]


# name -> (tasks, assignments to named units, year, issued on)
COUNTS = {
    "qingxi-district-2025.txt": (8, 29, 2025, "2025-03-05"),
    "hanjiang-province-2025.txt": (9, 20, 2025, "2025-02-20"),
    "lanshan-city-2024.txt": (17, 49, 2024, "2024-01-30"),
    "songping-county-first-leads.txt": (8, 25, 2024, "2024-03-12"),
    "heping-district-restart.txt": (10, 24, 2025, "2025-04-02"),
    "city-education-bureau.txt": (10, 24, 2025, "2025-02-14"),
    "baishui-district-wrapped.txt": (9, 32, 2024, "2024-02-26"),
    "meixi-county-groups.txt": (11, 24, 2023, "2023-02-10"),
}


@pytest.mark.parametrize("name", COUNTS)
def test_every_task_of_the_notice_is_found_without_errors(name: str) -> None:
    plan = read(name)
    tasks, assignments, year, issued_on = COUNTS[name]
    assert plan.errors == []
    assert len(plan.tasks) == tasks
    assert sum(len(t.units()) for t in plan.tasks) == assignments
    assert (plan.year, plan.issued_on) == (year, issued_on)
    assert plan.title.endswith(("通知", "意见", "清单"))


@pytest.mark.parametrize("name", COUNTS)
def test_no_configuration_of_another_county_applies(name: str, settings: Settings) -> None:
    assert [(t.lead, t.responsible, t.groups) for t in read(name).tasks] == [
        (t.lead, t.responsible, t.groups)
        for t in parse_plan((CORPUS / name).read_text(encoding="utf-8"), settings.unit_directory()).tasks
    ]


def test_label_lines_under_a_task_give_its_units_and_deadline() -> None:
    plan = read("qingxi-district-2025.txt")
    first = task(plan, 1)
    assert (first.lead, first.responsible) == (["区发改局"], ["区财政局", "区统计局", "区税务局"])
    assert groups(first) == ["各镇人民政府", "各街道办事处"]
    assert (first.deadline, first.deadline_text) == (date(2025, 12, 31), "2025年12月底前")
    assert task(plan, 2).deadline == date(2025, 11, 30)


def test_a_name_without_its_prefix_takes_the_prefix_of_its_list() -> None:
    plan = read("qingxi-district-2025.txt")
    tourism = task(plan, 3)  # 配合单位：区旅游文体局、经发局、商务局 — the lead listed again
    assert (tourism.lead, tourism.responsible) == (["区旅游文体局"], ["区经发局", "区商务局"])
    assert any("经发局" in w.reason and w.line == 23 for w in plan.warnings)


def test_prose_after_the_list_is_listed_not_an_error() -> None:
    plan = read("qingxi-district-2025.txt")
    assert [(p.line, p.reason) for p in plan.unparsed] == [(45, "正文段落,不是任务")]


def test_state_council_phrasing_without_labels() -> None:
    plan = read("hanjiang-province-2025.txt")
    assert (task(plan, 1).lead, task(plan, 1).responsible) == (["省商务厅"], ["省发展改革委", "省财政厅", "省统计局"])
    assert (task(plan, 2).lead, task(plan, 2).responsible) == (["省发展改革委"], [])  # X牵头负责
    assert (task(plan, 5).lead, groups(task(plan, 5))) == (["省科技厅", "省工业和信息化厅"], ["省直有关部门"])
    assert (task(plan, 8).lead, task(plan, 8).responsible) == ([], ["省医保局", "省财政厅"])  # Y、Z按职责分工负责


def test_notice_with_no_annex_heading_reads_its_body_and_skips_its_prose_sections() -> None:
    plan = read("hanjiang-province-2025.txt")
    assert [t.label for t in plan.tasks] == [f"{n}." for n in range(1, 10)]
    assert task(plan, 4).section == "二、重点任务"
    assert task(plan, 4).subsection == "(二)坚持创新驱动,加快发展新质生产力。"
    assert task(plan, 4).responsible == ["省教育厅", "省工业和信息化厅", "省财政厅"]  # 工业和信息化厅、财政厅等
    assert plan.unparsed == []


def test_deadline_phrases_in_the_task_text() -> None:
    plan = read("hanjiang-province-2025.txt")
    assert (task(plan, 3).deadline, task(plan, 3).deadline_text) == (date(2025, 12, 31), "2025年底前")
    assert (task(plan, 6).deadline, task(plan, 6).deadline_text) == (date(2025, 6, 30), "6月底前")
    assert (task(plan, 9).deadline, task(plan, 9).deadline_text) == (date(2027, 12, 31), "到2027年")
    assert task(plan, 1).deadline is None and task(plan, 1).deadline_text == ""


def test_tasks_numbered_with_chinese_numerals_in_brackets() -> None:
    plan = read("lanshan-city-2024.txt")
    assert [t.number for t in plan.tasks] == list(range(1, 18))
    assert plan.tasks[-1].label == "（十七）"
    assert task(plan, 6).section == "二、聚力城市提质"
    assert (task(plan, 17).lead, task(plan, 17).aliases) == (
        ["市政务服务和数据管理局"],
        {"市政务服务和数据管理局": "市营商环境建设局"},
    )
    assert groups(task(plan, 2)) == ["各县(市、区)人民政府"]
    assert groups(task(plan, 15)) == ["市安委会各成员单位"]


def test_a_form_annex_without_units_is_listed_once() -> None:
    plan = read("lanshan-city-2024.txt")
    assert [(p.line, p.reason) for p in plan.unparsed] == [(34, "附件中没有找到带单位说明的任务")]
    assert plan.matrix == []


def test_first_listed_unit_leads_when_the_notice_says_so() -> None:
    plan = read("songping-county-first-leads.txt")
    assert plan.first_listed_leads
    assert (task(plan, 2).lead, task(plan, 2).responsible) == (["县交通运输局"], ["县财政局"])
    assert groups(task(plan, 2)) == ["各乡镇人民政府"]
    assert task(plan, 7).responsible == ["县农业农村局", "县总工会", "团县委", "县妇联"]


def test_responsible_list_alone_is_owed_by_every_listed_unit_with_no_lead() -> None:
    plan = read("heping-district-restart.txt")
    assert not plan.first_listed_leads
    assert all(t.lead == [] for t in plan.tasks)
    assert task(plan, 1).responsible == ["区政务服务中心", "区市场监管局", "区人社局"]


def test_numbering_that_restarts_per_section_keeps_labels_and_gets_unique_keys() -> None:
    plan = read("heping-district-restart.txt")
    assert [t.number for t in plan.tasks] == list(range(1, 11))
    assert [t.label for t in plan.tasks] == ["1.", "2.", "3.", "1.", "2.", "3.", "1.", "2.", "3.", "4."]
    assert any("重新开始" in w.reason for w in plan.warnings)


def test_sub_items_belong_to_their_task_and_may_carry_its_units() -> None:
    plan = read("heping-district-restart.txt")
    inspection = task(plan, 5)
    assert inspection.label == "2." and inspection.span == (9, 12)
    assert "(1)制定年度涉企检查计划" in inspection.text and "(2)建立检查结果互认机制" in inspection.text
    assert inspection.responsible == ["区司法局", "区市场监管局", "区应急局", "区生态环境分局"]
    assert (inspection.deadline, inspection.deadline_text) == (date(2025, 6, 30), "6月底前")


def test_a_department_assigns_its_own_offices() -> None:
    plan = read("city-education-bureau.txt")
    assert (task(plan, 1).lead, task(plan, 1).responsible) == (["机关党委"], ["组织人事科", "办公室"])
    assert groups(task(plan, 8)) == ["各县(市、区)教育局"]
    assert groups(task(plan, 10)) == ["局机关各科室"]
    assert task(plan, 3).deadline == date(2025, 8, 31)


def test_lines_broken_by_pdf_are_joined_back() -> None:
    plan = read("baishui-district-wrapped.txt")
    first = task(plan, 1)  # （牵头 / 单位：区交通运输局…
    assert (first.lead, first.responsible, groups(first)) == (
        ["区交通运输局"],
        ["区发改局", "区自然资源局", "区港航中心"],
        ["各片区管理局"],
    )
    assert first.span == (11, 13)
    hospital = task(plan, 7)
    assert hospital.text == "新建区人民医院门诊综合楼,2024年12月底前主体封顶。"
    assert hospital.lead == ["区卫健局"]
    jobs = task(plan, 9)  # label lines, the last one wrapped inside 各片区 / 管理局
    assert groups(jobs) == ["各镇人民政府", "各片区管理局"]


def test_bracketed_second_name_is_an_alias_and_a_scope_note_is_kept() -> None:
    plan = read("baishui-district-wrapped.txt")
    cold_chain = task(plan, 2)
    assert cold_chain.lead == ["区农业农村中心"]
    assert cold_chain.aliases == {"区农业农村中心": "区供销社"}
    assert cold_chain.responsible == ["区经发局", "区自然资源局", "区住建局"]  # trailing 等 dropped
    assert cold_chain.notes == {"区经发局": "负责招商引资"}
    assert task(plan, 5).notes == {"区市场监管局": "负责知识产权部分"}


def test_group_phrases_are_kept_as_groups_to_define() -> None:
    plan = read("meixi-county-groups.txt")
    assert groups(task(plan, 1)) == ["各乡镇人民政府(街道办事处)", "县直各单位"]
    assert task(plan, 1).responsible == ["县统计局"]
    assert groups(task(plan, 7)) == ["相关乡镇人民政府"]
    assert groups(task(plan, 11)) == ["县属各国有企业"]
    assert all(role is Role.RESPONSIBLE for t in plan.tasks for role, _ in t.groups)


def test_units_separated_by_a_space_are_separate_units() -> None:
    assert task(read("meixi-county-groups.txt"), 6).responsible == ["县发改局", "县财政局"]


def test_deadline_field_in_the_bracket() -> None:
    plan = read("meixi-county-groups.txt")
    assert (task(plan, 4).deadline, task(plan, 4).deadline_text) == (date(2023, 12, 31), "2023年底前")
    assert (task(plan, 5).deadline, task(plan, 5).deadline_text) == (date(2023, 12, 31), "2023年12月")
    assert (task(plan, 9).deadline, task(plan, 9).deadline_text) == (date(2023, 9, 1), "2023年9月1日")
    assert (task(plan, 8).deadline, task(plan, 8).deadline_text) == (date(2023, 6, 30), "上半年")


def wrap(text: str, width: int) -> str:
    """The bundled notice as a PDF's text layer gives it: lines cut at a fixed width and before each label."""
    lines = []
    for line in text.splitlines():
        if "|" in line:
            lines.append(line)
            continue
        for piece in re.split(r"(?=责任单位:)|(?=\(牵头单位:)", line):
            while len(piece) > width:
                lines.append(piece[:width])
                piece = piece[width:]
            lines.append(piece)
    return "\n".join(lines)


@pytest.mark.parametrize("width", [17, 24, 33, 41, 58])
def test_bundled_notice_wrapped_like_a_pdf_gives_the_same_plan(
    bundled_text: str, settings: Settings, width: int
) -> None:
    directory = settings.unit_directory(BUNDLED_PLAN)
    wrapped = parse_plan(wrap(bundled_text, width), directory)
    text = parse_plan(bundled_text, directory)
    assert wrapped.errors == []
    assert len(wrapped.tasks) == 109
    assert sum(len(t.units()) for t in wrapped.tasks) == 1341
    assert [(t.key, t.text, t.lead, t.responsible) for t in wrapped.tasks] == [
        (t.key, t.text, t.lead, t.responsible) for t in text.tasks
    ]


def test_phrases_inside_a_label_and_together_with_are_read() -> None:
    text = (
        "附件1\n2025年区重点工作\n"
        "1.建设产业园。(责任单位:区经发局牵头,区财政局、区自然资源局配合)\n"
        "2.推进改革。(区发改局会同区财政局负责)\n"
    )
    plan = parse_plan(text, UnitDirectory())
    assert [(t.lead, t.responsible) for t in plan.tasks] == [
        (["区经发局"], ["区财政局", "区自然资源局"]),
        (["区发改局"], ["区财政局"]),
    ]
