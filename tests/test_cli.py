"""The duban command line, run in-process with click's runner against a real SQLite file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from core.config import BUNDLED_PLAN, load_settings, notice_units_path
from core.escalation import Escalation, make_calendar
from core.runtime import open_runtime
from jobs.ticks import tick
from messages import Messages
from tests.conftest import local
from tests.databases import SqliteTemplate


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "DUBAN_CONFIG": ""}


@pytest.fixture
def initialised(env: dict[str, str], sqlite_template: SqliteTemplate) -> None:
    """The database as ``duban init`` leaves it: the tests' prepared copy (an import per test cost seconds)."""
    shutil.copyfile(sqlite_template.path, env["DUBAN_DATABASE_URL"].removeprefix("sqlite:///"))


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_init_creates_the_database_and_imports_the_bundled_plan(env: dict[str, str]) -> None:
    result = run(env, "init")
    assert result.exit_code == 0, result.output
    assert "县级任务 76 项,市级任务 33 项" in result.output
    again = run(env, "init")
    assert "数据库已是最新版本" in again.output
    assert "已导入" not in again.output


def test_commands_before_init_say_what_to_do(env: dict[str, str]) -> None:
    result = run(env, "tasks")
    assert result.exit_code == 1
    assert "duban init" in result.output


@pytest.mark.usefixtures("initialised")
def test_tasks_for_a_unit_lists_its_lead_tasks(env: dict[str, str]) -> None:
    rows = json.loads(run(env, "tasks", "--unit", "县发改局", "--json").output)
    leads = [row["label"] for row in rows if row["role"] == "lead"]
    assert leads == ["县1", "县3", "县7", "县10", "县25", "县45", "市3", "市24", "市26"]


@pytest.mark.usefixtures("initialised")
def test_tasks_accepts_an_alias_for_the_unit(env: dict[str, str]) -> None:
    rows = json.loads(run(env, "tasks", "--unit", "县交通运输局", "--annex", "city", "--json").output)
    assert [row["label"] for row in rows if row["role"] == "lead"] == ["市1", "市23"]


@pytest.mark.usefixtures("initialised")
def test_unknown_unit_is_a_clear_error(env: dict[str, str]) -> None:
    result = run(env, "tasks", "--unit", "县不存在局")
    assert result.exit_code == 1
    assert "未知单位: 县不存在局" in result.output


@pytest.mark.parametrize("typed", ["发改局", "发改", "县 发改局"])
@pytest.mark.usefixtures("initialised")
def test_tasks_for_a_unit_named_as_people_type_it(env: dict[str, str], typed: str) -> None:
    rows = json.loads(run(env, "tasks", "--unit", typed, "--json").output)
    assert [row["label"] for row in rows if row["role"] == "lead"][:3] == ["县1", "县3", "县7"]


@pytest.mark.usefixtures("initialised")
def test_a_name_that_fits_several_units_offers_them(env: dict[str, str]) -> None:
    result = run(env, "tasks", "--unit", "县城")
    assert result.exit_code == 1
    assert "可能是以下单位之一" in result.output
    assert "县城发集团" in result.output and "县城投公司" in result.output


@pytest.mark.usefixtures("initialised")
def test_invite_a_town_by_its_short_name(env: dict[str, str]) -> None:
    result = run(env, "invite", "官桥镇", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["unit"] == "官桥镇人民政府"


@pytest.mark.usefixtures("initialised")
def test_tasks_table_is_readable(env: dict[str, str]) -> None:
    result = run(env, "tasks", "--annex", "city")
    assert result.exit_code == 0
    assert "市33" in result.output and "共 33 项" in result.output


@pytest.mark.usefixtures("initialised")
def test_units_lists_every_unit_with_counts(env: dict[str, str]) -> None:
    rows = {row["name"]: row for row in json.loads(run(env, "units", "--json").output)}
    assert rows["县发改局"]["lead"] == 9
    assert rows["县发改局"]["aliases"] == ["县营商办"]
    assert rows["簰洲湾镇人民政府"]["kind"] == "town"
    assert "各镇人民政府" in rows["簰洲湾镇人民政府"]["groups"]


def edited_bundled_notice(tmp_path: Path) -> Path:
    """A copy of the bundled notice with one task's text changed, with the notice's own unit tables beside it."""
    edited = tmp_path / "edited.txt"
    edited.write_text(
        BUNDLED_PLAN.read_text(encoding="utf-8").replace("新增医养床位200张", "新增医养床位300张"), encoding="utf-8"
    )
    notice_units_path(edited).write_bytes(notice_units_path(BUNDLED_PLAN).read_bytes())
    return edited


@pytest.mark.usefixtures("initialised")
def test_import_dry_run_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    edited = edited_bundled_notice(tmp_path)
    preview = json.loads(run(env, "import", str(edited), "--dry-run", "--json").output)
    assert preview["applied"] is False
    assert [c["task"] for c in preview["diff"]["changed_text"]] == ["county-19"]
    second = json.loads(run(env, "import", str(edited), "--dry-run", "--json").output)
    assert second["diff"]["changed_text"], "the dry run must not have applied the change"


@pytest.mark.usefixtures("initialised")
def test_import_of_a_broken_notice_reports_located_errors(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("附件1\n2025年县《政府工作报告》确定的重点工作\n1.没有单位的任务。\n", encoding="utf-8")
    result = run(env, "import", str(broken))
    assert result.exit_code == 1
    assert "第3行" in result.output and "数据库未作任何改动" in result.output


def test_reconcile_groups_and_counts_disagreements(env: dict[str, str]) -> None:
    result = run(env, "reconcile")
    assert result.exit_code == 0
    assert "【牵头/责任角色不一致】1 处" in result.output
    data = json.loads(run(env, "reconcile", "--json").output)
    assert data["counts"]["role_mismatch"] == 1
    assert sum(data["counts"].values()) == len(data["disagreements"])


def test_bad_configuration_exits_with_the_key_named(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[web]\nport = 'eighty'\n", encoding="utf-8")
    result = run(env, "--config", str(config), "units")
    assert result.exit_code == 2
    assert "[web] port" in result.output


def test_python_dash_m_bot_is_the_same_command() -> None:
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["bot", "--help"]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_module("bot", run_name="__main__")
        assert done.value.code == 0
    finally:
        sys.argv = argv


@pytest.mark.usefixtures("initialised")
def test_simulate_prints_the_timeline_and_changes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    before = run(env, "checkpoint", "list", "--json").output
    data = json.loads(run(env, "simulate", "--from", "2024-02-20", "--to", "2024-03-08", "--json").output)
    refined = [n for n in data["notices"] if n["checkpoint"] == "refined-plan"]
    assert [n["rung"] for n in refined if n["units"] == ["县发改局"] and n["role"] == "liaison"] == [
        "-7d",
        "-3d",
        "-1d",
        "+0d",
        "+1d",
    ]
    office = next(n for n in refined if n["role"] == "office")
    assert office["at"].startswith("2024-03-04T09:00") and len(office["units"]) == 28
    assert data["totals"]["reaching_someone"] == 0  # nobody is bound yet
    assert run(env, "checkpoint", "list", "--json").output == before
    again = json.loads(run(env, "simulate", "--from", "2024-02-20", "--to", "2024-03-08", "--json").output)
    assert again["totals"]["notices"] == data["totals"]["notices"], "the first run must not have recorded anything"


@pytest.mark.usefixtures("initialised")
def test_simulate_shows_a_past_window_after_the_service_has_passed_it(env: dict[str, str]) -> None:
    command = ("simulate", "--from", "2024-02-20", "--to", "2024-04-01", "--json")
    fresh = json.loads(run(env, *command).output)
    # The service ticks at its own clock, long after the window: it records those rungs as passed.
    settings = load_settings(environ=env)
    runtime = open_runtime(settings)
    try:
        escalation = Escalation(settings, Messages(settings.service.language, settings.tz), make_calendar(settings))
        report, _ = tick(runtime, escalation, local(2025, 6, 2, 9))
        assert report.skipped and not report.notices
    finally:
        runtime.close()
    after = json.loads(run(env, *command).output)
    assert fresh["totals"]["notices"] > 0
    assert after["notices"] == fresh["notices"]


@pytest.mark.usefixtures("initialised")
def test_simulate_applies_answers_on_the_way(env: dict[str, str], tmp_path: Path) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(
        json.dumps(
            [{"at": "2024-02-23T10:00", "unit": "县发改局", "task": "1", "status": "按计划推进"}], ensure_ascii=False
        ),
        encoding="utf-8",
    )
    data = json.loads(
        run(env, "simulate", "--from", "2024-02-20", "--to", "2024-02-27", "--answers", str(answers), "--json").output
    )
    mine = [n for n in data["notices"] if n["units"] == ["县发改局"]]
    assert "县1" in mine[0]["tasks"] and "县1" not in mine[1]["tasks"]
    assert data["answers"][0]["applied"] is True


@pytest.mark.usefixtures("initialised")
def test_simulate_text_output_has_totals(env: dict[str, str]) -> None:
    output = run(env, "simulate", "--from", "2024-03-17", "--to", "2024-03-19").output
    assert "第一季度进展督办 -7d" in output and "合计" in output and "2024-03-18:" in output


@pytest.mark.usefixtures("initialised")
def test_checkpoint_add_creates_an_adhoc_round(env: dict[str, str]) -> None:
    result = run(
        env, "checkpoint", "add", "flood", "--title", "防汛专项督查", "--due", "2030-07-10", "--tasks", "41,43,44"
    )
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(run(env, "checkpoint", "list", "--json").output)}
    assert rows["flood"]["tasks"] == ["county-41", "county-43", "county-44"] and rows["flood"]["source"] == "adhoc"
    duplicate = run(env, "checkpoint", "add", "flood", "--title", "x", "--due", "2030-07-10")
    assert duplicate.exit_code == 1 and "已被使用" in duplicate.output


@pytest.mark.usefixtures("initialised")
def test_checkpoint_add_refuses_unknown_task_numbers_by_name(env: dict[str, str]) -> None:
    result = run(env, "checkpoint", "add", "flood", "--title", "防汛", "--due", "2030-07-10", "--tasks", "30,999")
    assert result.exit_code == 1 and "县999" in result.output
    assert "flood" not in {row["id"] for row in json.loads(run(env, "checkpoint", "list", "--json").output)}


@pytest.mark.usefixtures("initialised")
def test_checkpoint_keys_may_be_chinese_or_made_up(env: dict[str, str]) -> None:
    assert (
        run(env, "checkpoint", "add", "防汛专项", "--title", "防汛", "--due", "2030-07-10", "--tasks", "41").exit_code
        == 0
    )
    made_up = run(env, "checkpoint", "add", "--title", "安全生产", "--due", "2030-07-11", "--tasks", "43")
    assert made_up.exit_code == 0, made_up.output
    keys = {row["id"] for row in json.loads(run(env, "checkpoint", "list", "--json").output)}
    assert {"防汛专项", "adhoc-20300711"} <= keys


@pytest.mark.usefixtures("initialised")
def test_checkpoint_edit_changes_the_round_and_records_what_changed(env: dict[str, str]) -> None:
    run(env, "checkpoint", "add", "flood", "--title", "防汛", "--due", "2030-07-10", "--tasks", "41")
    result = run(
        env, "checkpoint", "edit", "flood", "--title", "防汛抗旱专项督查", "--due", "2030-07-20", "--tasks", "41,43"
    )
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(run(env, "checkpoint", "list", "--json").output) if r["id"] == "flood"]
    assert (row["title"], row["due"][:10], row["tasks"]) == (
        "防汛抗旱专项督查",
        "2030-07-20",
        ["county-41", "county-43"],
    )
    from sqlalchemy import create_engine, text

    engine = create_engine(env["DUBAN_DATABASE_URL"])
    with engine.connect() as connection:
        actions = [r[0] for r in connection.execute(text("select action from audit_log where subject = 'flood'"))]
    engine.dispose()
    assert actions == ["checkpoint.add", "checkpoint.edit"]
    refused = run(env, "checkpoint", "edit", "flood", "--tasks", "41,999")
    assert refused.exit_code == 1 and "县999" in refused.output


@pytest.mark.usefixtures("initialised")
def test_checkpoint_cancel_takes_the_round_off_the_list(env: dict[str, str]) -> None:
    run(env, "checkpoint", "add", "flood", "--title", "防汛", "--due", "2030-07-10", "--tasks", "41")
    result = run(env, "checkpoint", "cancel", "flood", "--reason", "重复")
    assert result.exit_code == 0, result.output
    assert "flood" not in {row["id"] for row in json.loads(run(env, "checkpoint", "list", "--json").output)}
    again = run(env, "checkpoint", "cancel", "flood")
    assert again.exit_code == 1 and "没有进行中的督查轮次" in again.output


@pytest.mark.usefixtures("initialised")
def test_invite_prints_the_deep_link_and_wecom_instruction(env: dict[str, str]) -> None:
    env = {**env, "DUBAN_TELEGRAM_BOT_USERNAME": "jiayu_duban_bot"}
    data = json.loads(run(env, "invite", "县发改局", "--role", "head", "--json").output)
    assert data["telegram_link"] == f"https://t.me/jiayu_duban_bot?start={data['code']}"
    assert len(data["telegram_link"].split("start=")[1]) <= 64
    assert data["wecom_instruction"] == f"绑定 {data['code']}"
    unknown = run(env, "invite", "县不存在局")
    assert unknown.exit_code == 1


@pytest.mark.parametrize("fmt", ["html", "xlsx", "md"])
@pytest.mark.usefixtures("initialised")
def test_report_writes_the_notification_file(env: dict[str, str], tmp_path: Path, fmt: str) -> None:
    result = run(env, "report", "--checkpoint", "refined-plan", "--format", fmt, "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    [written] = list(tmp_path.glob(f"*.{fmt}"))
    assert written.stat().st_size > 500
    if fmt == "md":
        assert "细化方案报送" in written.read_text(encoding="utf-8")


@pytest.mark.usefixtures("initialised")
def test_report_for_the_year(env: dict[str, str], tmp_path: Path) -> None:
    assert run(env, "report", "--year", "--format", "xlsx", "-o", str(tmp_path / "year.xlsx")).exit_code == 0
    assert (tmp_path / "year.xlsx").exists()


@pytest.mark.usefixtures("initialised")
def test_report_for_a_named_year_is_named_for_that_year(env: dict[str, str], tmp_path: Path) -> None:
    result = run(env, "report", "--year", "2026", "--format", "md", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    [written] = list(tmp_path.glob("*.md"))
    assert written.name.endswith("-2026-全年.md")
    assert written.read_text(encoding="utf-8").startswith("# 2026年度督办情况汇总")


@pytest.mark.usefixtures("initialised")
def test_report_for_an_unknown_round_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    result = run(env, "report", "--checkpoint", "nope", "-o", str(tmp_path))
    assert result.exit_code == 1 and "没有进行中的督查轮次“nope”" in result.output


@pytest.mark.usefixtures("initialised")
def test_tasks_lists_each_tasks_own_deadline(env: dict[str, str], tmp_path: Path) -> None:
    notice = tmp_path / "meixi.txt"
    notice.write_bytes((Path(__file__).resolve().parent / "corpus" / "meixi-county-groups.txt").read_bytes())
    assert run(env, "import", str(notice), "--jurisdiction", "梅溪县", "--yes").exit_code == 0
    env = env | {"DUBAN_PLAN_JURISDICTION": "梅溪县"}
    rows = {row["number"]: row for row in json.loads(run(env, "tasks", "--json").output)}
    assert (rows[4]["deadline"], rows[4]["deadline_text"]) == ("2023-12-31", "2023年底前")
    assert rows[1]["deadline"] is None
    assert "上半年(2023-06-30)" in run(env, "tasks").output


def test_run_with_its_port_taken_says_so_in_one_line(env: dict[str, str]) -> None:
    import socket

    run(env, "init")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["run"], env={**env, "DUBAN_WEB_PORT": str(port)})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and f"{port} 已被占用" in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nosuch"], "没有 nosuch 这个命令"),
        (["checkpoint", "nosuch"], "没有 nosuch 这个命令"),
        (["tasks", "--jsn"], "没有 --jsn 这个选项,是否要用:--json"),
        (["checkpoint", "add"], "缺少选项 --title"),
        (["invite"], "缺少参数 UNIT"),
        (["report", "--checkpoint"], "选项 --checkpoint 后面要写一个值"),
        (["tasks", "--json", "extra"], "多余的参数:extra"),
        (["import", "/nonexistent/plan.docx"], "文件 '/nonexistent/plan.docx' 不存在"),
        (["targets", "set", "县33", "1", "--value", "abc"], "--value 的值不对:'abc' 不是数字"),
    ],
)
def test_a_wrong_command_line_is_explained_in_chinese_with_its_usage(
    env: dict[str, str], args: list[str], says: str
) -> None:
    result = run(env, *args)
    assert result.exit_code == 2
    assert says in result.output
    assert "Error:" not in result.output and "Usage:" not in result.output and "Try '" not in result.output


def test_help_is_still_shown_and_exits_cleanly(env: dict[str, str]) -> None:
    result = run(env, "checkpoint", "--help")
    assert result.exit_code == 0
    assert "add" in result.output
