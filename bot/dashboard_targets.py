"""The dashboard's 目标与节点 page: each task's targets and milestones, their trend by round, and the office's edits.

The office corrects or adds a target (kept across re-imports, see
:mod:`core.task_targets`) and enters, moves or removes a task's milestones
(each supervised as its own round, see :mod:`core.milestones`).  The page
shows, per target, the lead unit's figure at every round's cut-off so far
(the quarter-by-quarter trend) and today's pace.  Every form carries the
session's CSRF token, like the rest of the dashboard.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from core.milestones import MilestoneRefused, add_milestones, change_milestone, parse_milestones, task_milestones
from core.progress import target_trend
from core.targets import KIND_LABELS, TargetKind, format_number
from core.task_targets import TargetRefused, set_target, targets_by_task
from core.tasks import parse_task_ref, task_label
from storage.models import Milestone, Task
from storage.queries import find_task

if TYPE_CHECKING:
    from bot.dashboard import Dashboard

PAGE = "/office/targets"


def _number(value: Any) -> float | None:
    text = str(value or "").strip().replace(",", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise TargetRefused(f"“{text}”不是数字") from exc


class TargetPages:
    """目标与节点: list with trend; forms to correct targets and edit milestones."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.service = dashboard.service
        self.settings = dashboard.settings

    def _now(self) -> Any:
        return self.service.runtime.clock.now()

    def _back(self, task: str, message: str, kind: str = "ok") -> Response:
        anchor = f"{PAGE}?task={task}" if task else PAGE
        return self.dashboard._back(anchor, message, kind)

    # --- the page ------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        only = request.query_params.get("task", "").strip()
        data = await self.service.threads.run(self._page, await self.dashboard._viewer(request), only)
        return await self.dashboard.ui.page(request, "office_targets.html.j2", **data, **self.dashboard._flash(request))

    def _page(self, viewer: int | None, only: str) -> dict[str, Any]:
        now = self._now()
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            if plan is None:
                return {"plan": None, "tasks": [], "only": only}
            query = select(Task).where(Task.plan_id == plan.id, Task.active.is_(True))
            ref = parse_task_ref(only) if only else None
            if ref is not None:
                query = query.where(Task.annex == ref[0].value, Task.number == ref[1])
            tasks = list(session.scalars(query.order_by(Task.annex.desc(), Task.number)))
            ids = [t.id for t in tasks]
            targets = targets_by_task(session, ids)
            milestones: dict[int, list[Milestone]] = {}
            for milestone in task_milestones(session, ids):
                milestones.setdefault(milestone.task_id, []).append(milestone)
            trend = target_trend(
                session,
                plan.id,
                [t.id for t in tasks if targets[t.id]],
                year=plan.year,
                thresholds=self.settings.report.pace.thresholds(),
                tz=self.settings.tz,
                now=now,
            )
            rows = []
            for task in tasks:
                if not targets[task.id] and not milestones.get(task.id) and ref is None:
                    continue
                leads = [a.unit.name for a in task.assignments if a.active and a.role == "lead"]
                rows.append(
                    {
                        "label": task_label(task.annex, task.number),
                        "text": task.text,
                        "leads": leads,
                        "targets": [
                            {
                                "id": t.id,
                                "metric": t.metric,
                                "value": format_number(t.value),
                                "unit": t.unit,
                                "kind": t.kind,
                                "kind_label": KIND_LABELS[TargetKind(t.kind)],
                                "source": t.source,
                                "trend": trend.get(t.id, []),
                            }
                            for t in targets[task.id]
                        ],
                        "milestones": [
                            {"id": m.id, "due_on": m.due_on, "what": m.what, "supervised": m.checkpoint_id is not None}
                            for m in milestones.get(task.id, [])
                        ],
                    }
                )
            return {
                "plan": {"name": plan.name, "year": plan.year},
                "tasks": rows,
                "only": only,
                "kinds": [(k.value, KIND_LABELS[k]) for k in TargetKind],
                "with_targets": sum(1 for r in rows if r["targets"]),
                "target_count": sum(len(r["targets"]) for r in rows),
            }

    # --- forms ---------------------------------------------------------------

    async def change_target(self, request: Request) -> Response:
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return refused
        info = await self.dashboard.ui.session(request)
        task_ref = str(form.get("task") or "")
        action = str(form.get("action") or "save")
        target_id = str(form.get("target_id") or "")
        try:
            change = {
                "target_id": int(target_id) if target_id.isdigit() else None,
                "metric": str(form.get("metric") or "").strip() or None,
                "value": _number(form.get("value")),
                "unit": str(form.get("unit") or "").strip() or None,
                "kind": str(form.get("kind") or "") or None,
                "remove": action == "remove",
            }
            saved = await self.service.threads.run(
                self._change_target,
                await self.dashboard._viewer(request),
                task_ref,
                change,
                self.dashboard._actor(info),
            )
        except TargetRefused as exc:
            return self._back(task_ref, f"未保存:{exc}", "warn")
        if saved is None:
            return self._back("", f"没有任务 {task_ref}", "warn")
        return self._back(task_ref, f"{task_ref} 目标已{'删除' if change['remove'] else '保存'}:{saved}")

    def _change_target(self, viewer: int | None, task_ref: str, change: dict[str, Any], actor: str) -> str | None:
        with self.service.runtime.transaction() as session:
            task = self._task(session, viewer, task_ref)
            if task is None:
                return None
            row = set_target(session, task, now=self._now(), actor=actor, **change)
            return f"{row.metric} {format_number(row.value)}{row.unit}"

    async def add_milestones(self, request: Request) -> Response:
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return refused
        info = await self.dashboard.ui.session(request)
        task_ref = str(form.get("task") or "")
        try:
            count = await self.service.threads.run(
                self._add_milestones,
                await self.dashboard._viewer(request),
                task_ref,
                str(form.get("lines") or ""),
                self.dashboard._actor(info),
            )
        except MilestoneRefused as exc:
            return self._back(task_ref, f"未保存:{exc}", "warn")
        if count is None:
            return self._back("", f"没有任务 {task_ref},或它没有牵头单位", "warn")
        return self._back(task_ref, f"{task_ref} 已保存 {count} 个节点")

    def _add_milestones(self, viewer: int | None, task_ref: str, lines: str, actor: str) -> int | None:
        with self.service.runtime.transaction() as session:
            task = self._task(session, viewer, task_ref)
            lead = next((a.unit for a in task.assignments if a.active and a.role == "lead"), None) if task else None
            if task is None or lead is None:
                return None
            plan = task.plan
            drafts = parse_milestones(lines, plan.year)
            return len(
                add_milestones(
                    session, self.settings, plan, task, lead, drafts, now=self._now(), source="office", actor=actor
                )
            )

    async def change_milestone(self, request: Request) -> Response:
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return refused
        info = await self.dashboard.ui.session(request)
        task_ref = str(form.get("task") or "")
        milestone_id = str(form.get("milestone_id") or "")
        remove = str(form.get("action") or "") == "remove"
        try:
            due = str(form.get("due_on") or "").strip()
            due_on = date.fromisoformat(due) if due else None
        except ValueError:
            return self._back(task_ref, f"未保存:日期格式不对({due}),例如 2024-07-15", "warn")
        try:
            done = await self.service.threads.run(
                self._change_milestone,
                await self.dashboard._viewer(request),
                int(milestone_id) if milestone_id.isdigit() else 0,
                due_on,
                str(form.get("what") or "").strip() or None,
                remove,
                self.dashboard._actor(info),
            )
        except MilestoneRefused as exc:
            return self._back(task_ref, f"未保存:{exc}", "warn")
        if not done:
            return self._back(task_ref, "没有这个节点", "warn")
        return self._back(task_ref, "节点已删除" if remove else "节点已修改")

    def _change_milestone(
        self, viewer: int | None, milestone_id: int, due_on: date | None, what: str | None, remove: bool, actor: str
    ) -> bool:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            milestone = session.get(Milestone, milestone_id)
            if plan is None or milestone is None or milestone.task.plan_id != plan.id:
                return False
            change_milestone(
                session,
                self.settings,
                plan,
                milestone,
                now=self._now(),
                actor=actor,
                due_on=due_on,
                what=what,
                remove=remove,
            )
            return True

    def _task(self, session: Any, viewer: int | None, task_ref: str) -> Task | None:
        plan = self.dashboard._plan(session, viewer)
        ref = parse_task_ref(task_ref)
        if plan is None or ref is None:
            return None
        task: Task | None = find_task(session, plan.id, ref[0].value, ref[1])
        return task
