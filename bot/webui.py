"""Pages of the web server: templates, sessions, CSRF and the office sign-in.

Every browser gets a session (a random token in an HttpOnly cookie, only its
hash stored) carrying a CSRF token that every form must echo.  The office
dashboard needs a signed-in session whenever a chat platform is configured or
the server listens beyond loopback: sign-in is the configured secret, or a
one-time code the bot sends to an office-role person.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from core.outbox import Message, enqueue
from core.runtime import current_plan
from messages import TEMPLATES
from storage.models import LoginCode, WebSession
from storage.queries import identities_with_role

if TYPE_CHECKING:
    from bot.service import Service

SESSION_COOKIE = "duban_session"
ANONYMOUS_TTL = timedelta(days=1)
CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def filesize(size: int | None) -> str:
    """A byte count as people read it: 812 B, 14.2 KB, 3.1 MB."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    if size < 1 << 20:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1 << 20):.1f} MB"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class SessionInfo:
    id: int
    csrf: str
    signed_in: bool
    person_id: int | None
    how: str
    new_token: str | None = None  # set when the cookie must be (re)issued


class WebUI:
    """Renders pages and guards forms; shared by the sandbox and the dashboard."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings
        messages = service.messages
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES / "web")),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
        )
        self.env.filters["local"] = messages.local
        self.env.filters["md"] = messages.month_day
        self.env.filters["ymd"] = messages.ymd
        self.env.filters["filesize"] = filesize
        self.env.globals["label"] = messages.label

    @property
    def platform_configured(self) -> bool:
        return self.settings.telegram.enabled or self.settings.wecom.enabled

    @property
    def sign_in_required(self) -> bool:
        return self.platform_configured or not is_loopback(self.settings.web.host)

    @property
    def sandbox_enabled(self) -> bool:
        """Never beyond loopback; by default only while no real chat platform is configured."""
        mode = self.settings.web.sandbox
        if mode == "off" or not is_loopback(self.settings.web.host):
            return False
        return mode == "on" or not self.platform_configured

    # --- sessions ------------------------------------------------------------

    async def session(self, request: Request) -> SessionInfo:
        if "duban_session_info" in request.scope:
            return request.scope["duban_session_info"]
        info = await self.service.threads.run(self._load_or_create, request.cookies.get(SESSION_COOKIE, ""))
        request.scope["duban_session_info"] = info
        return info

    def _load_or_create(self, token: str) -> SessionInfo:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            row = session.scalar(select(WebSession).where(WebSession.token_hash == _hash(token))) if token else None
            if row is not None and row.expires_at > now:
                return SessionInfo(row.id, row.csrf_token, row.signed_in, row.person_id, row.how)
            fresh = secrets.token_urlsafe(32)
            row = WebSession(
                token_hash=_hash(fresh),
                csrf_token=secrets.token_urlsafe(24),
                created_at=now,
                expires_at=now + ANONYMOUS_TTL,
            )
            session.add(row)
            session.flush()
            return SessionInfo(row.id, row.csrf_token, False, None, "", new_token=fresh)

    def _sign_in(self, session_id: int, person_id: int | None, how: str) -> str:
        """Mark the browser signed in under a new token (no session fixation); returns the token."""
        now = self.service.runtime.clock.now()
        fresh = secrets.token_urlsafe(32)
        with self.service.runtime.transaction() as session:
            old = session.get(WebSession, session_id)
            if old is not None:
                old.expires_at = now
            session.add(
                WebSession(
                    token_hash=_hash(fresh),
                    csrf_token=secrets.token_urlsafe(24),
                    person_id=person_id,
                    signed_in=True,
                    how=how,
                    created_at=now,
                    expires_at=now + self.settings.web.session_ttl,
                )
            )
        return fresh

    def _set_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="lax", secure=not is_loopback(self.settings.web.host)
        )

    async def csrf_ok(self, request: Request, form: FormData) -> bool:
        info = await self.session(request)
        sent = str(form.get("csrf") or request.headers.get("X-CSRF-Token") or "")
        return bool(sent) and info.new_token is None and hmac.compare_digest(sent, info.csrf)

    async def page(self, request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        info = await self.session(request)
        html = self.env.get_template(template).render(
            csrf=info.csrf,
            signed_in=info.signed_in or not self.sign_in_required,
            sign_in_required=self.sign_in_required,
            sandbox=self.sandbox_enabled,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if info.new_token:
            self._set_cookie(response, info.new_token)
        return response

    async def office_allowed(self, request: Request) -> bool:
        if not self.sign_in_required:
            return True
        return (await self.session(request)).signed_in

    # --- sign-in -------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return await self.page(
            request,
            "login.html.j2",
            secret_configured=bool(
                self.settings.web.dashboard_secret and self.settings.web.dashboard_secret.get_secret_value()
            ),
            notice=request.query_params.get("notice", ""),
        )

    async def login_secret(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return PlainTextResponse("forbidden", status_code=403)
        secret = self.settings.web.dashboard_secret
        given = str(form.get("secret") or "")
        if (
            secret is None
            or not secret.get_secret_value()
            or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode())
        ):
            await asyncio.sleep(0.5)  # slow down guessing
            return RedirectResponse("/office/login?notice=bad-secret", status_code=303)
        info = await self.session(request)
        token = await self.service.threads.run(self._sign_in, info.id, None, "secret")
        response = RedirectResponse("/office", status_code=303)
        self._set_cookie(response, token)
        return response

    async def login_send_code(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return PlainTextResponse("forbidden", status_code=403)
        who = str(form.get("who") or "").strip().lstrip("@")[:100]
        info = await self.session(request)
        await self.service.threads.run(self._send_code, info.id, who)
        self.service.sender.wake()
        # The same answer whether or not the name matched: it does not reveal who is office staff.
        return RedirectResponse("/office/login?notice=code-sent", status_code=303)

    def _send_code(self, session_id: int, who: str) -> None:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            plan = current_plan(session, self.settings)
            if plan is None or not who:
                return
            matches = [
                identity
                for _, identity in identities_with_role(session, plan.jurisdiction_id, "office")
                if who in (identity.username, identity.external_id)
            ]
            if not matches:
                return
            code = f"{secrets.randbelow(10**6):06d}"
            session.add(
                LoginCode(
                    code_hash=_hash(f"{session_id}:{code}"),
                    person_id=matches[0].person_id,
                    session_id=session_id,
                    created_at=now,
                    expires_at=now + CODE_TTL,
                )
            )
            text = self.service.messages.render("login_code", code=code, minutes=int(CODE_TTL.total_seconds() // 60))
            for identity in matches:
                enqueue(
                    session,
                    platform=identity.platform,
                    chat_id=identity.chat_id,
                    kind="login",
                    dedup_key=f"login:{session_id}:{identity.id}:{now.timestamp()}",
                    message=Message(text=text),
                    now=now,
                    person_id=identity.person_id,
                )

    async def login_verify_code(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return PlainTextResponse("forbidden", status_code=403)
        info = await self.session(request)
        person_id = await self.service.threads.run(self._check_code, info.id, str(form.get("code") or "").strip())
        if person_id is None:
            await asyncio.sleep(0.5)
            return RedirectResponse("/office/login?notice=bad-code", status_code=303)
        token = await self.service.threads.run(self._sign_in, info.id, person_id, "code")
        response = RedirectResponse("/office", status_code=303)
        self._set_cookie(response, token)
        return response

    def _check_code(self, session_id: int, code: str) -> int | None:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            pending = session.scalars(
                select(LoginCode).where(
                    LoginCode.session_id == session_id, LoginCode.used_at.is_(None), LoginCode.expires_at > now
                )
            ).all()
            for row in pending:
                row.attempts += 1
                if row.attempts <= CODE_ATTEMPTS and hmac.compare_digest(row.code_hash, _hash(f"{session_id}:{code}")):
                    row.used_at = now
                    return row.person_id
            return None

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return PlainTextResponse("forbidden", status_code=403)
        response = RedirectResponse("/office/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response
