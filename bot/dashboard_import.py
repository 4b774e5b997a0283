"""The dashboard's import page: upload a plan, check the preview, correct it, then import.

The uploaded file and the corrections stay in the staging area
(:mod:`core.plan_staging`), bound to the office user's browser session, until
the office confirms; only the confirm writes to the plan, through the same
:func:`core.plan_import.import_parsed` as ``duban import``.  Group phrases of
the plan already imported can be defined here too.  Every form carries the
session's CSRF token, like the rest of the dashboard.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.plan_corrections import CorrectionError, Corrections
from core.plan_document import PlanFile, read_plan_bytes
from core.plan_import import (
    ImportRefused,
    ImportShrinks,
    define_group,
    import_parsed,
    plan_groups,
)
from core.plan_ledger import ledger_file_name, ledger_workbook
from core.plan_parser import normalise_text, split_unit_list
from core.plan_preview import ImportPreview, build_preview
from core.plan_sources import SourceRefused
from core.plan_staging import ImportStaging, StagedImport, import_staging_folder

if TYPE_CHECKING:
    from bot.dashboard import Dashboard

IMPORT_PAGE = "/office/import"


def _units(value: Any) -> list[str]:
    return split_unit_list(normalise_text(str(value or "")).replace("\n", "、"))


class ImportPages:
    """Upload, preview, correct, confirm; and defining the current plan's groups."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.service = dashboard.service
        self.settings = dashboard.settings
        self.staging = ImportStaging(import_staging_folder(self.settings))

    async def _owner(self, request: Request) -> str:
        return (await self.dashboard.ui.session(request)).token_hash

    @staticmethod
    def _back(stage: StagedImport | None, message: str, kind: str = "ok") -> RedirectResponse:
        """Back to the import page (the staged preview when there is one) with a message."""
        query = {"s": stage.id} if stage is not None else {}
        return RedirectResponse(f"{IMPORT_PAGE}?{urlencode(query | {'flash': message, 'kind': kind})}", status_code=303)

    def _now(self) -> Any:
        return self.service.runtime.clock.now()

    # --- the page ------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        viewer = await self.dashboard._viewer(request)
        staged = None
        stage_id = request.query_params.get("s", "")
        if stage_id:
            staged = self.staging.load(stage_id, await self._owner(request), self._now())
            if staged is None:
                return self._back(None, "上传的文件已过期或不存在,请重新上传。", "warn")
        data = await self.service.threads.run(self._page, staged, viewer)
        return await self.dashboard.ui.page(
            request,
            "office_import.html.j2",
            staged=staged,
            max_mb=self.settings.uploads.max_bytes // (1 << 20),
            **data,
            **self.dashboard._flash(request),
        )

    def _page(self, staged: StagedImport | None, viewer: int | None) -> dict[str, Any]:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            groups = plan_groups(session, self.settings, plan) if plan is not None else []
            current = {"name": plan.name, "year": plan.year, "jurisdiction": plan.jurisdiction.name} if plan else None
            preview: ImportPreview | None = None
            unreadable = ""
            if staged is not None:
                try:
                    preview = self._preview(session, staged, viewer)
                except SourceRefused as exc:
                    unreadable = exc.message
            return {
                "plan": current,
                "plan_groups": groups,
                "preview": preview,
                "unreadable": unreadable,
            }

    def _read(self, staged: StagedImport) -> PlanFile:
        return read_plan_bytes(staged.data(), staged.filename, self.settings)

    def _jurisdiction(self, session: Any, viewer: int | None) -> str:
        plan = self.dashboard._plan(session, viewer)
        return plan.jurisdiction.name if plan is not None else self.settings.plan.jurisdiction

    def _preview(self, session: Any, staged: StagedImport, viewer: int | None) -> ImportPreview:
        upload = self._read(staged)
        return build_preview(
            session,
            self.settings,
            upload.parse,
            source_name=staged.filename,
            jurisdiction_name=self._jurisdiction(session, viewer),
            now=self._now(),
            corrections=staged.corrections,
        )

    # --- upload --------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        limit = self.settings.uploads.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + (64 << 10):
            too_big = f"文件超过 {limit // (1 << 20)} MB 上限,未上传。请压缩或拆分后再试。"
            return await self.dashboard.ui.refused(request, too_big, status=413)
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return refused
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            return self._back(None, "请选择要导入的文件。", "warn")
        data = await upload.read(limit + 1)
        await upload.close()
        name = Path(upload.filename).name
        try:  # a file no reader can open (too large, empty, damaged …) is refused here and never staged
            await self.service.threads.run(read_plan_bytes, data, name, self.settings)
        except SourceRefused as exc:
            return self._back(None, exc.message, "error")
        owner = await self._owner(request)
        staged = await self.service.threads.run(self.staging.create, data, name, owner, self._now())
        return RedirectResponse(f"{IMPORT_PAGE}?s={staged.id}", status_code=303)

    # --- corrections ---------------------------------------------------------

    async def _staged_form(self, request: Request) -> tuple[Any, StagedImport | None, Response | None]:
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return None, None, refused
        staged = self.staging.load(request.path_params["stage"], await self._owner(request), self._now())
        if staged is None:
            return form, None, self._back(None, "上传的文件已过期或不存在,请重新上传。", "warn")
        return form, staged, None

    async def correct(self, request: Request) -> Response:
        form, staged, refused = await self._staged_form(request)
        if refused is not None or staged is None:
            return refused or self._back(None, "", "warn")
        action = str(form.get("action") or "")
        try:
            if action == "merge":
                spelling, canonical = str(form.get("spelling") or ""), str(form.get("canonical") or "")
                staged.corrections.merge(spelling, canonical)
                done = f"已将“{spelling.strip()}”合并为“{canonical.strip()}”(尚未导入)。"
            elif action == "group":
                phrase = str(form.get("phrase") or "")
                staged.corrections.define_group(phrase, _units(form.get("members")))
                done = f"已定义群体“{phrase.strip()}”(尚未导入)。"
            elif action == "task":
                key = str(form.get("task") or "")
                staged.corrections.set_task_units(
                    key, lead=_units(form.get("lead")), responsible=_units(form.get("responsible"))
                )
                done = f"已修改任务 {key} 的单位(尚未导入)。"
            elif action == "reset":
                staged.corrections = Corrections()
                done = "已清除全部更正。"
            else:
                return await self.dashboard.ui.refused(request, "无法识别的操作,更正未保存。", status=400)
        except CorrectionError as exc:
            return self._back(staged, f"更正有误:{exc}", "warn")
        await self.service.threads.run(self.staging.save, staged)
        return self._back(staged, done)

    async def discard(self, request: Request) -> Response:
        _, staged, refused = await self._staged_form(request)
        if refused is not None or staged is None:
            return refused or self._back(None, "", "warn")
        self.staging.discard(staged)
        return self._back(None, "已放弃本次上传,方案未改动。")

    # --- confirm -------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        form, staged, refused = await self._staged_form(request)
        if refused is not None or staged is None:
            return refused or self._back(None, "", "warn")
        info = await self.dashboard.ui.session(request)
        viewer = await self.dashboard._viewer(request)
        try:
            summary = await self.service.threads.run(
                self._confirm, staged, viewer, bool(form.get("allow_shrink")), self.dashboard._actor(info)
            )
        except SourceRefused as exc:
            return self._back(staged, exc.message, "error")
        except ImportRefused as exc:
            return self._back(staged, f"文件有 {len(exc.problems)} 处错误,未导入。", "error")
        except ImportShrinks as exc:
            shrink = exc.shrink
            return self._back(
                staged,
                f"未导入:将停用 {shrink.removed} 项任务(占 {shrink.share:.0%}),超过允许的 {shrink.limit:.0%}。"
                "确认文件完整后勾选“允许大量停用”。",
                "error",
            )
        self.staging.discard(staged)
        return self.dashboard._back("/office", summary)

    def _confirm(self, staged: StagedImport, viewer: int | None, allow_shrink: bool, actor: str) -> str:
        upload = self._read(staged)
        with self.service.runtime.transaction() as session:
            result = import_parsed(
                session,
                self.settings,
                upload.parse,
                source_name=staged.filename,
                source_sha256=upload.sha256,
                jurisdiction_name=self._jurisdiction(session, viewer),
                now=self._now(),
                actor=actor,
                allow_shrink=allow_shrink,
                corrections=staged.corrections,
            )
        tasks = len(result.parsed.tasks)
        verb = "导入" if result.first_import else "重新导入"
        return f"已{verb} {staged.filename}:{tasks} 项任务,{sum(len(t.units()) for t in result.parsed.tasks)} 条分工。"

    # --- the plan as a task ledger ------------------------------------------------

    async def ledger(self, request: Request) -> Response:
        """The current plan as the standard task ledger (.xlsx), which imports back unchanged."""
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        found = await self.service.threads.run(self._ledger, await self.dashboard._viewer(request))
        if found is None:
            return await self.dashboard.ui.missing(request, "还没有导入方案:请先在“导入方案”页上传责任分解方案。")
        name, data = found
        return Response(
            data,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        )

    def _ledger(self, viewer: int | None) -> tuple[str, bytes] | None:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            if plan is None:
                return None
            return ledger_file_name(plan), ledger_workbook(session, plan)

    # --- the current plan's groups -----------------------------------------------

    async def define(self, request: Request) -> Response:
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return refused
        info = await self.dashboard.ui.session(request)
        viewer = await self.dashboard._viewer(request)
        phrase = str(form.get("phrase") or "")
        try:
            done = await self.service.threads.run(
                self._define, viewer, phrase, _units(form.get("members")), self.dashboard._actor(info)
            )
        except CorrectionError as exc:
            return self._back(None, f"无法定义群体:{exc}", "warn")
        if done is None:
            return self._back(None, "还没有导入方案。", "warn")
        return self._back(
            None,
            f"已定义“{done.phrase}”:{len(done.members)} 个单位,涉及 {len(done.tasks)} 项任务,"
            f"新增分工 {done.added} 条,停用 {done.removed} 条(已记录的进展保留)。",
        )

    def _define(self, viewer: int | None, phrase: str, members: list[str], actor: str) -> Any:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            if plan is None:
                return None
            return define_group(session, self.settings, plan, phrase, members, now=self._now(), actor=actor)
