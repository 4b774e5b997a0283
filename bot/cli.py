"""The ``duban`` command line: set up the database, import and inspect the plan, run the service.

Every listing has ``--json`` for scripts and a readable table otherwise.  The
runtime (settings, engine, clock) is built once in :func:`main` and handed to
each command through click's context.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bot.cli_errors import ChineseErrorsGroup
from core.binding import invite as invite_unit
from core.binding import telegram_link
from core.checkpoints import (
    CheckpointError,
    add_adhoc_checkpoint,
    cancel_checkpoint,
    edit_checkpoint,
    live_checkpoints,
    parse_task_scope,
)
from core.config import ConfigError, Ladder, PersonRole, Rung, Settings, load_settings
from core.conversation import parse_local_datetime
from core.durations import parse_offset
from core.milestones import MilestoneRefused, add_milestones, change_milestone, parse_milestones, task_milestones
from core.plan_corrections import (
    CorrectionError,
    Corrections,
    load_corrections,
    parse_group,
    parse_merge,
)
from core.plan_document import read_plan_file
from core.plan_import import ImportDiff, define_group, import_parsed, plan_groups, short_title
from core.plan_ledger import ledger_file_name, ledger_workbook
from core.plan_parser import Annex, ParsedPlan, split_unit_list
from core.plan_preview import ImportPreview, build_preview
from core.plan_sources import SourceRefused
from core.reconcile import KIND_TITLES, Reconciliation, reconcile
from core.runtime import Runtime, current_plan, initialise, open_runtime
from core.simulation import Timeline, load_answers, run_simulation
from core.targets import KIND_LABELS, TargetKind, format_number
from core.task_targets import TargetRefused, set_target, targets_by_task
from core.tasks import parse_task_ref, task_label
from messages import Messages
from storage.db import current_revision, head_revision
from storage.models import Assignment, Binding, Milestone, Obligation, Plan, Task, Unit, UnitGroupMember
from storage.queries import checkpoint_state_counts, find_task, match_units

ROLE_ZH = {"lead": "牵头", "responsible": "责任"}
ROLE_NAMES = {"liaison": "联络员", "head": "单位负责人", "office": "督查室", "leader": "分管领导"}


class CliState:
    """What the commands share: the settings now, the runtime when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = open_runtime(self.settings)
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _plan_or_fail(session: Any, settings: Settings) -> Plan:
    """The configured county's current plan; a clear message and exit when none was imported yet."""
    plan = current_plan(session, settings)
    if plan is None:
        fail("还没有导入方案: duban import PATH")
    return plan


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def console() -> Console:
    return Console(soft_wrap=False, width=max(100, Console().width))


@contextmanager
def _database_ready(state: CliState) -> Iterator[Runtime]:
    runtime = state.runtime
    if current_revision(runtime.engine) != head_revision():
        fail("数据库尚未初始化或需要升级,请先运行: duban init")
    yield runtime


@click.group(cls=ChineseErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default: $DUBAN_CONFIG or the project's config.toml).",
)
@click.option(
    "--jurisdiction",
    default=None,
    help="Whose plan the command is about, where one service holds several (default: [plan] jurisdiction).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, jurisdiction: str | None) -> None:
    """duban (督办): supervise a year's responsibility plan over chat."""
    # python-telegram-bot 22: read time periods (retry_after …) as timedelta, the
    # behaviour it will default to, instead of warning on every 429.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        fail(f"配置错误 / configuration error:\n{exc}", 2)
    if jurisdiction:
        settings = settings.model_copy(update={"plan": settings.plan.model_copy(update={"jurisdiction": jurisdiction})})
    state = CliState(settings)
    ctx.obj = state
    ctx.call_on_close(state.close)


# --- init / import -------------------------------------------------------------


@main.command()
@click.option("--no-import", is_flag=True, help="Only create or upgrade the schema.")
@click.pass_obj
def init(state: CliState, no_import: bool) -> None:
    """Create or upgrade the database; import the configured plan into an empty one."""
    runtime = state.runtime
    before = current_revision(runtime.engine)
    result = initialise(runtime, import_plan_if_empty=not no_import)
    after = current_revision(runtime.engine)
    if before == after:
        click.echo(f"数据库已是最新版本 ({after})")
    else:
        click.echo(f"数据库已升级: {before or '空'} → {after}")
    if result is not None:
        click.echo(f"已导入 {state.settings.plan_path.name}:")
        _print_import_summary(result.parsed)


def _print_import_summary(parsed: ParsedPlan) -> None:
    county = len(parsed.tasks_in(Annex.COUNTY))
    city = len(parsed.tasks_in(Annex.CITY))
    leads = {u for t in parsed.tasks for u in t.lead}
    units = {u for t in parsed.tasks for u, _ in t.units()}
    assignments = sum(len(t.units()) for t in parsed.tasks)
    click.echo(f"  县级任务 {county} 项,市级任务 {city} 项")
    click.echo(f"  牵头单位 {len(leads)} 个,涉及单位 {len(units)} 个,任务—单位分工 {assignments} 条")
    if parsed.warnings:
        click.echo(f"  已修复或需留意的问题 {len(parsed.warnings)} 处:")
        for problem in parsed.warnings:
            click.echo(f"    {problem}")


def _print_diff(diff: ImportDiff) -> None:
    if diff.empty:
        click.echo("与数据库中的方案相比没有变化。")
        return
    click.echo("与数据库中的方案相比,将会:")
    for label in diff.new_tasks:
        click.echo(f"  + 新任务 {label}")
    for label in diff.restored_tasks:
        click.echo(f"  + 恢复任务 {label}")
    for label in diff.removed_tasks:
        click.echo(f"  - 停用任务 {label}(已记录的进展保留)")
    for label, old, new in diff.changed_text:
        click.echo(f"  ~ 任务 {label} 内容变更:\n      旧: {old}\n      新: {new}")
    for change in diff.added:
        click.echo(f"  + {change.task} 增加{ROLE_ZH[change.role]}单位 {change.unit}")
    for change in diff.removed:
        click.echo(f"  - {change.task} 移除{ROLE_ZH[change.role]}单位 {change.unit}")
    for change in diff.role_changed:
        old = ROLE_ZH[change.old_role or "responsible"]
        click.echo(f"  ~ {change.task} {change.unit}: {old} → {ROLE_ZH[change.role]}")
    for unit in diff.new_units:
        click.echo(f"  + 新单位 {unit}")


RULE_ZH = {"same-core": "去掉地名后相同", "abbreviation": "简称", "similar": "字面相近"}
SEVERITY_ZH = {"error": "错误", "warning": "已修复/需留意", "unparsed": "未识别"}


def _print_preview(preview: ImportPreview) -> None:
    """The preview as the office reads it, in Chinese; the same content as ``--json``."""
    counts = preview.counts()
    click.echo(f"预览 {preview.source_name}({preview.jurisdiction} {preview.year}年,尚未写入数据库):")
    click.echo(f"  县级任务 {counts['county']} 项,市级任务 {counts['city']} 项,任务—单位分工 {preview.assignments} 条")
    for section in preview.sections:
        annex = "县级" if section.annex == "county" else "市级"
        click.echo(f"    {annex} · {section.section or '(无分节)'}:{section.tasks} 项")
    new_units = [u.name for u in preview.units if not u.known]
    click.echo(
        f"单位:共 {len(preview.units)} 个,已有 {len(preview.units) - len(new_units)} 个,新单位 {len(new_units)} 个"
    )
    if new_units and not preview.first_import:
        click.echo("  新单位:" + "、".join(new_units))
    if preview.similar:
        click.echo("疑似同一单位(确认后用 --merge 别名=标准名称 合并):")
        for pair in preview.similar:
            click.echo(f"  {pair.a} ~ {pair.b}({RULE_ZH[pair.rule]},相似度 {pair.score:.2f})")
    if preview.aliases:
        click.echo("文档中括注的别名:" + ",".join(f"{a} → {u}" for a, u in preview.aliases.items()))
    defined = [g for g in preview.groups if g.defined]
    if defined:
        click.echo("已定义的群体:")
        for group in defined:
            members = "、".join(group.members) or "(除直接列出的单位外无其他单位)"
            click.echo(f"  {group.phrase} = {members}({len(group.tasks)} 项任务)")
    if preview.groups_to_define:
        click.echo("待定义的群体(用 --group 名称=单位1,单位2 或在工作台定义;定义前这些任务不分配给具体单位):")
        for group in preview.groups_to_define:
            labels = "、".join(_label(key) for key in group.tasks)
            click.echo(f"  {group.phrase}:{labels}")
    with_targets = [t for t in preview.tasks if t.targets]
    if with_targets:
        total = sum(len(t.targets) for t in with_targets)
        click.echo(f"量化目标:{len(with_targets)} 项任务共 {total} 个(导入后可用 duban targets 查看和修正):")
        for task in with_targets[:5]:
            click.echo(f"  {task.label} " + ";".join(task.targets))
        if len(with_targets) > 5:
            click.echo(f"  …… 另 {len(with_targets) - 5} 项")
    if preview.problems:
        click.echo(f"未能识别或已修复的行 {len(preview.problems)} 处:")
        for problem in preview.problems:
            where = f"第{problem.line}行" if problem.line else "全文"
            tail = f":{problem.text}" if problem.text else ""
            click.echo(f"  {where} [{SEVERITY_ZH[problem.severity]}] {problem.reason}{tail}")
    if not preview.first_import:
        _print_diff(preview.diff)


def _label(key: str) -> str:
    annex, number = key.split("-")
    return task_label(Annex(annex), int(number))


def _read_corrections(merges: tuple[str, ...], groups: tuple[str, ...], path: Path | None) -> Corrections:
    try:
        corrections = load_corrections(path) if path else Corrections()
        for text in merges:
            corrections.merge(*parse_merge(text))
        for text in groups:
            corrections.define_group(*parse_group(text))
    except CorrectionError as exc:
        fail(f"更正有误:{exc}")
    return corrections


def _interactive() -> bool:
    """Ask for confirmation only when a person is at a terminal; scripts get the preview and nothing written."""
    return sys.stdin.isatty() and sys.stdout.isatty()


@main.command(name="import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only show the preview (the default without --yes); write nothing.")
@click.option("--yes", "-y", is_flag=True, help="Import after the preview without asking.")
@click.option("--allow-shrink", is_flag=True, help="Allow a re-import that deactivates more than [plan] max_shrink.")
@click.option("--merge", "merges", multiple=True, metavar="别名=标准名称", help="Treat a spelling as another unit.")
@click.option("--group", "groups", multiple=True, metavar="群体=单位1,单位2", help="Define a group phrase's units.")
@click.option(
    "--corrections",
    "corrections_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='TOML file with [merge], [groups] and [tasks."county-5"] lead/responsible.',
)
@click.option("--jurisdiction", default=None, help="Whose plan this is (default from config).")
@click.option("--json", "as_json", is_flag=True, help="The preview (and result) as JSON; never implies --yes.")
@click.pass_obj
def import_command(
    state: CliState,
    path: Path,
    dry_run: bool,
    yes: bool,
    allow_shrink: bool,
    merges: tuple[str, ...],
    groups: tuple[str, ...],
    corrections_path: Path | None,
    jurisdiction: str | None,
    as_json: bool,
) -> None:
    """Preview a notice, then import it (or re-import it: recorded statuses are kept).

    Nothing is written without --yes, or a "y" typed at a terminal.
    """
    settings = state.settings
    try:
        plan_file = read_plan_file(path, settings)
    except SourceRefused as refused:
        fail(refused.message)
    corrections = _read_corrections(merges, groups, corrections_path)
    name = jurisdiction or settings.plan.jurisdiction
    parse = plan_file.parse

    with _database_ready(state) as runtime:
        with runtime.transaction() as session:
            preview = build_preview(
                session,
                settings,
                parse,
                source_name=path.name,
                jurisdiction_name=name,
                now=runtime.clock.now(),
                corrections=corrections,
                directory=settings.unit_directory(path),
            )
        blocked = preview.blocked_by(allow_shrink)
        data = preview.as_dict() | {"applied": False, "refused": blocked}
        if not as_json:
            _print_preview(preview)
        if blocked == "errors":
            if as_json:
                emit_json(data)
            else:
                click.echo(f"无法导入 {path.name}:发现 {len(preview.errors)} 处错误,数据库未作任何改动。", err=True)
            sys.exit(1)
        if blocked == "shrink":
            if as_json:
                emit_json(data)
            else:
                click.echo(
                    f"拒绝导入:将停用 {preview.shrink.removed} 项任务,占现有 {preview.shrink.active} 项的"
                    f" {preview.shrink.share:.0%},超过允许的 {preview.shrink.limit:.0%}(文件可能不完整)。"
                    "确认无误请加 --allow-shrink。数据库未改动。",
                    err=True,
                )
            sys.exit(1)
        if dry_run or not yes:
            if not dry_run and not as_json and _interactive():
                if click.confirm("导入以上内容?", default=False):
                    yes = True
                else:
                    click.echo("已取消,数据库未改动。")
                    return
            if not yes:
                if as_json:
                    emit_json(data)
                else:
                    click.echo("以上为预览,数据库未改动。确认无误后加 --yes 导入。")
                return
        with runtime.transaction() as session:
            result = import_parsed(
                session,
                settings,
                parse,
                source_name=path.name,
                source_sha256=plan_file.sha256,
                jurisdiction_name=name,
                now=runtime.clock.now(),
                allow_shrink=allow_shrink,
                corrections=corrections,
                directory=settings.unit_directory(path),
            )
    if as_json:
        emit_json(data | {"applied": True, "plan_id": result.plan_id})
        return
    click.echo(f"已{'导入' if result.first_import else '重新导入'} {path.name}({name} {result.parsed.year}年):")
    _print_import_summary(result.parsed)
    if not result.first_import and result.diff.empty:
        click.echo("与上次导入相比没有变化。")


# --- reconcile -------------------------------------------------------------------


def _reconcile_json(rec: Reconciliation) -> dict[str, Any]:
    return {
        "counts": {kind.value: count for kind, count in rec.counts().items()},
        "disagreements": [d.as_dict() for d in rec.disagreements],
        "learned_groups": rec.learned_groups,
        "matrix_rows_placed_by_inference": [
            {"unit": p.row.unit, "line": p.row.line, "columns": [f"{a.value}:{r.value}" for a, r in p.columns]}
            for p in rec.placed
            if p.guessed
        ],
    }


@main.command(name="reconcile")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def reconcile_command(state: CliState, path: Path | None, as_json: bool) -> None:
    """List where Annex 3 (the matrix) disagrees with annexes 1–2, grouped and counted."""
    settings = state.settings
    source = path or settings.plan_path
    directory = settings.unit_directory(source)
    try:
        parsed = read_plan_file(source, settings).parse(directory)
    except SourceRefused as refused:
        fail(refused.message)
    if parsed.errors:
        for problem in parsed.errors:
            click.echo(f"  {problem}", err=True)
        fail(f"{source.name} 有 {len(parsed.errors)} 处错误,无法核对。")
    rec = reconcile(parsed, directory)
    if as_json:
        emit_json(_reconcile_json(rec))
        return
    if not parsed.matrix:
        click.echo(f"{source.name} 没有单位明细表(附件3),无从核对。")
        return
    total = len(rec.disagreements)
    click.echo(f"核对 {source.name}:明细表 {len(parsed.matrix)} 行,与附件1–2 不一致 {total} 处。")
    for kind, items in rec.grouped().items():
        click.echo(f"\n【{KIND_TITLES[kind]}】{len(items)} 处")
        by_task: dict[str, list[str]] = defaultdict(list)
        loose: list[str] = []
        for item in items:
            unit = item.unit + (f"({item.detail})" if item.detail and item.task is None else "")
            if item.task is not None and item.annex is not None:
                role = "牵头" if item.detail.startswith("lead") else ""
                by_task[task_label(item.annex, item.task)].append(unit + (f"[{role}]" if role else ""))
            else:
                loose.append(unit + (f" 第{item.line}行" if item.line else ""))
        for label, units in by_task.items():
            click.echo(f"  {label}: {'、'.join(units)}")
        for line in loose:
            click.echo(f"  {line}")
    guessed = [p for p in rec.placed if p.guessed]
    if guessed:
        click.echo(f"\n(明细表有 {len(guessed)} 行缺少空单元格,已按附件1–2 推断各列归属;用 --json 查看)")


# --- listings ----------------------------------------------------------------------


def _unit_named(session: Any, plan: Any, name: str) -> Unit:
    """The unit ``name`` means as people type it (发改局, 官桥镇); a clear refusal when it means none or several."""
    matches = match_units(session, plan.jurisdiction_id, name)
    if not matches:
        fail(f"未知单位: {name}(用 duban units 查看全部单位)")
    if len(matches) > 1:
        fail(f"“{name}”可能是以下单位之一,请写出全称:{'、'.join(u.name for u in matches)}")
    return matches[0]


@main.command()
@click.option("--unit", "unit_name", default=None, help="Only this unit's tasks (name or alias).")
@click.option("--annex", type=click.Choice(["county", "city"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def tasks(state: CliState, unit_name: str | None, annex: str | None, as_json: bool) -> None:
    """The plan's tasks with their lead and responsible units."""
    settings = state.settings
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, settings)
        unit = _unit_named(session, plan, unit_name) if unit_name else None
        query = (
            select(Task).where(Task.plan_id == plan.id, Task.active.is_(True)).order_by(Task.annex.desc(), Task.number)
        )
        if annex:
            query = query.where(Task.annex == annex)
        rows = []
        tasks = list(session.scalars(query))
        targets = targets_by_task(session, [t.id for t in tasks])
        for task in tasks:
            active = [a for a in task.assignments if a.active]
            leads = [a.unit.name for a in active if a.role == "lead"]
            responsible = [a.unit.name for a in active if a.role == "responsible"]
            mine = next((a.role for a in active if unit is not None and a.unit_id == unit.id), None)
            if unit is not None and mine is None:
                continue
            rows.append(
                {
                    "annex": task.annex,
                    "number": task.number,
                    "label": task_label(task.annex, task.number),
                    "section": task.subsection or task.section,
                    "title": short_title(task.text),
                    "text": task.text,
                    "lead": leads,
                    "responsible": responsible,
                    "deadline": task.deadline.isoformat() if task.deadline else None,
                    "deadline_text": task.deadline_text,
                    "targets": [f"{t.metric} {format_number(t.value)}{t.unit}" for t in targets[task.id]],
                    **({"role": mine} if unit is not None else {}),
                }
            )
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"{plan.name}({unit.name if unit else '全部单位'})", show_lines=False)
    table.add_column("编号", no_wrap=True)
    if unit is not None:
        table.add_column("角色", no_wrap=True)
    table.add_column("任务")
    table.add_column("牵头单位")
    table.add_column("责任单位", justify="right")
    table.add_column("完成时限")
    table.add_column("量化目标")
    for row in rows:
        cells = [row["label"]]
        if unit is not None:
            cells.append(ROLE_ZH[row["role"]])
        deadline = str(row["deadline_text"] or "")
        if row["deadline"] and deadline != row["deadline"]:
            deadline = f"{deadline}({row['deadline']})" if deadline else str(row["deadline"])
        cells += [
            row["title"],
            "、".join(row["lead"]),
            f"{len(row['responsible'])} 个",
            deadline,
            ";".join(row["targets"]),
        ]
        table.add_row(*cells)
    console().print(table)
    click.echo(f"共 {len(rows)} 项")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def units(state: CliState, as_json: bool) -> None:
    """Every unit: kind, aliases, groups, how many tasks it leads and shares, who is bound."""
    settings = state.settings
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, settings)
        counts: dict[tuple[int, str], int] = {
            (unit_id, role): count
            for unit_id, role, count in session.execute(
                select(Assignment.unit_id, Assignment.role, func.count())
                .join(Task, Task.id == Assignment.task_id)
                .where(Task.plan_id == plan.id, Task.active.is_(True), Assignment.active.is_(True))
                .group_by(Assignment.unit_id, Assignment.role)
            )
        }
        bound: dict[int, int] = dict(
            session.execute(
                select(Binding.unit_id, func.count()).where(Binding.revoked_at.is_(None)).group_by(Binding.unit_id)
            ).all()
        )
        title = f"{plan.jurisdiction.name} 单位"
        groups: dict[int, list[str]] = defaultdict(list)
        for member in session.scalars(
            select(UnitGroupMember).where(UnitGroupMember.jurisdiction_id == plan.jurisdiction_id)
        ):
            groups[member.unit_id].append(member.phrase)
        rows = []
        for unit in session.scalars(select(Unit).where(Unit.jurisdiction_id == plan.jurisdiction_id).order_by(Unit.id)):
            rows.append(
                {
                    "name": unit.name,
                    "kind": unit.kind,
                    "aliases": sorted(a.alias for a in unit.aliases),
                    "groups": groups.get(unit.id, []),
                    "lead": counts.get((unit.id, "lead"), 0),
                    "responsible": counts.get((unit.id, "responsible"), 0),
                    "bound": bound.get(unit.id, 0),
                }
            )
    if as_json:
        emit_json(rows)
        return
    kinds = {"department": "部门", "town": "镇", "enterprise": "企业", "other": "其他"}
    table = Table(title=title)
    for column in ("单位", "类型", "别名", "牵头", "责任", "已绑定"):
        table.add_column(
            column, no_wrap=column != "别名", justify="right" if column in ("牵头", "责任", "已绑定") else "left"
        )
    for row in rows:
        table.add_row(
            row["name"],
            kinds.get(row["kind"], row["kind"]),
            "、".join(row["aliases"]),
            str(row["lead"]),
            str(row["responsible"]),
            str(row["bound"]),
        )
    console().print(table)
    click.echo(f"共 {len(rows)} 个单位")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def groups(ctx: click.Context, as_json: bool) -> None:
    """Group phrases the plan's tasks name (各镇人民政府 …): defined, or still to define."""
    if ctx.invoked_subcommand is not None:
        return
    state: CliState = ctx.obj
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, state.settings)
        found = plan_groups(session, state.settings, plan)
    if as_json:
        emit_json([vars(group) for group in found])
        return
    for group in found:
        labels = "、".join(_label(key) for key in group.tasks)
        if group.defined:
            members = "、".join(group.members) or "(除直接列出的单位外无其他单位)"
            click.echo(f"{group.phrase} = {members}\n  任务:{labels}")
        else:
            click.echo(f"{group.phrase} [待定义]\n  任务:{labels}")
    click.echo(f"共 {len(found)} 个群体称谓,待定义 {sum(1 for g in found if not g.defined)} 个")


@groups.command(name="define")
@click.argument("phrase")
@click.argument("members", nargs=-1, required=True)
@click.pass_obj
def groups_define(state: CliState, phrase: str, members: tuple[str, ...]) -> None:
    """Define PHRASE as MEMBERS (units, or one 、-separated list); every task naming it is assigned to them."""
    names = [name for member in members for name in split_unit_list(member)]
    with _database_ready(state) as runtime:
        try:
            with runtime.transaction() as session:
                plan = _plan_or_fail(session, state.settings)
                done = define_group(session, state.settings, plan, phrase, names, now=runtime.clock.now(), actor="cli")
        except CorrectionError as exc:
            fail(f"无法定义群体:{exc}")
    click.echo(
        f"已定义“{done.phrase}” = {'、'.join(done.members)}:涉及 {len(done.tasks)} 项任务,"
        f"新增分工 {done.added} 条,停用 {done.removed} 条(已记录的进展保留)。"
    )


# --- people ---------------------------------------------------------------------------


@main.command()
@click.argument("unit_name", metavar="UNIT")
@click.option("--role", type=click.Choice([r.value for r in PersonRole]), default="liaison", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def invite(state: CliState, unit_name: str, role: str, as_json: bool) -> None:
    """Issue a one-time binding code for UNIT and print how to use it."""
    settings = state.settings
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = current_plan(session, settings)
        if plan is not None:
            unit_name = _unit_named(session, plan, unit_name).name
        issued = invite_unit(session, settings, unit_name, role, now=runtime.clock.now(), created_by="cli")
        if issued is None:
            fail(f"未知单位: {unit_name}(用 duban units 查看全部单位)")
        unit_name = issued.unit.name
    link = telegram_link(settings, issued.code)
    expires = issued.expires_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    if as_json:
        emit_json(
            {
                "unit": unit_name,
                "role": role,
                "code": issued.code,
                "expires_at": issued.expires_at.isoformat(),
                "telegram_link": link,
                "wecom_instruction": f"绑定 {issued.code}",
            }
        )
        return
    click.echo(f"绑定码({unit_name} · {ROLE_NAMES[role]},{expires} 前有效,仅可使用一次):")
    click.echo(f"  {issued.code}")
    if link:
        click.echo(f"Telegram: {link}")
    else:
        click.echo(f"Telegram: 向机器人发送 /start {issued.code}(配置 [telegram] bot_username 后可生成链接)")
    click.echo(f"企业微信: 在应用中发送“绑定 {issued.code}”")
    click.echo(f"本地沙盒: 在 http://{settings.web.host}:{settings.web.port}/ 中输入绑定码")


# --- plan ledger ------------------------------------------------------------------------


@main.group(name="plan")
def plan_group() -> None:
    """The plan as a file: the task ledger (任务台账) an office can edit and re-import."""


@plan_group.command(name="export")
@click.option("--format", "fmt", type=click.Choice(["xlsx"]), default="xlsx", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write.")
@click.pass_obj
def plan_export(state: CliState, fmt: str, output: Path | None) -> None:
    """Write the plan as a standard task ledger: 序号, 任务, 牵头单位, 责任单位, 完成时限, 分组, 备注.

    The file imports back with no change (duban import FILE); edited, its import shows the diff.
    """
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, state.settings)
        data = ledger_workbook(session, plan)
        target = output or Path(ledger_file_name(plan))
    target.write_bytes(data)
    click.echo(f"已导出任务台账: {target}")


# --- checkpoints ------------------------------------------------------------------------


@main.group()
def checkpoint() -> None:
    """Reporting rounds: the configured calendar and ad-hoc rounds (专项督查)."""


@checkpoint.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def checkpoint_list(state: CliState, as_json: bool) -> None:
    """Every live checkpoint with its due time and how many have answered."""
    settings = state.settings
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, settings)
        rows = []
        for item in live_checkpoints(session, plan.id):
            counts = checkpoint_state_counts(session, item.id)
            rows.append(
                {
                    "id": item.key,
                    "title": item.title,
                    "due": item.due_at.astimezone(settings.tz).isoformat(),
                    "owed_by": item.owed_by,
                    "tasks": item.task_scope,
                    "satisfied_by": item.satisfied_by,
                    "source": item.source,
                    "obligations": sum(counts.values()),
                    "states": counts,
                }
            )
    if as_json:
        emit_json(rows)
        return
    table = Table(title="督查轮次")
    for column in ("编号", "标题", "截止", "报送方", "任务", "需报送", "已报送", "来源"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        answered = row["states"].get("answered", 0) + row["states"].get("accepted", 0)
        table.add_row(
            row["id"],
            row["title"],
            row["due"][:16].replace("T", " "),
            "牵头单位" if row["owed_by"] == "lead" else "牵头和责任单位",
            row["tasks"] if isinstance(row["tasks"], str) else ",".join(row["tasks"]),
            str(row["obligations"]),
            str(answered),
            "配置" if row["source"] == "config" else "临时",
        )
    console().print(table)


@checkpoint.command(name="add")
@click.argument("key", required=False, default=None)
@click.option("--title", required=True, help="e.g. 防汛专项督查")
@click.option("--due", required=True, help="Local time: 2024-07-10 (18:00) or 2024-07-10T17:30, or +10m for a demo")
@click.option("--tasks", default="all", show_default=True, help="all, county, city, or a list such as 41,43,市12")
@click.option(
    "--owed-by", type=click.Choice(["lead", "lead_and_responsible"]), default="lead_and_responsible", show_default=True
)
@click.option("--document", is_flag=True, help="Only a file satisfies it (like the refined plan).")
@click.option("--ladder", default=None, help="Own rungs, e.g. '-30s,0s,+1m'; they ignore the working-day calendar.")
@click.pass_obj
def checkpoint_add(
    state: CliState, key: str | None, title: str, due: str, tasks: str, owed_by: str, document: bool, ladder: str | None
) -> None:
    """Add an ad-hoc round (专项督查) as KEY (any letters; made up when left out); reminders follow the ladder."""
    settings = state.settings
    with _database_ready(state) as runtime:
        now = runtime.clock.now()
        try:
            due_at = now + parse_offset(due).delta if due.startswith("+") else parse_local_datetime(due, settings)
            own_ladder = _ladder_option(ladder, settings) if ladder else None
            with runtime.transaction() as session:
                plan = _plan_or_fail(session, settings)
                added = add_adhoc_checkpoint(
                    session,
                    plan,
                    key=key,
                    title=title,
                    due_at=due_at,
                    now=now,
                    owed_by=owed_by,
                    tasks=parse_task_scope(tasks),
                    satisfied_by="document" if document else "status",
                    ladder=own_ladder,
                    actor="cli",
                )
                count = session.scalar(
                    select(func.count()).select_from(Obligation).where(Obligation.checkpoint_id == added.id)
                )
                key = added.key
        except CheckpointError as exc:
            fail(f"无法新增: {exc.explain(Messages(settings.service.language, settings.tz))}")
        except ValueError as exc:  # a malformed --due offset or --ladder
            fail(f"无法新增: {exc}")
    click.echo(f"已新增 {key}「{title}」,截止 {due_at.astimezone(settings.tz):%Y-%m-%d %H:%M},需报送 {count} 项。")


@checkpoint.command(name="cancel")
@click.argument("key")
@click.option("--reason", default="", help="Why; kept in the audit log.")
@click.pass_obj
def checkpoint_cancel(state: CliState, key: str, reason: str) -> None:
    """Cancel the ad-hoc round KEY: no more reminders; what units sent is kept."""
    settings = state.settings
    with _database_ready(state) as runtime:
        try:
            with runtime.transaction() as session:
                plan = _plan_or_fail(session, settings)
                cancelled = cancel_checkpoint(
                    session, plan, key, now=runtime.clock.now(), actor="cli", reason=reason.strip()
                )
                title = cancelled.title
        except CheckpointError as exc:
            fail(f"无法撤销: {exc.explain(Messages(settings.service.language, settings.tz))}")
    click.echo(f"已撤销 {key}「{title}」,不再发送提醒;已报送的内容保留。")


@checkpoint.command(name="edit")
@click.argument("key")
@click.option("--title", default=None, help="A new title.")
@click.option("--due", default=None, help="A new deadline, local time: 2024-07-10 (18:00) or 2024-07-10T17:30.")
@click.option("--tasks", default=None, help="New tasks: all, county, city, or a list such as 41,43,市12.")
@click.option("--ladder", default=None, help="New rungs, e.g. '-30s,0s,+1m'.")
@click.pass_obj
def checkpoint_edit(
    state: CliState, key: str, title: str | None, due: str | None, tasks: str | None, ladder: str | None
) -> None:
    """Change the ad-hoc round KEY: its title, deadline, tasks or reminder rungs (recorded in the audit log)."""
    settings = state.settings
    if title is None and due is None and tasks is None and ladder is None:
        fail("请至少指定一项修改: --title、--due、--tasks 或 --ladder")
    with _database_ready(state) as runtime:
        now = runtime.clock.now()
        try:
            due_at = parse_local_datetime(due, settings) if due is not None else None
            with runtime.transaction() as session:
                plan = _plan_or_fail(session, settings)
                edited = edit_checkpoint(
                    session,
                    plan,
                    key,
                    now=now,
                    actor="cli",
                    title=title,
                    due_at=due_at,
                    tasks=parse_task_scope(tasks) if tasks is not None else None,
                    ladder=_ladder_option(ladder, settings) if ladder else None,
                )
                summary = f"{edited.key}「{edited.title}」,截止 {edited.due_at.astimezone(settings.tz):%Y-%m-%d %H:%M}"
                count = session.scalar(
                    select(func.count())
                    .select_from(Obligation)
                    .where(Obligation.checkpoint_id == edited.id, Obligation.active.is_(True))
                )
        except CheckpointError as exc:
            fail(f"无法修改: {exc.explain(Messages(settings.service.language, settings.tz))}")
        except ValueError as exc:  # a malformed --ladder
            fail(f"无法修改: {exc}")
    click.echo(f"已修改 {summary},需报送 {count} 项。")


def _ladder_option(text: str, settings: Settings) -> Ladder:
    offsets = [part.strip() for part in text.split(",") if part.strip()]
    rungs = [Rung(offset=parse_offset(o), roles=[PersonRole.LIAISON]) for o in offsets]
    return Ladder(rungs=rungs, repeat_every=None, repeat_cap=0, follow_calendar=False)


# --- simulate ------------------------------------------------------------------------------


@main.command()
@click.option("--from", "start", required=True, help="Local date or time, e.g. 2024-02-20")
@click.option("--to", "end", required=True, help="Local date or time, e.g. 2024-04-01")
@click.option(
    "--answers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON list of {at, unit, task, status} answers to apply on the way.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def simulate(state: CliState, start: str, end: str, answers: Path | None, as_json: bool) -> None:
    """What the schedule sends between two dates, on a copy of the data; sends and changes nothing."""
    settings = state.settings
    with _database_ready(state) as runtime:
        try:
            begin = parse_local_datetime(start, settings, default_hour=0)
            finish = parse_local_datetime(end, settings, default_hour=23, default_minute=59)
            answer_list = load_answers(answers, settings) if answers else []
        except CheckpointError as exc:
            fail(exc.explain(Messages(settings.service.language, settings.tz)))
        except ValueError as exc:
            fail(str(exc))
        timeline = run_simulation(runtime, begin, finish, answer_list)
    if as_json:
        emit_json(timeline.as_dict())
        return
    print_timeline(timeline, settings)


def print_timeline(timeline: Timeline, settings: Settings) -> None:
    """The timeline as the office reads it: one line per message, then totals per day and unit."""
    tz = settings.tz
    click.echo(
        f"模拟 {timeline.start.astimezone(tz):%Y-%m-%d %H:%M} 至 {timeline.end.astimezone(tz):%Y-%m-%d %H:%M}(不发送、不改动数据)"
    )
    for notice in timeline.notices:
        tasks = "、".join(notice.tasks[:6]) + (f" 等{len(notice.tasks)}项" if len(notice.tasks) > 6 else "")
        units = "、".join(notice.units[:3]) + (f" 等{len(notice.units)}个单位" if len(notice.units) > 3 else "")
        reach = f"{notice.recipients} 人" if notice.recipients else "无人绑定"
        late = " [补发]" if notice.late else ""
        click.echo(
            f"{notice.at.astimezone(tz):%Y-%m-%d %H:%M}  {notice.checkpoint_title} {notice.rung}"
            f"  {ROLE_NAMES.get(notice.role, notice.role)}  {units}  {tasks}  → {reach}{late}"
        )
    for answer in timeline.answers:
        state = "已计入 " + answer.get("checkpoint", "") if answer.get("applied") else f"未计入({answer.get('reason')})"
        click.echo(f"{answer['at'][:16].replace('T', ' ')}  答复 {answer['unit']} {answer['task']}  {state}")
    click.echo(
        f"\n合计 {len(timeline.notices)} 条提醒(其中 {sum(1 for n in timeline.notices if n.recipients)} 条有人接收)"
    )
    for day, count in sorted(timeline.per_day(tz).items()):
        click.echo(f"  {day}: {count} 条")
    top = timeline.per_unit().most_common(10)
    if top:
        click.echo("单位提醒次数(前10):" + ",".join(f"{unit} {count}" for unit, count in top))


# --- reports -------------------------------------------------------------------------------


@main.command()
@click.option(
    "--checkpoint", "checkpoint_key", default=None, help="The round, e.g. 2024-q1 (see duban checkpoint list)."
)
@click.option(
    "--year",
    "year",
    type=int,
    is_flag=False,
    flag_value=0,
    default=None,
    help="Every unit's record across the rounds due in year N (--year alone: the plan's year), side by side.",
)
@click.option("--format", "fmt", type=click.Choice(["html", "xlsx", "md"]), default="html", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File or folder (default: here).")
@click.pass_obj
def report(state: CliState, checkpoint_key: str | None, year: int | None, fmt: str, output: Path | None) -> None:
    """Write the notification (通报) of a round, or the year view, as HTML, XLSX or Markdown."""
    from core.documents import export, file_format

    whole_year = year is not None
    if bool(checkpoint_key) == whole_year:
        fail("请指定 --checkpoint ID 或 --year 之一")
    settings = state.settings
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, settings)
        live = [c.key for c in live_checkpoints(session, plan.id)]
        if checkpoint_key and checkpoint_key not in live:
            fail(f"没有进行中的督查轮次“{checkpoint_key}”;现有轮次:{'、'.join(live) or '无'}")
        try:
            path = export(
                session,
                settings,
                Messages(settings.service.language, settings.tz),
                plan,
                None if whole_year else checkpoint_key,
                file_format(fmt),
                runtime.clock.now(),
                output,
                year=year or None,
            )
        except ValueError as exc:
            fail(str(exc))
    click.echo(f"已生成 {path}")


# --- targets (硬账) ---------------------------------------------------------------------------


@main.group()
def targets() -> None:
    """Quantitative targets read from the tasks' texts, and the office's corrections."""


def _task_by_ref(session: Any, plan: Any, ref: str) -> Task:
    parsed_ref = parse_task_ref(ref)
    task = find_task(session, plan.id, parsed_ref[0].value, parsed_ref[1]) if parsed_ref else None
    if task is None:
        fail(f"未知任务: {ref}(例如 县33、市29)")
    return task


@targets.command(name="list")
@click.option("--task", "task_ref", default=None, help="Only this task, e.g. 县33 or 市29.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def targets_list(state: CliState, task_ref: str | None, as_json: bool) -> None:
    """Every task's targets: metric, value, unit, kind and where it came from."""
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, state.settings)
        if task_ref:
            tasks = [_task_by_ref(session, plan, task_ref)]
        else:
            tasks = list(
                session.scalars(
                    select(Task)
                    .where(Task.plan_id == plan.id, Task.active.is_(True))
                    .order_by(Task.annex.desc(), Task.number)
                )
            )
        found = targets_by_task(session, [t.id for t in tasks])
        rows: list[dict[str, Any]] = [
            {
                "task": task_label(task.annex, task.number),
                "id": row.id,
                "metric": row.metric,
                "value": row.value,
                "unit": row.unit,
                "kind": row.kind,
                "phrase": row.phrase,
                "source": row.source,
            }
            for task in tasks
            for row in found[task.id]
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"{plan.name} · 量化目标")
    for column in ("任务", "编号", "指标", "目标", "类型", "来源"):
        table.add_column(column, no_wrap=column != "指标")
    for row in rows:
        table.add_row(
            row["task"],
            str(row["id"]),
            row["metric"],
            f"{format_number(row['value'])}{row['unit']}",
            KIND_LABELS[TargetKind(row["kind"])],
            "文件" if row["source"] == "document" else "督查室",
        )
    console().print(table)
    with_targets = len({row["task"] for row in rows})
    click.echo(f"{with_targets} 项任务有量化目标,共 {len(rows)} 个目标")


def _change_target(state: CliState, task_ref: str, **change: Any) -> None:
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, state.settings)
        task = _task_by_ref(session, plan, task_ref)
        try:
            row = set_target(session, task, now=runtime.clock.now(), actor="cli", **change)
        except TargetRefused as exc:
            fail(str(exc))
        label = task_label(task.annex, task.number)
        verb = "已删除" if change.get("remove") else "已保存"
        click.echo(f"{verb} {label} 目标 #{row.id}: {row.metric} {format_number(row.value)}{row.unit}")


_KINDS = click.Choice([k.value for k in TargetKind])


@targets.command(name="set")
@click.argument("task_ref", metavar="TASK")
@click.argument("target_id", metavar="ID", type=int)
@click.option("--metric", default=None)
@click.option("--value", type=float, default=None)
@click.option("--unit", default=None)
@click.option("--kind", type=_KINDS, default=None)
@click.pass_obj
def targets_set(
    state: CliState,
    task_ref: str,
    target_id: int,
    metric: str | None,
    value: float | None,
    unit: str | None,
    kind: str | None,
) -> None:
    """Correct one target; a re-import keeps the correction."""
    _change_target(state, task_ref, target_id=target_id, metric=metric, value=value, unit=unit, kind=kind)


@targets.command(name="add")
@click.argument("task_ref", metavar="TASK")
@click.option("--metric", required=True, help="e.g. 实际利用外资")
@click.option("--value", type=float, required=True)
@click.option("--unit", required=True, help="e.g. %, 个, 万亩")
@click.option("--kind", type=_KINDS, default="amount", show_default=True)
@click.pass_obj
def targets_add(state: CliState, task_ref: str, metric: str, value: float, unit: str, kind: str) -> None:
    """Add a target the text does not state in figures (翻一番 …)."""
    _change_target(state, task_ref, metric=metric, value=value, unit=unit, kind=kind)


@targets.command(name="remove")
@click.argument("task_ref", metavar="TASK")
@click.argument("target_id", metavar="ID", type=int)
@click.pass_obj
def targets_remove(state: CliState, task_ref: str, target_id: int) -> None:
    """Remove a target that was read wrongly; a re-import does not bring it back."""
    _change_target(state, task_ref, target_id=target_id, remove=True)


# --- milestones (节点督办) --------------------------------------------------------------------


@main.group()
def milestones() -> None:
    """The dated steps of each task's refined plan; each is reminded and checked like a round."""


@milestones.command(name="list")
@click.option("--task", "task_ref", default=None, help="Only this task, e.g. 县45.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def milestones_list(state: CliState, task_ref: str | None, as_json: bool) -> None:
    """Every milestone with its task, unit, date and whether it is still supervised."""
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, state.settings)
        if task_ref:
            task_ids = [_task_by_ref(session, plan, task_ref).id]
        else:
            task_ids = list(session.scalars(select(Task.id).where(Task.plan_id == plan.id, Task.active.is_(True))))
        rows: list[dict[str, Any]] = [
            {
                "id": m.id,
                "task": task_label(m.task.annex, m.task.number),
                "unit": m.unit.name,
                "due_on": m.due_on.isoformat(),
                "what": m.what,
                "checkpoint": m.checkpoint_id,
                "source": m.source,
            }
            for m in task_milestones(session, task_ids)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"{plan.name} · 节点")
    for column in ("编号", "任务", "单位", "日期", "节点"):
        table.add_column(column, no_wrap=column != "节点")
    for row in rows:
        table.add_row(str(row["id"]), row["task"], row["unit"], row["due_on"], row["what"])
    console().print(table)
    click.echo(f"共 {len(rows)} 个节点")


@milestones.command(name="add")
@click.argument("task_ref", metavar="TASK")
@click.argument("lines", metavar="LINE", nargs=-1, required=True)
@click.pass_obj
def milestones_add(state: CliState, task_ref: str, lines: tuple[str, ...]) -> None:
    """Add milestones to a task for its lead unit: duban milestones add 县45 "6月底前 完成可研批复" …"""
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = _plan_or_fail(session, state.settings)
        task = _task_by_ref(session, plan, task_ref)
        lead = next((a.unit for a in task.assignments if a.active and a.role == "lead"), None)
        if lead is None:
            fail(f"任务 {task_ref} 没有牵头单位")
        try:
            drafts = parse_milestones("\n".join(lines), plan.year)
        except MilestoneRefused as exc:
            fail(str(exc))
        saved = add_milestones(
            session, state.settings, plan, task, lead, drafts, now=runtime.clock.now(), source="office", actor="cli"
        )
        for m in saved:
            past = "" if m.checkpoint_id else "(已过期,仅作记录)"
            click.echo(f"已保存节点 #{m.id}: {m.due_on.isoformat()} {m.what}{past}")


def _change_milestone_cli(state: CliState, milestone_id: int, **change: Any) -> None:
    with _database_ready(state) as runtime, runtime.transaction() as session:
        plan = current_plan(session, state.settings)
        milestone = session.get(Milestone, milestone_id)
        if plan is None or milestone is None or milestone.task.plan_id != plan.id:
            fail(f"没有编号为 {milestone_id} 的节点(用 duban milestones list 查看)")
        try:
            change_milestone(session, state.settings, plan, milestone, now=runtime.clock.now(), actor="cli", **change)
        except MilestoneRefused as exc:
            fail(str(exc))
        verb = "已删除" if change.get("remove") else "已修改"
        click.echo(f"{verb}节点 #{milestone.id}: {milestone.due_on.isoformat()} {milestone.what}")


@milestones.command(name="edit")
@click.argument("milestone_id", metavar="ID", type=int)
@click.option("--date", "due", default=None, help="New date, e.g. 2024-07-15")
@click.option("--what", default=None, help="What is due")
@click.pass_obj
def milestones_edit(state: CliState, milestone_id: int, due: str | None, what: str | None) -> None:
    """Move a milestone or reword it; its reminders follow."""
    try:
        due_on = date.fromisoformat(due) if due else None
    except ValueError:
        fail(f"日期格式不对: {due}(例如 2024-07-15)")
    _change_milestone_cli(state, milestone_id, due_on=due_on, what=what)


@milestones.command(name="remove")
@click.argument("milestone_id", metavar="ID", type=int)
@click.pass_obj
def milestones_remove(state: CliState, milestone_id: int) -> None:
    """Remove a milestone; it is no longer reminded (its record stays)."""
    _change_milestone_cli(state, milestone_id, remove=True)


# --- the service ----------------------------------------------------------------------------


@main.command()
@click.pass_obj
def run(state: CliState) -> None:
    """Start the service: database and plan set up, chat platforms, scheduler, web server."""
    from bot.service import serve_forever

    sys.exit(serve_forever(state.settings))


if __name__ == "__main__":  # pragma: no cover
    main()
