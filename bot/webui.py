"""Pages of the web server: templates, sessions, CSRF and the office sign-in.

Every browser gets a session (a random token in an HttpOnly cookie, only its
hash stored) carrying a CSRF token that every form must echo.  The office
dashboard needs a signed-in session whenever a chat platform is configured or
the server listens beyond loopback: sign-in is the configured secret, or a
one-time code the bot sends to an office-role person.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from core.sign_in import (
    CODE_TTL,
    Guesser,
    check_code,
    locked_until,
    office_identities,
    record_failure,
    record_success,
    send_code,
)
from messages import TEMPLATES
from storage.models import WebSession

if TYPE_CHECKING:
    from bot.service import Service

SESSION_COOKIE = "duban_session"
NOTICE_UNTIL = re.compile(r"^\d{2}:\d{2}$")


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


def _anonymous_csrf(token: str) -> str:
    """The CSRF token of a browser that has a cookie but no session row (nothing stored for it)."""
    return _hash(f"csrf:{token}")[:43]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A form whose CSRF token does not match: almost always a page left open past its session.
FORM_EXPIRED = "页面已过期或来源无法核实,操作未执行。请返回上一页,刷新后重新提交。"


@dataclass
class SessionInfo:
    """The browser's session: ``id`` is None until something has to be stored for it."""

    id: int | None
    token_hash: str
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

    # --- requests ------------------------------------------------------------

    def _from_trusted_proxy(self, request: Request) -> bool:
        peer = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n, strict=False) for n in self.settings.web.trusted_proxies)

    def client_address(self, request: Request) -> str:
        """The browser's address: the peer, or the last hop a trusted proxy added to X-Forwarded-For."""
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded and self._from_trusted_proxy(request):
            return forwarded.split(",")[-1].strip()[:64] or peer
        return peer

    def is_https(self, request: Request) -> bool:
        """Whether the browser reached us over HTTPS (directly, or as a trusted proxy says)."""
        if request.url.scheme == "https":
            return True
        proto = request.headers.get("X-Forwarded-Proto", "")
        return proto.split(",")[0].strip().lower() == "https" and self._from_trusted_proxy(request)

    # --- sessions ------------------------------------------------------------

    async def session(self, request: Request) -> SessionInfo:
        if "duban_session_info" in request.scope:
            return request.scope["duban_session_info"]
        info = await self.service.threads.run(self._load, request.cookies.get(SESSION_COOKIE, ""))
        request.scope["duban_session_info"] = info
        return info

    def _load(self, token: str) -> SessionInfo:
        """The session a cookie names; a browser without one gets a token, but no row until one is needed."""
        now = self.service.runtime.clock.now()
        if token and len(token) <= 100:
            with self.service.runtime.transaction() as session:
                row = session.scalar(select(WebSession).where(WebSession.token_hash == _hash(token)))
                if row is not None and row.expires_at > now:
                    return SessionInfo(row.id, row.token_hash, row.csrf_token, row.signed_in, row.person_id, row.how)
            if row is None:  # a token we issued but never had to store
                return SessionInfo(None, _hash(token), _anonymous_csrf(token), False, None, "")
        fresh = secrets.token_urlsafe(32)
        return SessionInfo(None, _hash(fresh), _anonymous_csrf(fresh), False, None, "", new_token=fresh)

    def _stored(self, session: Any, info: SessionInfo) -> int:
        """The session's row, stored now if it was not (a sign-in code has to name it)."""
        if info.id is not None:
            return info.id
        now = self.service.runtime.clock.now()
        row = WebSession(
            token_hash=info.token_hash,
            csrf_token=info.csrf,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
        session.add(row)
        session.flush()
        return row.id

    def _sign_in(self, info: SessionInfo, person_id: int | None, how: str) -> str:
        """Mark the browser signed in under a new token (no session fixation); returns the token."""
        now = self.service.runtime.clock.now()
        fresh = secrets.token_urlsafe(32)
        with self.service.runtime.transaction() as session:
            if info.id is not None and (old := session.get(WebSession, info.id)) is not None:
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

    def _set_cookie(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=self.is_https(request) or not is_loopback(self.settings.web.host),
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
            self._set_cookie(request, response, info.new_token)
        return response

    async def missing(self, request: Request, message: str) -> HTMLResponse:
        """The styled 404 page, saying in a sentence what was not found (a round, a file, the plan)."""
        return await self.refused(request, message, status=404)

    async def refused(self, request: Request, message: str, *, status: int) -> HTMLResponse:
        """A styled page in Chinese for a request that cannot be done (400, 403, 404), saying why."""
        return await self.page(request, "error.html.j2", status_code=status, status=status, message=message)

    async def office_allowed(self, request: Request) -> bool:
        if not self.sign_in_required:
            return True
        return (await self.session(request)).signed_in

    # --- sign-in -------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        until = request.query_params.get("until", "")
        return await self.page(
            request,
            "login.html.j2",
            secret_configured=bool(
                self.settings.web.dashboard_secret and self.settings.web.dashboard_secret.get_secret_value()
            ),
            notice=request.query_params.get("notice", ""),
            until=until if NOTICE_UNTIL.match(until) else "",
            codes_per_hour=self.settings.web.codes_per_hour,
        )

    async def _guesser(self, request: Request) -> Guesser:
        return Guesser((await self.session(request)).token_hash, self.client_address(request))

    def _locked(self, until: datetime) -> Response:
        local = until.astimezone(self.settings.tz).strftime("%H:%M")
        return RedirectResponse(f"/office/login?notice=locked&until={local}", status_code=303)

    def _attempt(self, guesser: Guesser, check: Callable[[Any], int | bool | None]) -> tuple[Any, datetime | None]:
        """Run one guess unless locked out: (what ``check`` found, or None; the lockout, if any)."""
        limits = self.settings.web
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            until = locked_until(session, guesser, limits, now)
            if until is not None:
                return None, until
            found = check(session)
            if found is None or found is False:
                return None, record_failure(session, guesser, limits, now)
            record_success(session, guesser, limits, now)
            return found, None

    async def login_secret(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return await self.refused(request, FORM_EXPIRED, status=403)
        secret = self.settings.web.dashboard_secret
        given = str(form.get("secret") or "")

        def check(_session: Any) -> bool:
            return (
                secret is not None
                and bool(secret.get_secret_value())
                and hmac.compare_digest(given.encode(), secret.get_secret_value().encode())
            )

        right, until = await self.service.threads.run(self._attempt, await self._guesser(request), check)
        if until is not None:
            return self._locked(until)
        if not right:
            return RedirectResponse("/office/login?notice=bad-secret", status_code=303)
        token = await self.service.threads.run(self._sign_in, await self.session(request), None, "secret")
        response = RedirectResponse("/office", status_code=303)
        self._set_cookie(request, response, token)
        return response

    async def login_send_code(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return await self.refused(request, FORM_EXPIRED, status=403)
        who = str(form.get("who") or "").strip()[:100]
        info = await self.session(request)
        await self.service.threads.run(self._send_code, info, who, self.client_address(request))
        self.service.sender.wake()
        # The same answer whether or not the name matched: it does not reveal who is office staff.
        return RedirectResponse("/office/login?notice=code-sent", status_code=303)

    def _send_code(self, info: SessionInfo, who: str, address: str) -> bool:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            if not office_identities(session, who):
                return False  # no row stored for a name that means nobody
            return send_code(
                session,
                self.service.messages,
                self.settings.web,
                who=who,
                web_session_id=self._stored(session, info),
                session_key=info.token_hash,
                address=address,
                now=now,
            )

    async def login_verify_code(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return await self.refused(request, FORM_EXPIRED, status=403)
        info = await self.session(request)
        code = str(form.get("code") or "").strip()[:12]
        now = self.service.runtime.clock.now()
        person_id, until = await self.service.threads.run(
            self._attempt, await self._guesser(request), lambda session: check_code(session, info.id, code, now)
        )
        if until is not None:
            return self._locked(until)
        if person_id is None:
            return RedirectResponse("/office/login?notice=bad-code", status_code=303)
        token = await self.service.threads.run(self._sign_in, info, person_id, "code")
        response = RedirectResponse("/office", status_code=303)
        self._set_cookie(request, response, token)
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if not await self.csrf_ok(request, form):
            return await self.refused(request, FORM_EXPIRED, status=403)
        info = await self.session(request)
        if info.id is not None:
            await self.service.threads.run(self._revoke, info.id)
        response = RedirectResponse("/office/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    def _revoke(self, session_id: int) -> None:
        """The session ends on the server too: its token no longer signs anyone in."""
        with self.service.runtime.transaction() as session:
            row = session.get(WebSession, session_id)
            if row is not None:
                row.expires_at = self.service.runtime.clock.now()
                row.signed_in = False
