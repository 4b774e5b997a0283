"""Targets in the database: read at import, listed, corrected by the office, kept across re-imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from core.config import BUNDLED_PLAN
from tests.test_targets import EXPECTED


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {"DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "DUBAN_CONFIG": ""}
    assert run(environment, "init").exit_code == 0
    return environment


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def listed(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    result = run(env, "targets", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


def reimport_with(env: dict[str, str], tmp_path: Path, old: str, new: str) -> None:
    edited = tmp_path / "edited.txt"
    edited.write_text(BUNDLED_PLAN.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    result = run(env, "import", str(edited), "--yes")
    assert result.exit_code == 0, result.output


def test_import_stores_the_targets_read_from_each_task(env: dict[str, str]) -> None:
    rows = listed(env, "--task", "市33")
    assert [(r["metric"], r["value"], r["unit"], r["kind"]) for r in rows] == [
        ("改造城镇老旧小区", 434, "个", "amount"),
        ("农村危房改造开工", 399, "户", "amount"),
        ("保障性租赁住房计划开工", 430, "套", "amount"),
        ("公租房租赁补贴发放", 970, "户", "amount"),
    ]
    assert {r["source"] for r in rows} == {"document"}


def test_the_table_counts_tasks_with_targets(env: dict[str, str]) -> None:
    result = run(env, "targets", "list")
    count = sum(len(found) for found in EXPECTED.values())
    assert f"{len(EXPECTED)} 项任务有量化目标,共 {count} 个目标" in result.output


def test_a_corrected_target_survives_a_reimport(env: dict[str, str], tmp_path: Path) -> None:
    (first, *_) = listed(env, "--task", "县28")
    assert run(env, "targets", "set", "县28", str(first["id"]), "--metric", "改造片区").exit_code == 0
    reimport_with(env, tmp_path, "推进27个片区", "推进27个片区 ")
    rows = listed(env, "--task", "县28")
    assert rows[0]["metric"] == "改造片区" and rows[0]["source"] == "office"
    assert [r["metric"] for r in rows].count("推进片区") == 0


def test_a_removed_target_does_not_come_back_on_reimport(env: dict[str, str], tmp_path: Path) -> None:
    (first, *_) = listed(env, "--task", "县28")
    assert run(env, "targets", "remove", "县28", str(first["id"])).exit_code == 0
    reimport_with(env, tmp_path, "新增医养床位200张", "新增医养床位300张")
    assert "推进片区" not in [r["metric"] for r in listed(env, "--task", "县28")]


def test_a_changed_number_in_the_text_replaces_the_read_target(env: dict[str, str], tmp_path: Path) -> None:
    reimport_with(env, tmp_path, "新增医养床位200张", "新增医养床位300张")
    assert [(r["metric"], r["value"]) for r in listed(env, "--task", "县19")] == [("公立医院新增医养床位", 300)]


def test_the_office_adds_a_target_written_in_words(env: dict[str, str]) -> None:
    result = run(
        env, "targets", "add", "县56", "--metric", "实际利用外资", "--value", "100", "--unit", "%", "--kind", "growth"
    )
    assert result.exit_code == 0 and "已保存 县56" in result.output
    assert [(r["metric"], r["kind"], r["source"]) for r in listed(env, "--task", "县56")] == [
        ("实际利用外资", "growth", "office")
    ]


def test_an_unknown_task_or_target_is_refused_and_changes_nothing(env: dict[str, str]) -> None:
    before = listed(env)
    unknown_task = run(env, "targets", "set", "县999", "1", "--value", "3")
    assert unknown_task.exit_code == 1 and "未知任务: 县999" in unknown_task.output
    foreign = run(env, "targets", "set", "县19", str(before[0]["id"]), "--value", "3")
    assert foreign.exit_code == 1 and "没有编号为" in foreign.output
    assert listed(env) == before


def test_the_import_preview_shows_the_targets_it_read(env: dict[str, str]) -> None:
    preview = run(env, "import", str(BUNDLED_PLAN))
    count = sum(len(found) for found in EXPECTED.values())
    assert f"量化目标:{len(EXPECTED)} 项任务共 {count} 个" in preview.output
    assert "县1 地区生产总值 6.5%" in preview.output


def test_tasks_lists_each_tasks_targets(env: dict[str, str]) -> None:
    rows = json.loads(run(env, "tasks", "--json").output)
    by_label = {row["label"]: row["targets"] for row in rows}
    assert by_label["市29"] == ["建设高标准农田 14.33万亩"]
    assert by_label["县7"] == []
