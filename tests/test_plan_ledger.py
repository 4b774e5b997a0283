"""The task ledger (任务台账) round trip: plan -> .xlsx -> import gives the same plan; an edited ledger shows its diff."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import select

from bot.cli import main
from core.plan_document import read_plan_bytes
from core.plan_import import ImportResult, import_parsed
from core.plan_ledger import LEDGER_HEADER, ledger_workbook
from core.runtime import Runtime, current_plan
from storage.models import Assignment, Jurisdiction, Plan, Task, TaskGroup, Unit
from tests.plan_files import district_docx

pytestmark = pytest.mark.both_databases

Snapshot = tuple[dict[tuple[str, int], tuple[str, str, str, bool]], set[tuple[str, int, str, str, str | None, bool]]]


def snapshot(runtime: Runtime) -> Snapshot:
    """Every task and every assignment of the plan, as stored."""
    with runtime.transaction() as session:
        tasks = {
            (t.annex, t.number): (t.text, t.section, t.subsection, t.active) for t in session.scalars(select(Task))
        }
        assignments = {
            tuple(row)
            for row in session.execute(
                select(Task.annex, Task.number, Unit.name, Assignment.role, Assignment.via_group, Assignment.active)
                .join(Task, Task.id == Assignment.task_id)
                .join(Unit, Unit.id == Assignment.unit_id)
            )
        }
    return tasks, assignments


def export(runtime: Runtime) -> bytes:
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None
        return ledger_workbook(session, plan)


def import_ledger(runtime: Runtime, data: bytes, *, dry_run: bool = False) -> ImportResult:
    plan_file = read_plan_bytes(data, "任务台账.xlsx", runtime.settings)
    with runtime.transaction() as session:
        return import_parsed(
            session,
            runtime.settings,
            plan_file.parse,
            source_name=plan_file.name,
            source_sha256=plan_file.sha256,
            jurisdiction_name=runtime.settings.plan.jurisdiction,
            now=runtime.clock.now(),
            dry_run=dry_run,
        )


def test_ledger_has_one_sheet_per_annex_with_the_standard_header(runtime: Runtime) -> None:
    book = load_workbook(io.BytesIO(export(runtime)))
    assert book.sheetnames == ["说明", "附件1", "附件2"]
    assert [c.value for c in book["附件1"][3]] == list(LEDGER_HEADER)
    assert book["附件1"].max_row == 3 + 76 and book["附件2"].max_row == 3 + 33
    first = [c.value for c in book["附件1"][4]]
    assert first[:4] == [1, "地区生产总值增长6.5%。", "县发改局", first[3]]
    # A group phrase is written as the phrase, not as its eight towns.
    assert "各镇人民政府" in first[3] and "陆溪镇人民政府" not in first[3]
    assert first[5] == "一、2024年经济社会发展主要预期目标"


def test_bundled_plan_through_the_ledger_imports_back_identical(runtime: Runtime) -> None:
    before = snapshot(runtime)
    preview = import_ledger(runtime, export(runtime), dry_run=True)
    assert preview.parsed.errors == []
    assert len(preview.parsed.tasks) == 109
    assert sum(len(t.units()) for t in preview.parsed.tasks) == 1341
    assert preview.diff.empty
    result = import_ledger(runtime, export(runtime))
    assert not result.first_import and result.parsed.year == 2024
    tasks, assignments = snapshot(runtime)
    assert tasks == before[0]
    assert {a[:4] + a[5:] for a in assignments} == {a[:4] + a[5:] for a in before[1]}
    # Only a phrase's task-specific meaning (县直各相关单位 in 县 36: four units, not the group's 28)
    # is written as its units by name, so only their provenance changes.
    assert {a[:4] for a in assignments - before[1]} == {
        ("county", 36, unit, "responsible") for unit in ("县发改局", "县住建局", "县农业农村局", "县城管执法局")
    }
    with runtime.transaction() as session:
        plan = session.scalar(select(Plan))
        assert plan is not None and plan.issued_on == "2024-02-22" and plan.source_name == "任务台账.xlsx"


def test_edited_ledger_reimport_shows_the_diff(runtime: Runtime) -> None:
    book = load_workbook(io.BytesIO(export(runtime)))
    sheet = book["附件1"]
    row = next(r for r in sheet.iter_rows(min_row=4) if r[0].value == 19)
    assert row[3].value == "县卫健局"
    row[3].value = "县卫健局、县财政局"
    row[1].value = str(row[1].value).replace("200张", "300张")
    buffer = io.BytesIO()
    book.save(buffer)
    preview = import_ledger(runtime, buffer.getvalue(), dry_run=True)
    assert [(c.task, c.unit, c.role) for c in preview.diff.added] == [("county-19", "县财政局", "responsible")]
    assert [label for label, _, _ in preview.diff.changed_text] == ["county-19"]


def test_plan_export_command_writes_a_ledger_that_imports_with_no_change(tmp_path: Path) -> None:
    env = {"DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "DUBAN_CONFIG": ""}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    target = tmp_path / "台账.xlsx"
    exported = runner.invoke(main, ["plan", "export", "--format", "xlsx", "-o", str(target)], env=env)
    assert exported.exit_code == 0 and target.exists()
    preview = json.loads(runner.invoke(main, ["import", str(target), "--json"], env=env).output)
    assert preview["counts"] == {"county": 76, "city": 33}
    assert not any(preview["diff"][key] for key in preview["diff"])


def test_a_new_countys_plan_keeps_its_undefined_group_phrases_through_the_ledger(runtime: Runtime) -> None:
    def import_file(data: bytes, name: str, *, dry_run: bool = False) -> ImportResult:
        plan_file = read_plan_bytes(data, name, runtime.settings)
        with runtime.transaction() as session:
            return import_parsed(
                session,
                runtime.settings,
                plan_file.parse,
                source_name=name,
                source_sha256=plan_file.sha256,
                jurisdiction_name="江城区",
                now=runtime.clock.now(),
                dry_run=dry_run,
            )

    import_file(district_docx(), "江城区.docx")
    with runtime.transaction() as session:
        plan = session.scalar(select(Plan).join(Plan.jurisdiction).where(Jurisdiction.name == "江城区"))
        assert plan is not None
        data = ledger_workbook(session, plan)
        phrases = set(session.scalars(select(TaskGroup.phrase).join(Task).where(Task.plan_id == plan.id)))
    assert phrases == {"各街道办事处"}
    rows = {c[0].value: c[3].value for c in load_workbook(io.BytesIO(data))["附件1"].iter_rows(min_row=4)}
    assert rows[2] == "区市场监管局、各街道办事处" and rows[4] == "各街道办事处"
    deadlines = {c[0].value: c[4].value for c in load_workbook(io.BytesIO(data))["附件1"].iter_rows(min_row=4)}
    assert deadlines[3] == "2025年9月底前"  # the task's deadline in the document's words
    again = import_file(data, "任务台账.xlsx", dry_run=True)
    assert again.parsed.errors == [] and again.diff.empty
