"""The 通报's 目标完成情况: a seeded year on the bundled plan, read back from the XLSX and the HTML."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from core.config import Settings
from core.documents import render_html, write_xlsx
from core.notification import Notification, build_notification
from core.runtime import Runtime, current_plan
from messages import Messages
from tests.conftest import local
from tests.support import report_figures

Q2_NOW = local(2024, 6, 27, 9)


def report(session: Session, settings: Settings, ref: str, figures: dict[str, float], at: datetime, note: str) -> None:
    """The task's lead unit reports for the round due next, with a figure for each named metric."""
    round_key = "2024-q1" if at < local(2024, 3, 25, 18) else "2024-q2"
    report_figures(session, settings, ref, figures, at, note=note, checkpoint_key=round_key)


@pytest.fixture
def q2(runtime: Runtime, settings: Settings) -> Notification:
    """A seeded half year: four tasks' leads report figures in Q1 and Q2; the rest say nothing."""
    with runtime.transaction() as session:
        q1 = local(2024, 3, 20, 9)
        report(session, settings, "市29", {"建设高标准农田": 3}, q1, "完成高标准农田3万亩")
        report(session, settings, "市33", {"改造城镇老旧小区": 100}, q1, "按计划推进")
        q2_at = local(2024, 6, 20, 9)
        report(session, settings, "市29", {"建设高标准农田": 7.5}, q2_at, "完成高标准农田7.5万亩")
        report(
            session,
            settings,
            "市33",
            {
                "改造城镇老旧小区": 300,
                "农村危房改造开工": 100,
                "保障性租赁住房计划开工": 215,
                "公租房租赁补贴发放": 600,
            },
            q2_at,
            "按计划推进",
        )
        report(session, settings, "县9", {"城镇新增就业": 2000}, q2_at, "新增就业2000人")
        report(session, settings, "县37", {"空气优良率": 88}, q2_at, "优良率88%")
        plan = current_plan(session, settings)
        assert plan is not None
        return build_notification(session, settings, plan, "2024-q2", Q2_NOW)


def reported(notification: Notification) -> dict[tuple[str, str], float | None]:
    return {(t.task_label, t.metric): t.done for t in notification.targets if t.reported is not None}


def test_the_q2_notification_names_exactly_the_targets_below_half(q2: Notification) -> None:
    assert q2.mid_year
    named = {(t.task_label, t.metric) for t in q2.below_half}
    assert ("市33", "农村危房改造开工") in named  # 100 of 399
    assert ("县9", "城镇新增就业") in named  # 2000 of 5300
    assert ("市29", "建设高标准农田") not in named  # 7.5 of 14.33
    assert ("市33", "保障性租赁住房计划开工") not in named  # exactly half
    assert ("县37", "空气优良率") not in named  # a level held, not an amount
    unreported = {(t.task_label, t.metric) for t in q2.targets if t.reported is None and t.kind in ("amount", "growth")}
    reported_short = {
        (t.task_label, t.metric)
        for t in q2.targets
        if t.reported is not None and t.kind in ("amount", "growth") and (t.done or 0) < 0.5
    }
    assert named == unreported | reported_short


def test_change_since_the_last_round_is_shown(q2: Notification) -> None:
    farmland = next(t for t in q2.targets if t.metric == "建设高标准农田")
    assert (farmland.reported, farmland.previous, farmland.change) == (7.5, 3, 4.5)


def test_two_lights_a_unit_on_time_but_behind_is_not_green_on_pace(q2: Notification) -> None:
    county9 = next(t for t in q2.tasks if t.label == "县9")  # answered on time: 2000 of 5300, 48% of the year gone
    assert (county9.light, county9.pace_light) == ("green", "yellow")
    hr = next(u for u in q2.units if u.unit == "县人社局")  # and its other lead tasks have no figure at all
    assert hr.pace_light == "red"
    farmland = next(t for t in q2.tasks if t.label == "市29")
    assert farmland.pace_light == "green"


def test_a_note_without_figures_is_flagged_vague_and_a_repeat_is_flagged_copied(q2: Notification) -> None:
    item = next(i for i in q2.items if i.task_label == "市33" and i.role == "lead")
    assert item.flags == ("vague", "copied")
    farmland = next(i for i in q2.items if i.task_label == "市29" and i.role == "lead")
    assert farmland.flags == ()


def test_the_targets_sheet_reads_back(q2: Notification, tmp_path: Path) -> None:
    path = tmp_path / "q2.xlsx"
    write_xlsx(q2, path, Messages("zh", q2.generated_at.tzinfo))  # type: ignore[arg-type]
    sheet = load_workbook(path)["目标完成情况"]
    top = next(row for row in sheet.iter_rows(min_row=1, max_row=3) if row[0].value == "编号")  # under the title row
    header = [c.value for c in top]
    body = sheet.iter_rows(min_row=top[0].row + 1, values_only=True)
    rows = {(r[0], r[header.index("指标")]): r for r in body}
    farmland = rows[("市29", "建设高标准农田")]
    assert farmland[header.index("目标值")] == 14.33 and farmland[header.index("报送值")] == 7.5
    assert farmland[header.index("完成比例")] == pytest.approx(7.5 / 14.33)
    assert farmland[header.index("较上轮变化")] == 4.5
    assert rows[("市33", "农村危房改造开工")][header.index("时间过半未过半")] == "是"
    assert len(rows) == len(q2.targets)


def test_the_targets_section_reads_back_from_html(q2: Notification) -> None:
    html = render_html(q2, Messages("zh", q2.generated_at.tzinfo))  # type: ignore[arg-type]
    assert "六、目标完成情况" in html
    half = re.search(r'<p id="time-half">(.*?)</p>', html, re.S)
    assert half is not None
    assert "市33农村危房改造开工(县住建局,完成25.1%)" in half.group(1)
    assert "市29建设高标准农田" not in half.group(1)
    assert html.count('class="bullet"') == len(q2.targets)
