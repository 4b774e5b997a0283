"""Dashboard pages for what units submitted: a report, a unit, a task, their files, and a round's files as one ZIP.

Office only, like every dashboard page (:meth:`Dashboard._guard`); every look-up
is within the signed-in person's county (:mod:`core.records`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from core.office import export_folder
from core.records import (
    report_page,
    round_archive_name,
    round_files,
    stored_file,
    task_page,
    unit_page,
    write_round_archive,
)

if TYPE_CHECKING:
    from bot.dashboard import Dashboard


class RecordPages:
    """The office's drill-down from the overview to one liaison's answer and its files."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.service = dashboard.service
        self.ui = dashboard.ui
        self.m = dashboard.m

    async def _show(self, request: Request, template: str, build: Callable[..., Any], *args: Any) -> Response:
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        viewer = await self.dashboard._viewer(request)
        data = await self.service.threads.run(self._in_plan, build, viewer, *args)
        if data is None:
            return await self.ui.page(request, "office_missing.html.j2", status_code=404, what=template)
        return await self.ui.page(request, template, **data, **self.dashboard._flash(request))

    def _in_plan(self, build: Callable[..., Any], viewer: int | None, *args: Any) -> Any:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            if plan is None:
                return None
            return build(session, self.m, plan, *args)

    async def report(self, request: Request) -> Response:
        return await self._show(request, "office_report.html.j2", report_page, int(request.path_params["report_id"]))

    async def unit(self, request: Request) -> Response:
        return await self._show(request, "office_unit.html.j2", unit_page, request.path_params["name"])

    async def task(self, request: Request) -> Response:
        return await self._show(request, "office_task.html.j2", task_page, request.path_params["ref"])

    async def file(self, request: Request) -> Response:
        """A submitted file, for the office: found only within the viewer's county."""
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        viewer = await self.dashboard._viewer(request)
        found = await self.service.threads.run(self._stored, viewer, int(request.path_params["attachment_id"]))
        if found is None:
            return await self.ui.missing(request, "没有这个文件,或它不属于您所在的地区。")
        return FileResponse(found.path, filename=found.name)

    def _stored(self, viewer: int | None, attachment_id: int) -> Any:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            return stored_file(session, plan, attachment_id) if plan is not None else None

    async def archive(self, request: Request) -> Response:
        """Every file sent for a round, as one ZIP named by unit and task, to archive."""
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        viewer = await self.dashboard._viewer(request)
        path = await self.service.threads.run(self._archive, viewer, request.path_params["key"])
        if path is None:
            return await self.ui.missing(request, "没有这个督查轮次,可能已被撤销,或不属于您所在的地区。")
        return FileResponse(path, filename=path.name)

    def _archive(self, viewer: int | None, key: str) -> Any:
        with self.service.runtime.transaction() as session:
            plan = self.dashboard._plan(session, viewer)
            entries = round_files(session, plan, key) if plan is not None else None
            if entries is None:
                return None
            name = round_archive_name(plan, key)
        folder = export_folder(self.service.settings) / uuid.uuid4().hex[:8]
        return write_round_archive(entries, folder / name)
