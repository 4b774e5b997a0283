"""The importer over the bundled notice, checked against expectations written by hand from the document."""

from __future__ import annotations

import pytest

from core.config import BUNDLED_PLAN, Settings
from core.plan_parser import Annex, ParsedPlan, Role, parse_plan
from core.units import UnitDirectory

TOWNS = [
    "陆溪镇人民政府",
    "高铁岭镇人民政府",
    "官桥镇人民政府",
    "鱼岳镇人民政府",
    "新街镇人民政府",
    "潘家湾镇人民政府",
    "渡普镇人民政府",
    "簰洲湾镇人民政府",
]

# Lead unit of every task, read off the notice by hand.
COUNTY_LEADS = {
    1: "县发改局", 2: "县科经局", 3: "县发改局", 4: "县财政局", 5: "县科经局", 6: "县科经局",
    7: "县发改局", 8: "县农业农村局", 9: "县人社局", 10: "县发改局", 11: "县自然资源规划局",
    12: "县农业农村局", 13: "县文旅局", 14: "嘉鱼开发区管委会", 15: "嘉鱼开发区管委会",
    16: "嘉鱼开发区管委会", 17: "县自然资源规划局", 18: "县农业农村局", 19: "县民政局", 20: "县文旅局",
    21: "县科经局", 22: "县招商投资中心", 23: "县重点项目办", 24: "县科经局", 25: "县发改局",
    26: "县金融办", 27: "县科经局", 28: "县住建局", 29: "县住建局", 30: "县城管执法局", 31: "县交通局",
    32: "县农业农村局", 33: "县农业农村局", 34: "县交通局", 35: "县文旅局", 36: "市生态环境局嘉鱼分局",
    37: "市生态环境局嘉鱼分局", 38: "县农业农村局", 39: "县农业农村局", 40: "市生态环境局嘉鱼分局",
    41: "县水利湖泊局", 42: "县自然资源规划局", 43: "县水利湖泊局", 44: "县水利湖泊局", 45: "县发改局",
    46: "县林业局", 47: "县科经局", 48: "县科经局", 49: "县科经局", 50: "县国资中心", 51: "县财政局",
    52: "县金融办", 53: "县交通局", 54: "县教育局", 55: "县交通局", 56: "县科经局", 57: "县人社局",
    58: "县人社局", 59: "县人社局", 60: "县教育局", 61: "县卫健局", 62: "县民政局", 63: "县民政局",
    64: "县卫健局", 65: "县医保局", 66: "县民政局", 67: "县自然资源规划局", 68: "县市场监管局",
    69: "县检测中心", 70: "县应急局", 71: "县政府办公室", 72: "县政府办公室", 73: "县司法局",
    74: "县政府办公室", 75: "县财政局", 76: "县政府办公室",
}  # fmt: skip
CITY_LEADS = {
    1: "县交通局", 2: "县供电公司", 3: "县发改局", 4: "县重点项目办", 5: "县科经局", 6: "县科经局",
    7: "县卫健局", 8: "县农业农村局", 9: "县科经局", 10: "县科经局", 11: "县市场监管局",
    12: "县水利湖泊局", 13: "市生态环境局嘉鱼分局", 14: "县水利湖泊局", 15: "县水利湖泊局",
    16: "县水利湖泊局", 17: "县水利湖泊局", 18: "市生态环境局嘉鱼分局", 19: "县科经局",
    20: "市生态环境局嘉鱼分局", 21: "县科经局", 22: "县人社局", 23: "县交通局", 24: "县发改局",
    25: "县城管执法局", 26: "县发改局", 27: "县民政局", 28: "县自然资源规划局", 29: "县农业农村局",
    30: "县农业农村局", 31: "县农业农村局", 32: "县人社局", 33: "县住建局",
}  # fmt: skip

# Responsible units of a dozen tasks, in document order, group phrases expanded.
RESPONSIBLE = {
    (Annex.COUNTY, 1): ["县统计局", "县科经局", "县住建局", "县交通局", "县农业农村局", "县文旅局", "县人行", "县邮政局", *TOWNS, "嘉鱼开发区管委会"],
    (Annex.COUNTY, 11): ["县住建局", "官桥镇人民政府", "鱼岳镇人民政府", "新街镇人民政府"],
    (Annex.COUNTY, 19): ["县卫健局"],
    (Annex.COUNTY, 20): ["县自然资源规划局", "县住建局", "县水利湖泊局", "县融媒体中心", "陆溪镇人民政府", "官桥镇人民政府", "鱼岳镇人民政府"],
    (Annex.COUNTY, 25): ["县财政局", "县自然资源规划局", "县市场监管局", "县人社局", "县政务数据局", "县税务局", "县住建局", "县法院", "县科经局", "县供电公司", "县金融办", *TOWNS, "嘉鱼开发区管委会"],
    (Annex.COUNTY, 31): ["县发改局", "县自然资源规划局", "县林业局", "县水利湖泊局", "高铁岭镇人民政府", "官桥镇人民政府", "新街镇人民政府"],
    (Annex.COUNTY, 44): ["县发改局", "县自然资源规划局", "陆溪镇人民政府", "高铁岭镇人民政府", "鱼岳镇人民政府", "新街镇人民政府", "潘家湾镇人民政府", "簰洲湾镇人民政府"],
    (Annex.COUNTY, 57): ["县卫健局", "县民政局", *TOWNS],
    (Annex.COUNTY, 68): TOWNS,
    (Annex.CITY, 9): ["县电信公司", "县移动公司", "县联通公司", "县楚天视讯公司", "县铁塔公司", *TOWNS],
    (Annex.CITY, 18): ["县发改局", "县科经局", "县住建局", "县城管执法局", "县交通局", "县林业局", "县自然资源规划局", "县水利湖泊局", "县农业农村局", *TOWNS, "嘉鱼开发区管委会"],
    (Annex.CITY, 19): ["市生态环境局嘉鱼分局", "县市场监管局", *TOWNS, "嘉鱼开发区管委会"],
    (Annex.CITY, 32): ["县住建局", "县公安局", "县法院", "县检察院", "县交通局", "县水利湖泊局", "县农业农村局", "县自然资源规划局", "县教育局", "县卫健局", "县城管执法局", "县市场监管局", "县城投公司", "县城发集团", "县文旅发展集团", "县交建集团", *TOWNS, "嘉鱼开发区管委会"],
}  # fmt: skip


@pytest.fixture
def parsed(bundled_text: str, settings: Settings) -> ParsedPlan:
    return parse_plan(bundled_text, settings.unit_directory(BUNDLED_PLAN))


def test_bundled_notice_has_76_county_and_33_city_tasks(parsed: ParsedPlan) -> None:
    assert [t.number for t in parsed.tasks_in(Annex.COUNTY)] == list(range(1, 77))
    assert [t.number for t in parsed.tasks_in(Annex.CITY)] == list(range(1, 34))


def test_bundled_notice_parses_without_errors(parsed: ParsedPlan) -> None:
    assert parsed.errors == []


def test_every_lead_unit_matches_the_document(parsed: ParsedPlan) -> None:
    assert {t.number: t.lead for t in parsed.tasks_in(Annex.COUNTY)} == {n: [u] for n, u in COUNTY_LEADS.items()}
    assert {t.number: t.lead for t in parsed.tasks_in(Annex.CITY)} == {n: [u] for n, u in CITY_LEADS.items()}


@pytest.mark.parametrize(("key", "expected"), RESPONSIBLE.items(), ids=[f"{a.value}-{n}" for a, n in RESPONSIBLE])
def test_responsible_units_match_the_document(parsed: ParsedPlan, key: tuple[Annex, int], expected: list[str]) -> None:
    task = parsed.task(*key)
    assert task is not None
    assert task.responsible == expected


def test_notice_metadata_is_read_from_the_header(parsed: ParsedPlan) -> None:
    assert parsed.year == 2024
    assert parsed.issued_on == "2024-02-22"
    assert parsed.title.startswith("县人民政府办公室关于印发2024年")


def test_sections_and_subsections_are_attached_to_tasks(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 14)
    assert task is not None
    assert task.section == "二、2024年7个方面重点工作"
    assert task.subsection == "(一)推动产业优化升级,积蓄更加强劲的发展动力。"
    assert parsed.task(Annex.COUNTY, 71).section == "三、加强政府自身建设"  # type: ignore[union-attr]


def test_town_list_with_one_suffix_expands_to_three_towns(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 11)
    assert task is not None
    assert task.responsible[-3:] == ["官桥镇人民政府", "鱼岳镇人民政府", "新街镇人民政府"]


def test_all_towns_phrase_expands_to_the_eight_towns(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 5)
    assert task is not None
    assert task.responsible == TOWNS
    assert all(task.via_group[town] == "各镇人民政府" for town in TOWNS)


def test_bracketed_alias_is_read_as_the_unit_with_its_alias(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 25)
    assert task is not None
    assert task.lead == ["县发改局"]
    assert task.aliases == {"县发改局": "县营商办"}


def test_missing_closing_bracket_is_repaired_with_a_warning(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 31)
    assert task is not None
    assert task.text == "完成G351朱砂至罗家洲公路建设,加快推动桃舒线、通港公路、疏港公路前期工作。"
    assert any(p.line == 54 and "右括号" in p.reason for p in parsed.warnings)


def test_doubled_lead_label_is_merged(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 68)
    assert task is not None
    assert task.lead == ["县市场监管局"]
    assert any(p.line == 95 and "重复" in p.reason for p in parsed.warnings)


def test_comma_between_labels_is_read_as_a_semicolon(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 57)
    assert task is not None
    assert task.lead == ["县人社局"]
    assert any(p.line == 82 and "逗号" in p.reason for p in parsed.warnings)


def test_unit_listed_twice_is_kept_once(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.CITY, 18)
    assert task is not None
    assert task.responsible.count("县交通局") == 1
    assert any(p.line == 124 and "县交通局" in p.reason for p in parsed.warnings)


def test_alias_in_configuration_maps_a_spelling_to_its_unit(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.CITY, 32)
    assert task is not None
    assert "县水利湖泊局" in task.responsible
    assert "县水利局" not in task.responsible


def test_lead_unit_is_not_also_responsible_through_a_group(parsed: ParsedPlan) -> None:
    task = parsed.task(Annex.COUNTY, 73)  # 县司法局 leads; 县政府各部门 includes it
    assert task is not None
    assert task.lead == ["县司法局"]
    assert "县司法局" not in task.responsible
    assert "县委宣传部" in task.responsible


def test_task_specific_group_meaning_applies_only_to_that_task(parsed: ParsedPlan) -> None:
    narrow = parsed.task(Annex.COUNTY, 36)
    broad = parsed.task(Annex.COUNTY, 75)
    assert narrow is not None and broad is not None
    assert narrow.responsible[:4] == ["县发改局", "县住建局", "县农业农村局", "县城管执法局"]
    assert len(broad.responsible) > 20


def test_matrix_rows_are_read_with_names_unbroken(parsed: ParsedPlan) -> None:
    names = [row.unit for row in parsed.matrix]
    assert len(names) == 67
    assert "县退役军人事务局" in names
    assert "县公共资源交易中心" in names
    assert "县交通局" in names  # written 县交通运输局
    veterans = next(r for r in parsed.matrix if r.unit == "县退役军人事务局")
    assert veterans.cells == [[65, 71, 72, 74, 75, 76]]


def full_width(text: str) -> str:
    return text.translate(str.maketrans({"(": "（", ")": "）", ":": "：", ";": "；", ",": "，"}))


def test_full_width_punctuation_parses_the_same(bundled_text: str, parsed: ParsedPlan, settings: Settings) -> None:
    variant = full_width(bundled_text)
    assert "（牵头单位：" in variant
    other = parse_plan(variant, settings.unit_directory(BUNDLED_PLAN))
    assert other.errors == []
    assert [(t.key, t.text, t.lead, t.responsible) for t in other.tasks] == [
        (t.key, t.text, t.lead, t.responsible) for t in parsed.tasks
    ]


def test_cooperating_unit_label_reads_as_responsible(bundled_text: str, parsed: ParsedPlan, settings: Settings) -> None:
    variant = full_width(bundled_text.replace("责任单位", "配合单位"))
    other = parse_plan(variant, settings.unit_directory(BUNDLED_PLAN))
    assert other.errors == []
    assert [(t.key, t.lead, t.responsible) for t in other.tasks] == [
        (t.key, t.lead, t.responsible) for t in parsed.tasks
    ]


def test_group_phrase_without_definition_is_kept_as_a_group_to_define(bundled_text: str) -> None:
    bare = parse_plan(bundled_text, UnitDirectory())
    assert bare.errors == []
    task = bare.task(Annex.COUNTY, 71)
    assert task is not None
    assert (Role.RESPONSIBLE, "县政府各部门") in task.groups
    assert (Role.RESPONSIBLE, "县政府各部门") in task.unresolved_groups
    assert "县审计局" not in task.responsible


NOTICE_WITH_ERRORS = """关于印发2025年重点工作责任分解方案的通知
附件1
2025年县《政府工作报告》确定的重点工作责任分解方案
一、主要目标
1.地区生产总值增长6%。(牵头单位:县发改局;责任单位:县统计局)
2.这一条没有写单位。
这一行什么也不是
3.第三条。(责任单位:县统计局)
"""


def test_items_without_units_are_listed_with_their_line_numbers_not_errors() -> None:
    result = parse_plan(NOTICE_WITH_ERRORS, UnitDirectory())
    assert result.errors == []
    assert [p.line for p in result.unparsed] == [6]  # task 2 has no units (its text ran on into line 7)
    assert "这一行什么也不是" in result.unparsed[0].excerpt
    assert [t.number for t in result.tasks] == [1, 3]


def test_responsible_list_alone_is_owed_by_every_listed_unit() -> None:
    result = parse_plan(NOTICE_WITH_ERRORS, UnitDirectory())
    task = result.task(Annex.COUNTY, 3)
    assert task is not None
    assert (task.lead, task.responsible) == ([], ["县统计局"])


def test_task_text_may_continue_on_the_next_line() -> None:
    text = "附件1\n2025年县《政府工作报告》确定的重点工作\n1.第一句,\n第二句。(牵头单位:县发改局)\n"
    result = parse_plan(text, UnitDirectory())
    assert result.errors == []
    assert result.tasks[0].text == "第一句,第二句。"


def test_units_on_their_own_line_are_attached_to_the_task() -> None:
    text = "附件1\n2025年县《政府工作报告》确定的重点工作\n1.做好一件事。\n牵头单位：县发改局；配合单位：县统计局、各镇人民政府\n"
    result = parse_plan(text, UnitDirectory(groups={"各镇人民政府": ["甲镇", "乙镇"]}))
    assert result.errors == []
    assert result.tasks[0].lead == ["县发改局"]
    assert result.tasks[0].responsible == ["县统计局", "甲镇人民政府", "乙镇人民政府"]


def test_document_without_tasks_is_an_error() -> None:
    result = parse_plan("只是一段话。\n", UnitDirectory())
    assert result.errors and result.tasks == []


def test_table_rows_fed_in_order_become_tasks_with_the_same_unit_rules() -> None:
    from core.plan_parser import PlanReader
    from core.plan_tables import TaskRow

    reader = PlanReader(UnitDirectory())
    reader.feed_lines(["某区人民政府办公室关于印发2025年重点工作任务分解的通知"])
    reader.feed_task_row(
        TaskRow("1", "建成产业园一期。", "", "区经发局", "区财政局 区自然资源局", "", "", "", "", 3, "表1 第2行")
    )
    plan = reader.finish()
    assert plan.errors == []
    assert [(t.number, t.lead, t.responsible) for t in plan.tasks] == [(1, ["区经发局"], ["区财政局", "区自然资源局"])]
