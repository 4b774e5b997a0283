"""The English message set: a counterpart for every Chinese template, the same labels, no Chinese left over."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jinja2 import meta
from sqlalchemy import select

from core.clock import ManualClock
from core.config import Settings
from core.conversation import Conversation
from core.digest import DigestView, UnitBlock
from core.plan_import import short_title
from core.runtime import Runtime
from messages import TEMPLATES, Messages
from storage.models import Checkpoint, StatusReport, Target, Task, Unit
from tests.conftest import local
from tests.support import invite, last_buttons, last_text, outbox, say

ZH = TEMPLATES / "zh"
EN = TEMPLATES / "en"
TZ = ZoneInfo("Asia/Shanghai")

# Han ideographs, CJK punctuation (【】、。「」…), kana, full-width forms.
CJK = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")


def template_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.j2"))


def label_tables(language: str) -> dict[str, dict[str, str]]:
    module = Messages(language, TZ)._labels
    return {name: value for name, value in vars(module).items() if isinstance(value, dict)}


# --- realistic contexts, as the code passes them to render() -------------------------------

T0 = local(2024, 3, 27, 9, 0)
Q1_DUE = local(2024, 3, 25, 18, 0)
PLAN_DUE = local(2024, 2, 29, 18, 0)

TASK = {
    "id": 12,
    "label": "县12",
    "title": "大力发展绿色食品产业",
    "text": "大力发展绿色食品产业,新引进规上企业5家。",
}
LEAD_TASK = {"id": 1, "label": "县1", "title": "地区生产总值增长6.5%", "text": "地区生产总值增长6.5%。"}
CITY_TASK = {"id": 90, "label": "市3", "title": "长江大保护", "text": "长江大保护,推进流域综合治理。"}


def entry(task: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An item of a unit's notice (core.notices.grouped_items / office_actions.overdue_view)."""
    return {
        **task,
        "checkpoint": "第一季度进展督办",
        "checkpoint_key": "2024-q1",
        "due": Q1_DUE,
        "late_days": 2,
        "state": "owed",
        "role": "lead",
        **extra,
    }


ASK_FIGURE = {"metric": "改造城镇老旧小区", "value": "434", "unit": "个"}
FIGURE = ASK_FIGURE | {"reported": "220", "done": 51, "expected": 48, "pace": "正常"}

GROUPS = [
    {"title": "牵头任务", "entries": [entry(LEAD_TASK), entry(CITY_TASK, state="returned", late_days=1)]},
    {"title": "责任任务", "entries": [entry(TASK, late_days=0)]},
]
ONE_GROUP = [{"title": "牵头任务", "entries": [entry(LEAD_TASK)]}, {"title": "责任任务", "entries": []}]

RUNG = {  # core.escalation.Escalation._fire, core.notices.queue_unit_notice
    "platform": "telegram",
    "has_buttons": False,
    "checkpoint": "细化方案报送",
    "due": PLAN_DUE,
    "late": False,
    "nominal": local(2024, 2, 26, 9),
    "after_due": False,
    "late_days": 0,
    "satisfied_by": "status",
    "role": "liaison",
    "now": local(2024, 2, 26, 9),
}
SUMMARIES = [
    {"name": "县发改局", "count": 2, "labels": ["县1", "县12"], "reachable": True},
    {"name": "簰洲湾镇人民政府", "count": 1, "labels": ["市3"], "reachable": False},
]

BLOCK = UnitBlock(
    unit_id=7,
    name="县发改局",
    items=[
        {**LEAD_TASK, "obligation_id": 1, "checkpoint": "细化方案报送", "late_days": 27, "returned": False}
        | {"due": PLAN_DUE},
        {**TASK, "obligation_id": 2, "checkpoint": "第一季度进展督办", "late_days": 1, "returned": True}
        | {"due": Q1_DUE},
    ],
    max_days_late=27,
    rung="office",
    unreachable=[],
    nobody_bound=False,
)
VIEW = DigestView(
    now=T0,
    units=[BLOCK],
    total=2,
    previous_at=local(2024, 3, 26, 8, 30),
    new_items=1,
    resolved_items=3,
    unreachable_people=1,
)

ERROR = {
    "detail": "99",
    "limit": 1000,
    "units": "县发改局、县招商投资中心",
    "allowed": ".pdf、.docx、.xlsx",
    "choices": ["县发改局", "县城发集团"],
}
ERROR_CODES = re.findall(r'code == "(\w+)"', (ZH / "error.j2").read_text(encoding="utf-8"))

CONTEXTS: dict[str, list[dict[str, Any]]] = {
    "accepted.j2": [{"task": TASK, "checkpoint": "第一季度进展督办"}],
    "ask_file.j2": [{"task": LEAD_TASK, "checkpoint": "细化方案报送", "max_mb": 20}],
    "ask_note.j2": [
        {"task": TASK, "status": "按计划推进", "limit": 1000, "need_file": False},
        {"task": LEAD_TASK, "status": "存在风险", "limit": 1000, "need_file": True},
    ],
    "bind_ok.j2": [
        {"unit": "县发改局", "role": "liaison", "role_label": "联络员", "replaced": []},
        {"unit": "县发改局", "role": "head", "role_label": "单位负责人", "replaced": ["县招商投资中心联络员"]},
        {"unit": "县政府政务督查室", "role": "office", "role_label": "督查室", "replaced": []},
        {"unit": "县发改局", "role": "leader", "role_label": "分管领导", "replaced": []},
    ],
    "bind_refused.j2": [{"reason": "该绑定码已过期,请向督查室索取新的绑定码。"}],
    "bind_usage.j2": [{}],
    "cancelled.j2": [{}],
    "checkpoints.j2": [
        {
            "checkpoints": [
                {"key": "refined-plan", "title": "细化方案报送", "due": PLAN_DUE, "satisfied": "报送文件"}
                | {"answered": 20, "total": 109},
                {"key": "2024-q1", "title": "第一季度进展督办", "due": Q1_DUE, "satisfied": "报送进展"}
                | {"answered": 800, "total": 1180},
            ]
        }
    ],
    "confirm.j2": [
        {
            "task": TASK,
            "status": "按计划推进",
            "note": "已对接绿色食品企业5家",
            "files": ["方案.pdf", "签到表.docx"],
            "checkpoint": "第一季度进展督办",
            "due": Q1_DUE,
        },
        {"task": TASK, "status": "已完成", "note": "", "files": [], "checkpoint": None, "due": None},
    ],
    "digest_empty.j2": [{"view": DigestView(now=T0)}],
    "digest_header.j2": [
        {"view": VIEW, "worst": [(BLOCK, "督查室")], "more": 0, "file_name": "逾期清单.xlsx", "link": None},
        {"view": DigestView(now=T0, units=[BLOCK], total=1), "worst": [(BLOCK, None)], "more": 0}
        | {"file_name": None, "link": None},
    ],
    "error.j2": [{"code": code, **ERROR} for code in [*ERROR_CODES, "something_else"]]
    + [{"code": "nothing_to_review", **ERROR, "detail": "县12 县发改局", "limit": "退回"}],
    "escalation_leader.j2": [
        {**RUNG, "units": SUMMARIES},
        {**RUNG, "late": True, "after_due": True, "late_days": 6, "role": "leader", "units": SUMMARIES[:1]},
    ],
    "escalation_office.j2": [
        {**RUNG, "units": SUMMARIES, "total": 3},
        {**RUNG, "late": True, "after_due": True, "late_days": 1, "role": "office", "units": SUMMARIES, "total": 3},
    ],
    "export_ready.j2": [{"file_name": "通报-嘉鱼县-2024-q1.xlsx", "now": T0}],
    "export_usage.j2": [
        {
            "usage": "/export 轮次编号 [xlsx|html|md],或 /export year",
            "keys": ["refined-plan", "2024-q1", "2024-q2"],
            "bad_format": False,
            "formats": ("xlsx", "html", "md"),
        },
        {"usage": "/export ROUND", "keys": ["2024-q1"], "bad_format": True, "formats": ("xlsx", "html", "md")},
    ],
    "inbound_failed.j2": [{"reference": "IN42"}],
    "inbox_delayed.j2": [
        {"reason": "storage", "detail": "进展材料.pdf", "reference": "IN42"},
        {"reason": "platform", "detail": "", "reference": "IN43"},
    ],
    "help.j2": [
        {"units": ["县发改局"], "reporter": True, "office": False},
        {"units": ["县发改局", "县政府政务督查室"], "reporter": True, "office": True},
        {"units": [], "reporter": False, "office": True},
    ],
    "login_code.j2": [{"code": "482913", "minutes": 10}],
    "nothing_to_cancel.j2": [{}],
    "notification_ready.j2": [
        {"checkpoint": "第一季度进展督办", "key": "2024-q1", "due": Q1_DUE, "file_name": "通报-嘉鱼县-2024-q1.xlsx"}
    ],
    "overdue.j2": [
        {"view": VIEW, "scope": "all", "scope_name": "", "shown": [], "hidden": 0}
        | {
            "worst": [(BLOCK, "督查室")],
            "more": 3,
            "file_name": "逾期清单-20240328-0830.xlsx",
            "link": "https://d/office",
        },
        {"view": VIEW, "scope": "unit", "scope_name": "县发改局", "shown": BLOCK.items[:1], "hidden": 1}
        | {"worst": [], "more": 0, "file_name": "逾期清单-县发改局-20240328-0830.xlsx", "link": None},
        {"view": VIEW, "scope": "task", "scope_name": "县12", "shown": [(BLOCK, BLOCK.items[1])], "hidden": 0}
        | {"worst": [], "more": 0, "file_name": None, "link": None},
        {"view": DigestView(now=T0), "scope": "unit", "scope_name": "县发改局", "shown": [], "hidden": 0}
        | {"worst": [], "more": 0, "file_name": None, "link": None},
    ],
    "overdue_file_name.j2": [{"scope": "", "stamp": "20240328-0830"}, {"scope": "县发改局", "stamp": "20240328-0830"}],
    "overdue_worst.j2": [
        {"worst": [(BLOCK, None)], "more": 0, "file_name": None, "link": None},
        {"worst": [(UnitBlock(**{**asdict(BLOCK), "nobody_bound": True}), "分管领导")], "more": 2}
        | {"file_name": "逾期清单-20240328-0830.xlsx", "link": "https://d/office"},
    ],
    "pick_status.j2": [
        {"task": TASK, "checkpoint": "第一季度进展督办", "due": Q1_DUE, "note": ""},
        {"task": TASK, "checkpoint": None, "due": None, "note": "已完成可研"},
    ],
    "pick_task.j2": [
        {"page": 1, "pages": 3, "prompt": ""},
        {"page": 2, "pages": 2, "prompt": "这条提醒包含多项任务,请选择您报送的是哪一项:"},
    ],
    "pick_which.j2": [{}],
    "bind_in_group.j2": [{}],
    "office_group_added.j2": [{"already": False}, {"already": True}],
    "milestones_saved.j2": [
        {
            "task": TASK,
            "milestones": [
                {"due_on": date(2024, 6, 30), "what": "完成可研批复", "supervised": True},
                {"due_on": date(2024, 2, 1), "what": "立项", "supervised": False},
            ],
            "skipped": False,
            "problem": "",
        },
        {"milestones": [], "skipped": True, "problem": ""},
        {"milestones": [], "skipped": False, "problem": "第1条没有日期:完成可研批复"},
    ],
    "figures_recorded.j2": [
        {"figures": [FIGURE], "skipped": False, "problems": [], "ask": []},
        {"figures": [], "skipped": True, "problems": [], "ask": []},
        {"figures": [], "skipped": False, "problems": ["“很多”不是数字"], "ask": [ASK_FIGURE]},
        {"figures": [], "skipped": False, "problems": [], "ask": [ASK_FIGURE]},
    ],
    "recorded_label.j2": [{"status": "按计划推进"}],
    "recorded.j2": [
        {
            "at": T0,
            "task": TASK,
            "unit": "县发改局",
            "status": "按计划推进",
            "note": "已对接绿色食品企业5家",
            "files": ["方案.pdf"],
            "checkpoint": "第一季度进展督办",
            "due": Q1_DUE,
            "on_time": True,
            "report_id": 41,
            "figures": [FIGURE],
            "figure_problems": ["单位“户”与目标单位“个”不一致"],
            "ask_figures": [ASK_FIGURE],
            "ask_milestones": True,
        },
        {
            "at": T0,
            "task": TASK,
            "unit": "县发改局",
            "status": "进度滞后",
            "note": "",
            "files": [],
            "checkpoint": "第一季度进展督办",
            "due": Q1_DUE,
            "on_time": False,
            "report_id": 42,
            "figures": [],
            "figure_problems": [],
            "ask_figures": [],
            "ask_milestones": False,
        },
        {
            "at": T0,
            "task": TASK,
            "unit": "县发改局",
            "status": "已完成",
            "note": "补充名单",
            "files": [],
            "checkpoint": None,
            "due": None,
            "on_time": None,
            "report_id": 43,
            "figures": [],
            "figure_problems": [],
            "ask_figures": [],
            "ask_milestones": False,
        },
    ],
    "reminder.j2": [
        {**RUNG, "unit": "县发改局", "groups": GROUPS, "single": False, "example": "县1"},
        {**RUNG, "unit": "县发改局", "groups": ONE_GROUP, "single": True, "example": "县1", "satisfied_by": "document"},
        {**RUNG, "unit": "县发改局", "groups": GROUPS, "single": False, "example": "县1", "platform": "wecom"},
        {
            **RUNG,
            "unit": "县发改局",
            "groups": GROUPS,
            "single": False,
            "example": "县1",
            "late": True,
            "after_due": True,
            "late_days": 3,
            "role": "head",
        },
        {**RUNG, "unit": "县发改局", "groups": ONE_GROUP, "single": True, "example": "县1", "after_due": True}
        | {"late_days": 1, "satisfied_by": "document"},
    ],
    "how_to_report_telegram.j2": [{"single": True}, {"single": False, "example": "县1"}],
    "how_to_report_sandbox.j2": [{"single": True, "satisfied_by": "document"}],
    "how_to_report_wecom.j2": [
        {"single": True, "has_buttons": True, "satisfied_by": "document"},
        {"single": False, "has_buttons": False, "example": "县1"},
    ],
    "returned.j2": [{"task": TASK, "checkpoint": "第一季度进展督办", "reason": "缺少盖章页,请补充后重报"}],
    "review_done.j2": [
        {"decision": "accepted", "task": TASK, "unit": "县发改局", "checkpoint": "第一季度进展督办"}
        | {"reason": "", "notified": True},
        {"decision": "returned", "task": TASK, "unit": "县发改局", "checkpoint": "第一季度进展督办"}
        | {"reason": "缺少盖章页", "notified": False},
    ],
    "round_added.j2": [
        {"title": "防汛专项督查", "key": "flood", "due": local(2024, 7, 10, 18), "units": 12, "obligations": 30},
        {"title": "防汛专项督查", "key": "flood", "due": local(2024, 7, 10, 18), "units": 1, "obligations": 1},
    ],
    "stranger.j2": [{}],
    "tasks.j2": [
        {
            "unit": "县发改局",
            "now": T0,
            "groups": [
                {
                    "title": "牵头任务",
                    "tasks": [
                        {**LEAD_TASK, "state_label": "待报送", "checkpoint": "细化方案报送", "due": PLAN_DUE}
                        | {"late_days": 27},
                        {**CITY_TASK, "state_label": "—", "checkpoint": None, "due": None, "late_days": 0},
                    ],
                },
                {
                    "title": "责任任务",
                    "tasks": [
                        {**TASK, "state_label": "已报送", "checkpoint": "第一季度进展督办", "due": Q1_DUE}
                        | {"late_days": 0}
                    ],
                },
            ],
            "total": 3,
            "owed": 1,
        },
        {"unit": "县发改局、县招商投资中心", "now": T0, "groups": [], "total": 0, "owed": 0},
        {
            "unit": "簰洲湾镇人民政府",
            "now": T0,
            "groups": [
                {"title": "牵头任务", "tasks": [], "count": 0},
                {
                    "title": "责任任务",
                    "tasks": [{**TASK, "state_label": "待报送", "checkpoint": None, "due": None, "late_days": 0}],
                    "count": 30,
                },
            ],
            "total": 30,
            "owed": 30,
            "page": 2,
            "pages": 3,
        },
    ],
    "typed_menu.j2": [
        {"text": "请选择要报送的任务(第 1/2 页):", "options": ["县1 地区生产总值增长6.5%", "市3 长江大保护"]}
        | {"paged": True},
        {"text": "请选择进展状态:", "options": ["按计划推进", "存在风险"], "paged": False},
    ],
    "unbound.j2": [{"units": ["县发改局联络员"]}, {"units": []}],
    "urge.j2": [
        {"unit": "县发改局", "groups": GROUPS, "single": False, "example": "县1", "platform": "telegram"},
        {"unit": "县发改局", "groups": ONE_GROUP, "single": True, "example": "县1", "platform": "telegram"},
        {
            "unit": "县发改局",
            "groups": ONE_GROUP,
            "single": True,
            "example": "县1",
            "platform": "wecom",
            "has_buttons": True,
        },
    ],
    "urge_done.j2": [
        {"sent": ["县发改局", "县财政局"], "unreachable": ["簰洲湾镇人民政府"], "nothing": ["县教育局"]},
        {"sent": ["县发改局"], "unreachable": [], "nothing": []},
    ],
    "who.j2": [
        {
            "bound": [
                {
                    "name": "县发改局",
                    "people": [
                        {"name": "王芳", "role": "联络员", "role_code": "liaison", "platform": "telegram"}
                        | {"reachable": True, "reason": None},
                        {"name": "李强", "role": "单位负责人", "role_code": "head", "platform": "wecom"}
                        | {"reachable": False, "reason": "invaliduser"},
                    ],
                }
            ],
            "unbound": ["县财政局", "簰洲湾镇人民政府"],
        },
        {"bound": [], "unbound": []},
    ],
    "whoami.j2": [
        {"bindings": [{"unit": "县发改局", "role": "联络员", "since": local(2024, 2, 22, 10)}]},
        {"bindings": []},
    ],
}


def strings_in(value: Any) -> Iterator[str]:
    """Every string a context holds, however deep."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from strings_in(item)


def leftover_cjk(text: str, context: dict[str, Any]) -> list[str]:
    """The CJK characters of ``text`` once every string that came from the context is taken out."""
    for value in sorted({s for s in strings_in(context) if CJK.search(s)}, key=len, reverse=True):
        text = text.replace(value, "")
    return CJK.findall(text)


# --- (a) a counterpart for every template ------------------------------------------------------


def test_every_chinese_template_has_an_english_counterpart() -> None:
    assert template_names(ZH), "no Chinese templates found"
    missing = sorted(set(template_names(ZH)) - set(template_names(EN)))
    assert missing == [], f"messages/en lacks {missing}"
    extra = sorted(set(template_names(EN)) - set(template_names(ZH)))
    assert extra == [], f"messages/en has templates messages/zh lacks: {extra}"


def _tags(source: str) -> list[str]:
    return [" ".join(tag.split()) for tag in re.findall(r"{%-?\s*(.*?)\s*-?%}", source, re.S)]


@pytest.mark.parametrize("name", [n for n in template_names(ZH) if n != "_labels.j2"])
def test_english_template_keeps_the_variables_and_control_flow(name: str) -> None:
    zh = (ZH / name).read_text(encoding="utf-8")
    en = (EN / name).read_text(encoding="utf-8")
    assert _tags(en) == _tags(zh)
    env = Messages("zh", TZ).env  # it knows the filters (local, md, ymd)
    assert meta.find_undeclared_variables(env.parse(en)) == meta.find_undeclared_variables(env.parse(zh))


# --- (b) the same label tables -----------------------------------------------------------------


def test_label_tables_have_the_same_keys() -> None:
    zh, en = label_tables("zh"), label_tables("en")
    assert {"status", "role", "state", "button", "refusal"} <= set(zh)
    assert set(en) == set(zh)
    for group, table in zh.items():
        assert set(en[group]) == set(table), group


def test_english_labels_are_english() -> None:
    for group, table in label_tables("en").items():
        for key, text in table.items():
            assert text.strip() or group == "sep", (group, key)  # separators may be a space
            assert not CJK.search(text), (group, key, text)
    en = Messages("en", TZ)
    assert [en.label("status", s) for s in ("on_track", "at_risk", "behind", "done", "needs_coordination")] == [
        "On track",
        "At risk",
        "Behind",
        "Done",
        "Needs coordination",
    ]
    assert en.label("role", "leader") == "leader in charge"


def test_round_errors_keep_their_placeholder() -> None:
    zh, en = label_tables("zh")["round_error"], label_tables("en")["round_error"]
    for key, text in zh.items():
        assert ("{detail}" in en[key]) == ("{detail}" in text), key


# --- (c) English renders, with no Chinese but what the context brought ---------------------------


def test_every_template_has_contexts() -> None:
    assert sorted(CONTEXTS) == [n for n in template_names(ZH) if n != "_labels.j2"]


def _cases() -> list[Any]:
    return [
        pytest.param(name, context, id=f"{name}-{index}")
        for name, contexts in sorted(CONTEXTS.items())
        for index, context in enumerate(contexts)
    ]


@pytest.mark.parametrize(("name", "context"), _cases())
def test_english_output_has_no_chinese_of_its_own(name: str, context: dict[str, Any]) -> None:
    zh = Messages("zh", TZ).render(name, **context)
    en = Messages("en", TZ).render(name, **context)
    assert zh.strip()
    assert en.strip()
    assert leftover_cjk(en, context) == [], en
    assert "{{" not in en and "{%" not in en


def test_error_covers_every_code_and_the_fallback() -> None:
    assert {"unknown_command", "no_status", "unrecognised"} <= set(ERROR_CODES)
    en = Messages("en", TZ)
    texts = {code: en.render("error", code=code, **ERROR) for code in [*ERROR_CODES, "other"]}
    assert texts["other"] == "99"
    own = [text for code, text in texts.items() if code not in ("checkpoint", "other")]
    assert len(set(own)) == len(own)  # every other branch says something of its own


def test_english_dates_and_separators() -> None:
    en = Messages("en", TZ)
    text = en.render("urge", **CONTEXTS["urge.j2"][0])
    assert "due 25 Mar" in text and "(2 days overdue)" in text
    assert "[县发改局]" in text and "Lead tasks" not in text  # group titles come from the context
    assert en.render("unbound", units=["县发改局联络员", "县财政局单位负责人"]).startswith(
        "Unbound: 县发改局联络员, 县财政局单位负责人."
    )
    one = DigestView(now=T0, units=[BLOCK], total=1)
    assert "1 unit, 1 item" in en.render("digest_header", view=one, worst=[], more=0, file_name=None, link=None)


# --- (d) the conversation answers in English when the settings say so ---------------------------

LIAISON = 2001  # 县发改局: lead on 县1, responsible for 县12


@pytest.fixture
def english(runtime: Runtime, settings: Settings, clock: ManualClock) -> Conversation:
    settings_en = settings.model_copy(update={"service": settings.service.model_copy(update={"language": "en"})})
    assert settings_en.service.language == "en" and settings.service.language == "zh"
    return Conversation(settings_en, runtime.sessions, runtime.clock, Messages("en", settings_en.tz))


def allowed_chinese(runtime: Runtime) -> list[str]:
    """What may stay Chinese in an English reply: unit names, task titles, round titles, targets as written."""
    with runtime.transaction() as session:
        values = list(session.scalars(select(Unit.name)))
        values += [f"{metric}" for metric in session.scalars(select(Target.metric))]
        values += list(session.scalars(select(Target.unit)))
        values += [short_title(text) for text in session.scalars(select(Task.text))]
        values += list(session.scalars(select(Checkpoint.title)))
    return values


def english_only(text: str, runtime: Runtime) -> list[str]:
    return leftover_cjk(text, {"allowed": allowed_chinese(runtime)})


def test_conversation_answers_in_english(runtime: Runtime, english: Conversation) -> None:
    say(english, 4242, "/tasks")
    stranger = last_text(runtime, 4242)
    assert "not bound to a unit" in stranger and "/start CODE" in stranger
    assert english_only(stranger, runtime) == []

    say(english, LIAISON, f"/start {invite(runtime, '县发改局')}")
    bound = last_text(runtime, LIAISON)
    assert bound.startswith("Binding complete: you are now bound to [县发改局] as liaison.")
    assert english_only(bound, runtime) == []

    say(english, LIAISON, "/tasks")
    tasks = last_text(runtime, LIAISON)
    assert tasks.startswith("Tasks of [县发改局] (2024-02-22 10:00, page 1 of 4):")
    lead, responsible = tasks.split("Lead tasks")[1].split("Supporting tasks")
    assert "C1 地区生产总值增长6.5%" in lead and "Awaiting report · 细化方案报送 · due 29 Feb" in lead
    assert "C12 " in responsible and "第一季度进展督办 · due 25 Mar" in responsible
    assert "still to report" in tasks
    assert english_only(tasks, runtime) == []

    say(english, LIAISON, "/report 12 on_track signed two firms")
    recorded = last_text(runtime, LIAISON)
    assert recorded.startswith("[Recorded] (2024-02-22 10:00)")
    assert "Task: C12 " in recorded and "Unit: 县发改局" in recorded
    assert "Status: On track" in recorded and "Note: signed two firms" in recorded
    assert "Counts toward: 第一季度进展督办 — on time" in recorded
    assert english_only(recorded, runtime) == []
    with runtime.transaction() as session:
        [report] = session.scalars(select(StatusReport))
        assert (report.status, report.note, report.on_time) == ("on_track", "signed two firms", True)


def test_english_menus_and_refusals(runtime: Runtime, english: Conversation) -> None:
    say(english, LIAISON, f"/start {invite(runtime, '县发改局')}")
    say(english, LIAISON, "/report 12 met five firms")
    assert last_text(runtime, LIAISON).endswith("Choose the progress status:")
    labels = [b["text"] for b in last_buttons(runtime, LIAISON)]
    assert labels == ["On track", "At risk", "Behind", "Done", "Needs coordination", "Cancel"]
    say(english, LIAISON, "soon")
    error, menu = (row.payload["text"] for row in outbox(runtime, LIAISON)[-2:])
    assert 'Unknown progress status "soon"' in error and "Your note is kept" in menu
    say(english, LIAISON, "/cancel")
    assert last_text(runtime, LIAISON) == "Cancelled; nothing was recorded."

    say(english, LIAISON, "/report 22 done not ours")
    assert "Task C22 is not assigned to 县发改局" in last_text(runtime, LIAISON)
    say(english, LIAISON, "/help")
    help_text = last_text(runtime, LIAISON)
    assert "/report 22 on_track" in help_text and "/overdue" not in help_text
    for row in outbox(runtime, LIAISON):
        assert english_only(row.payload["text"], runtime) == [], row.payload["text"]
