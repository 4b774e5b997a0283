"""``duban import``: the preview first, corrections on the command line, and nothing written without --yes."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from core.config import BUNDLED_PLAN
from tests.databases import SqliteTemplate
from tests.processes import ROOT

NEW_COUNTY = "测试县"
NOTICE = """测试县2025年政府工作报告重点工作责任分解方案
附件1
2025年县《政府工作报告》重点工作责任分解
一、经济发展
1.推进国土空间规划编制。(牵头单位:县自然资源和规划局;责任单位:县自然资源局、各乡镇人民政府)
2.稳定就业,开展职业技能培训。(牵头单位:县人社局;责任单位:县人力资源和社会保障局、县直各有关单位)
3.建设乡镇污水处理设施。(牵头单位:县住建局;责任单位:各乡镇人民政府)
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "DUBAN_CONFIG": ""}


@pytest.fixture
def initialised(env: dict[str, str], sqlite_template: SqliteTemplate) -> None:
    """The database as ``duban init`` leaves it: the tests' prepared copy (an import per test cost seconds)."""
    shutil.copyfile(sqlite_template.path, env["DUBAN_DATABASE_URL"].removeprefix("sqlite:///"))


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def preview_of(env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    result = run(env, "import", *args, "--json")
    return json.loads(result.output)


@pytest.fixture
def notice(tmp_path: Path) -> Path:
    path = tmp_path / "notice.txt"
    path.write_text(NOTICE, encoding="utf-8")
    return path


@pytest.fixture
def edited(tmp_path: Path) -> Path:
    path = tmp_path / "edited.txt"
    path.write_text(
        BUNDLED_PLAN.read_text(encoding="utf-8").replace("新增医养床位200张", "新增医养床位300张"), encoding="utf-8"
    )
    return path


def county_units(env: dict[str, str]) -> dict[str, dict]:  # type: ignore[type-arg]
    return {row["name"]: row for row in json.loads(run(env, "--jurisdiction", NEW_COUNTY, "units", "--json").output)}


@pytest.mark.usefixtures("initialised")
def test_import_without_yes_shows_the_preview_and_writes_nothing(env: dict[str, str], edited: Path) -> None:
    result = run(env, "import", str(edited))
    assert result.exit_code == 0
    assert "预览 edited.txt" in result.output and "任务 county-19 内容变更" in result.output
    assert "数据库未改动" in result.output
    assert preview_of(env, str(edited))["diff"]["changed_text"], "nothing may have been applied"


@pytest.mark.usefixtures("initialised")
def test_import_with_yes_applies_the_previewed_changes(env: dict[str, str], edited: Path) -> None:
    applied = run(env, "import", str(edited), "--yes")
    assert applied.exit_code == 0 and "重新导入" in applied.output
    assert "没有变化" in run(env, "import", str(edited)).output


@pytest.mark.usefixtures("initialised")
def test_import_at_a_terminal_asks_before_writing(env: dict[str, str], edited: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "import", str(edited)],
        env={**os.environ, **env},
        cwd=ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    answered = False
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        assert ready, f"no prompt from duban import: {output.decode(errors='replace')}"
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        output += chunk
        if not answered and "导入以上内容?".encode() in output:
            os.write(controller, b"n\n")
            answered = True
    assert process.wait(30) == 0
    os.close(controller)
    assert answered and "已取消,数据库未改动" in output.decode()
    assert preview_of(env, str(edited))["diff"]["changed_text"]


@pytest.mark.usefixtures("initialised")
def test_json_never_implies_yes(env: dict[str, str], edited: Path) -> None:
    data = preview_of(env, str(edited))
    assert data["applied"] is False and data["refused"] is None
    assert preview_of(env, str(edited))["diff"]["changed_text"] == data["diff"]["changed_text"]
    done = json.loads(run(env, "import", str(edited), "--json", "--yes").output)
    assert done["applied"] is True
    assert preview_of(env, str(edited))["diff"]["changed_text"] == []


@pytest.mark.usefixtures("initialised")
def test_preview_json_schema_is_stable(env: dict[str, str]) -> None:
    data = preview_of(env, str(BUNDLED_PLAN))
    assert set(data) == {
        "schema",
        "source",
        "jurisdiction",
        "title",
        "year",
        "first_import",
        "counts",
        "assignments",
        "sections",
        "tasks",
        "units",
        "similar",
        "aliases",
        "groups",
        "problems",
        "diff",
        "shrink",
        "corrections",
        "applied",
        "refused",
    }
    assert data["schema"] == 1
    assert data["counts"] == {"county": 76, "city": 33} and data["assignments"] == 1341
    assert set(data["tasks"][0]) == {
        "key",
        "label",
        "text",
        "section",
        "line",
        "span",
        "lead",
        "responsible",
        "groups",
        "targets",
    }
    assert data["tasks"][0]["targets"] == ["地区生产总值 6.5%"]
    assert set(data["units"][0]) == {"name", "known", "lead", "responsible"}
    assert set(data["groups"][0]) == {"phrase", "defined", "members", "tasks"}
    assert set(data["problems"][0]) == {"line", "severity", "reason", "text"}
    assert set(data["shrink"]) == {"active_tasks", "removed_tasks", "share", "limit", "too_much"}


@pytest.mark.usefixtures("initialised")
def test_reimport_of_a_truncated_file_is_refused_without_allow_shrink(env: dict[str, str], tmp_path: Path) -> None:
    text = BUNDLED_PLAN.read_text(encoding="utf-8")
    truncated = tmp_path / "truncated.txt"
    truncated.write_text(text[: text.index("20.")], encoding="utf-8")  # county tasks 20.. and annex 2 are gone
    refused = run(env, "import", str(truncated), "--yes")
    assert refused.exit_code == 1
    assert "拒绝导入" in refused.output and "--allow-shrink" in refused.output
    data = json.loads(run(env, "import", str(truncated), "--json", "--yes").output)
    assert data["refused"] == "shrink" and data["applied"] is False
    assert data["shrink"]["removed_tasks"] == 90 and data["shrink"]["too_much"] is True
    tasks = json.loads(run(env, "tasks", "--json").output)
    assert len(tasks) == 109, "nothing may have been deactivated"
    allowed = run(env, "import", str(truncated), "--yes", "--allow-shrink")
    assert allowed.exit_code == 0, allowed.output
    assert len(json.loads(run(env, "tasks", "--json").output)) == 19


@pytest.mark.usefixtures("initialised")
def test_preview_shows_sections_new_units_likely_duplicates_and_groups_to_define(
    env: dict[str, str], notice: Path
) -> None:
    result = run(env, "import", str(notice), "--jurisdiction", NEW_COUNTY)
    assert "县级 · 一、经济发展:3 项" in result.output
    assert "县自然资源和规划局 ~ 县自然资源局(简称" in result.output
    assert "各乡镇人民政府:县1、县3" in result.output
    data = preview_of(env, str(notice), "--jurisdiction", NEW_COUNTY)
    assert all(not unit["known"] for unit in data["units"])
    pairs = {frozenset((p["a"], p["b"])): p["rule"] for p in data["similar"]}
    assert pairs == {
        frozenset(("县自然资源和规划局", "县自然资源局")): "abbreviation",
        frozenset(("县人社局", "县人力资源和社会保障局")): "abbreviation",
    }
    groups = {g["phrase"]: g for g in data["groups"]}
    assert groups["各乡镇人民政府"] == {
        "phrase": "各乡镇人民政府",
        "defined": False,
        "members": [],
        "tasks": ["county-1", "county-3"],
    }
    assert groups["县直各有关单位"]["tasks"] == ["county-2"]
    assert data["tasks"][0]["span"] == [5, 5] and data["year"] == 2025


@pytest.mark.usefixtures("initialised")
def test_preview_lists_lines_not_understood_with_their_number(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("附件1\n2025年县《政府工作报告》确定的重点工作\n1.没有单位的任务。\n", encoding="utf-8")
    result = run(env, "import", str(broken), "--jurisdiction", NEW_COUNTY, "--yes")
    assert result.exit_code == 1
    assert "第3行 [错误]" in result.output and "数据库未作任何改动" in result.output
    data = json.loads(run(env, "import", str(broken), "--jurisdiction", NEW_COUNTY, "--json").output)
    assert data["refused"] == "errors"
    assert [(p["line"], p["severity"]) for p in data["problems"]] == [(2, "unparsed"), (3, "error")]


@pytest.mark.usefixtures("initialised")
def test_merge_and_group_options_correct_the_plan_before_import(env: dict[str, str], notice: Path) -> None:
    args = [
        str(notice),
        "--jurisdiction",
        NEW_COUNTY,
        "--merge",
        "县自然资源局=县自然资源和规划局",
        "--merge",
        "县人力资源和社会保障局=县人社局",
        "--group",
        "各乡镇人民政府=甲镇人民政府,乙镇人民政府",
    ]
    data = preview_of(env, *args)
    first = data["tasks"][0]
    assert first["lead"] == ["县自然资源和规划局"]
    assert first["responsible"] == ["甲镇人民政府", "乙镇人民政府"]
    assert {g["phrase"]: g["defined"] for g in data["groups"]} == {"各乡镇人民政府": True, "县直各有关单位": False}
    assert run(env, "import", *args, "--yes").exit_code == 0
    units = county_units(env)
    assert "县自然资源局" in units["县自然资源和规划局"]["aliases"]
    assert "县人力资源和社会保障局" not in units
    assert units["甲镇人民政府"]["responsible"] == 2
    # The next import of the same file resolves the names the same way without the options.
    assert preview_of(env, str(notice), "--jurisdiction", NEW_COUNTY)["diff"]["removed"] == []


@pytest.mark.usefixtures("initialised")
def test_corrections_file_replaces_a_tasks_units(env: dict[str, str], notice: Path, tmp_path: Path) -> None:
    corrections = tmp_path / "fix.toml"
    corrections.write_text(
        '[merge]\n"县自然资源局" = "县自然资源和规划局"\n\n'
        '[tasks."county-2"]\nlead = ["县人社局"]\nresponsible = ["县教育局", "县财政局"]\n',
        encoding="utf-8",
    )
    data = preview_of(env, str(notice), "--jurisdiction", NEW_COUNTY, "--corrections", str(corrections))
    second = data["tasks"][1]
    assert second["lead"] == ["县人社局"] and second["responsible"] == ["县教育局", "县财政局"]
    assert second["groups"] == []
    assert data["corrections"]["tasks"] == {"county-2": {"lead": ["县人社局"], "responsible": ["县教育局", "县财政局"]}}


@pytest.mark.usefixtures("initialised")
def test_a_bad_correction_is_a_clear_error(env: dict[str, str], notice: Path, tmp_path: Path) -> None:
    result = run(env, "import", str(notice), "--jurisdiction", NEW_COUNTY, "--merge", "县自然资源局")
    assert result.exit_code == 1 and "别名=标准名称" in result.output
    corrections = tmp_path / "fix.toml"
    corrections.write_text('[tasks."county-9"]\nlead = ["县人社局"]\n', encoding="utf-8")
    refused = run(env, "import", str(notice), "--jurisdiction", NEW_COUNTY, "--corrections", str(corrections), "--yes")
    assert refused.exit_code == 1 and "更正指向不存在的任务 county-9" in refused.output


@pytest.mark.usefixtures("initialised")
def test_groups_lists_the_phrases_and_define_assigns_their_tasks(env: dict[str, str], notice: Path) -> None:
    assert run(env, "import", str(notice), "--jurisdiction", NEW_COUNTY, "--yes").exit_code == 0
    listed = run(env, "--jurisdiction", NEW_COUNTY, "groups")
    assert "各乡镇人民政府 [待定义]\n  任务:县1、县3" in listed.output
    done = run(env, "--jurisdiction", NEW_COUNTY, "groups", "define", "各乡镇人民政府", "甲镇、乙镇")
    assert done.exit_code == 0, done.output
    assert "涉及 2 项任务,新增分工 4 条" in done.output
    data = json.loads(run(env, "--jurisdiction", NEW_COUNTY, "groups", "--json").output)
    assert {g["phrase"]: g["defined"] for g in data} == {"各乡镇人民政府": True, "县直各有关单位": False}
    assert county_units(env)["乙镇人民政府"]["responsible"] == 2
