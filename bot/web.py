"""The one web server: health, the Telegram webhook, the WeCom callback, the sandbox and the dashboard.

Built by :func:`build_web_app` from the assembled service; each platform
mounts its routes only when it is configured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.body_limits import BodyLimit
from bot.telegram_adapter import received_update, verify_webhook_secret
from core.config import Settings
from messages import TEMPLATES

if TYPE_CHECKING:
    from bot.service import Service
    from bot.webui import WebUI

log = logging.getLogger("duban.web")
# Every response: scripts and styles only from here (the templates use style attributes), no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def loopback_host(host_header: str) -> bool:
    """Whether a Host header names this machine (``localhost``, ``127.0.0.1:8080``, ``[::1]``)."""
    from bot.webui import is_loopback

    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return is_loopback(name)


class ResponseGuard:
    """Adds the security headers to every response; when pages are open without sign-in (the sandbox,
    a loopback dashboard) refuses a Host that is not this machine, so a DNS-rebinding page cannot reach them."""

    def __init__(self, app: ASGIApp, *, check_host: bool, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.check_host = check_host
        self.exempt = exempt  # the platforms' callbacks: they carry their own secrets and come via a proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        host = Headers(scope=scope).get("host", "")
        if self.check_host and scope["path"] not in self.exempt and not loopback_host(host):
            await PlainTextResponse("unknown host", status_code=421)(scope, receive, send_guarded)
            return
        await self.app(scope, receive, send_guarded)


def build_web_app(service: Service) -> Starlette:
    from bot.dashboard import Dashboard
    from bot.records import RecordPages
    from bot.sandbox import SandboxRoutes
    from bot.webui import WebUI

    settings = service.settings
    ui = WebUI(service)
    office = Dashboard(service, ui)
    records = RecordPages(office)
    routes: list[Any] = [
        Route("/healthz", _health(service), methods=["GET"]),
        Route("/metrics", _metrics(service), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(TEMPLATES / "web" / "static")), name="static"),
        Route("/office", office.overview, methods=["GET"]),
        Route("/office/checkpoints", office.checkpoints, methods=["GET"]),
        Route("/office/checkpoint/{key}", office.checkpoint, methods=["GET"]),
        Route("/office/export/{name}", office.export, methods=["GET"]),
        Route("/office/report/{report_id:int}", records.report, methods=["GET"]),
        Route("/office/unit/{name}", records.unit, methods=["GET"]),
        Route("/office/task/{ref}", records.task, methods=["GET"]),
        Route("/office/file/{attachment_id:int}", records.file, methods=["GET"]),
        Route("/office/files/{key}.zip", records.archive, methods=["GET"]),
        Route("/office/people", office.people, methods=["GET"]),
        Route("/office/outbox", office.outbox, methods=["GET"]),
        Route("/office/outbox/resend", office.outboxes.do_resend, methods=["POST"]),
        Route("/office/urge", office.do_urge, methods=["POST"]),
        Route("/office/review", office.do_review, methods=["POST"]),
        Route("/office/round", office.do_round, methods=["POST"]),
        Route("/office/checkpoint/{key}/{action:str}", office.do_round_change, methods=["POST"]),
        Route("/office/invite", office.do_invite, methods=["POST"]),
        Route("/office/import", office.imports.page, methods=["GET"]),
        Route("/office/import", office.imports.upload, methods=["POST"]),
        Route("/office/import/{stage}/correct", office.imports.correct, methods=["POST"]),
        Route("/office/import/{stage}/confirm", office.imports.confirm, methods=["POST"]),
        Route("/office/import/{stage}/discard", office.imports.discard, methods=["POST"]),
        Route("/office/groups", office.imports.define, methods=["POST"]),
        Route("/office/plan.xlsx", office.imports.ledger, methods=["GET"]),
        Route("/office/targets", office.targets.page, methods=["GET"]),
        Route("/office/targets/change", office.targets.change_target, methods=["POST"]),
        Route("/office/milestones/add", office.targets.add_milestones, methods=["POST"]),
        Route("/office/milestones/change", office.targets.change_milestone, methods=["POST"]),
        Route("/office/login", ui.login_page, methods=["GET"]),
        Route("/office/login/secret", ui.login_secret, methods=["POST"]),
        Route("/office/login/code", ui.login_send_code, methods=["POST"]),
        Route("/office/login/verify", ui.login_verify_code, methods=["POST"]),
        Route("/office/logout", ui.logout, methods=["POST"]),
    ]
    if ui.sandbox_enabled and service.sandbox_hub is not None:
        # Only on loopback: choosing a unit without a code is for trying the bot on one's own machine.
        chat = SandboxRoutes(service, service.sandbox_hub, ui)
        routes += [
            Route("/", chat.home, methods=["GET"]),
            Route("/chat", chat.chat, methods=["GET"]),
            Route("/sandbox/join", chat.join, methods=["POST"]),
            Route("/sandbox/leave", chat.leave, methods=["POST"]),
            Route("/sandbox/send", chat.send, methods=["POST"]),
            Route("/sandbox/press", chat.press, methods=["POST"]),
            Route("/sandbox/events", chat.events, methods=["GET"]),
            Route("/sandbox/fragment/{message_id:int}", chat.fragment, methods=["GET"]),
            Route("/sandbox/fragments", chat.fragments, methods=["GET"]),
            Route("/sandbox/file/{outbox_id:int}", chat.download, methods=["GET"]),
            Route("/sandbox/upload/{file_id}", chat.upload, methods=["GET"]),
        ]
    else:
        routes.append(Route("/", lambda request: RedirectResponse("/office", status_code=303), methods=["GET"]))
    if service.telegram is not None and settings.telegram.mode == "webhook":
        routes.append(Route(settings.telegram.webhook_path, _telegram_webhook(service), methods=["POST"]))
    if service.wecom is not None:
        routes.append(Route(settings.wecom.callback_path, service.wecom.verify_url, methods=["GET"]))
        routes.append(Route(settings.wecom.callback_path, service.wecom.receive, methods=["POST"]))
    # Without sign-in anything that can reach the port may act: only under this machine's own name.
    guard = Middleware(
        ResponseGuard,
        check_host=ui.sandbox_enabled or not ui.sign_in_required,
        exempt=frozenset({settings.telegram.webhook_path, settings.wecom.callback_path}),
    )
    return Starlette(
        routes=routes,
        middleware=[guard, Middleware(BodyLimit, cap_for=body_caps(settings))],
        exception_handlers={404: _error_page(ui, 404), 500: _error_page(ui, 500)},
    )


def _error_page(ui: WebUI, status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A page not found, or a failure of ours, as a page of the dashboard in Chinese (not a bare English line)."""

    async def page(request: Request, _exc: Exception) -> Response:
        html = ui.env.get_template("error.html.j2").render(
            status=status,
            csrf="",
            signed_in=False,
            sign_in_required=True,
            sandbox=ui.sandbox_enabled,
            path=request.url.path,
        )
        return HTMLResponse(html, status_code=status)

    return page


def body_caps(settings: Settings) -> Any:
    """The most bytes a request body may have, by path: each platform's own, uploads, and forms."""
    web = settings.web
    caps = {
        settings.telegram.webhook_path: web.webhook_max_bytes,
        settings.wecom.callback_path: web.callback_max_bytes,
        # a file and the few fields around it
        "/sandbox/send": settings.uploads.max_bytes + web.form_max_bytes,
    }

    def cap_for(path: str) -> int:
        return caps.get(path, web.form_max_bytes)

    return cap_for


def _health(service: Service) -> Any:
    """``/healthz``: 503 only when this process cannot work (no database); a chat platform down is 200 "degraded".

    A load balancer or supervisor restarts what answers 503; restarting us does
    not bring Telegram or WeCom back, and the outbox already retries, so an
    outage is reported in the body instead: ``status`` is ``degraded`` and
    ``failing`` lists each platform whose sends have failed with no success for
    longer than ``[outbox] alert_after`` (the same streak as the
    ``duban_platform_failing_seconds`` metric), with since when and the last error.
    """
    from jobs.sender import platform_health

    platforms = [t.platform for t in service.transports]
    alert_after = service.settings.outbox.alert_after

    async def health(request: Request) -> Response:
        def check() -> list[dict[str, Any]]:
            with service.runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            with service.runtime.sessions() as session:
                streaks = platform_health(session, service.sender.clock.now(), platforms)
            return [
                {
                    "platform": streak.platform,
                    "since": streak.failing_since.isoformat() if streak.failing_since else None,
                    "seconds": round(streak.failing_seconds),
                    "error": (streak.last_error or "")[:200],
                }
                for streak in streaks.values()
                if streak.failing_for_longer_than(alert_after)
            ]

        import asyncio

        try:
            failing = await asyncio.to_thread(check)
        except Exception as exc:  # the point of a health check is to say so
            return JSONResponse({"status": "error", "database": str(exc)}, status_code=503)
        return JSONResponse(
            {
                "status": "degraded" if failing else "ok",
                "platforms": platforms,
                "failing": failing,
                "scheduler": bool(service.metrics.scheduler._value.get()),
                "sending": service.sender.in_flight,
            }
        )

    return health


def _metrics(service: Service) -> Any:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request: Request) -> Response:
        import asyncio

        body = await asyncio.to_thread(generate_latest, service.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def _telegram_webhook(service: Service) -> Any:
    async def webhook(request: Request) -> Response:
        if not verify_webhook_secret(service.settings, request.headers.get("X-Telegram-Bot-Api-Secret-Token")):
            return PlainTextResponse("forbidden", status_code=403)
        body = await request.body()  # its size is capped by BodyLimit
        try:
            received = received_update(json.loads(body))
        except ValueError:
            received = None
        if received is None:  # not JSON, or JSON but not an Update (an array, a string …)
            return PlainTextResponse("bad request", status_code=400)
        try:
            await service.inbox.accept(received)
        except Exception:  # not stored, so not acknowledged: Telegram delivers it again
            log.exception("could not store a Telegram update")
            return PlainTextResponse("busy", status_code=503)
        service.inbox.wake()
        return Response(status_code=200)

    return webhook
