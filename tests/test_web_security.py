"""The web server under attack and bad luck: sign-in limits, sessions, headers, redirects, housekeeping.

The real Starlette app of the service, driven in-process through httpx's ASGI
transport (which lets a test choose the client's address) on a manual clock.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.service import Service, build_service
from bot.web import build_web_app
from core.clock import ManualClock
from core.config import PersonRole, load_settings
from core.runtime import initialise
from storage.models import OutboxMessage, WebSession
from tests.conftest import local
from tests.support import invite, say

pytestmark = pytest.mark.asyncio

SECRET = "correct horse battery staple"
OFFICE_USER = 900


@dataclass
class Web:
    service: Service
    clock: ManualClock
    client: Callable[..., httpx.AsyncClient]

    def codes_to(self, user: int) -> list[str]:
        with self.service.runtime.transaction() as session:
            rows = session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "login", OutboxMessage.chat_id == str(user))
            ).all()
            return [m.group(1) for row in rows if (m := re.search(r"(\d{6})", row.payload["text"]))]

    def session_rows(self) -> int:
        with self.service.runtime.transaction() as session:
            return session.scalar(select(func.count()).select_from(WebSession)) or 0


async def start(tmp_path: Path, db_backend: str, **environ: str) -> Web:
    settings = load_settings(
        environ={
            "DUBAN_DATABASE_URL": db_backend,
            "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
            "DUBAN_SERVICE_DATA_DIR": str(tmp_path),
            "DUBAN_WEB_DASHBOARD_SECRET": SECRET,
            **environ,
        }
    )
    clock = ManualClock(local(2024, 2, 22, 10))
    service = build_service(settings, clock=clock)
    initialise(service.runtime)
    app = build_web_app(service)

    def client(address: str = "203.0.113.7", base_url: str = "https://duban.example") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url=base_url)

    return Web(service, clock, client)


@pytest_asyncio.fixture
async def web(tmp_path: Path, db_backend: str) -> AsyncIterator[Web]:
    """A dashboard open to the network (sign-in required) with one bound office person."""
    running = await start(tmp_path, db_backend, DUBAN_WEB_HOST="0.0.0.0")
    say(
        running.service.conversation,
        OFFICE_USER,
        f"/start {invite(running.service.runtime, '县政府政务督查室', PersonRole.OFFICE)}",
    )
    yield running
    running.service.threads.close()
    running.service.runtime.close()


async def csrf(client: httpx.AsyncClient, path: str = "/office/login") -> str:
    page = await client.get(path)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None, page.text[:300]
    return match.group(1)


async def ask_code(client: httpx.AsyncClient, who: str = str(OFFICE_USER)) -> httpx.Response:
    return await client.post("/office/login/code", data={"csrf": await csrf(client), "who": who})


async def guess(client: httpx.AsyncClient, code: str) -> str:
    answer = await client.post("/office/login/verify", data={"csrf": await csrf(client), "code": code})
    assert answer.status_code == 303
    return answer.headers["location"]


async def try_secret(client: httpx.AsyncClient, secret: str) -> str:
    answer = await client.post("/office/login/secret", data={"csrf": await csrf(client), "secret": secret})
    assert answer.status_code == 303
    return answer.headers["location"]


# --- sign-in codes ------------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_asking_again_resends_the_one_live_code(web: Web) -> None:
    async with web.client() as browser:
        await ask_code(browser)
        await ask_code(browser)
    codes = web.codes_to(OFFICE_USER)
    assert len(codes) == 2 and codes[0] == codes[1]


async def test_codes_sent_to_a_person_are_limited_per_hour(web: Web) -> None:
    for _ in range(8):  # a fresh browser each time: the person's own limit holds
        async with web.client(address=f"198.51.100.{len(web.codes_to(OFFICE_USER)) + 1}") as browser:
            await ask_code(browser)
    assert len(web.codes_to(OFFICE_USER)) == web.service.settings.web.codes_per_hour
    web.clock.advance(timedelta(hours=1, minutes=1))
    async with web.client() as browser:
        await ask_code(browser)
    assert len(web.codes_to(OFFICE_USER)) == web.service.settings.web.codes_per_hour + 1


async def test_codes_asked_by_one_browser_are_limited_per_hour(web: Web) -> None:
    other = 901
    say(web.service.conversation, other, f"/start {invite(web.service.runtime, '县政府政务督查室', PersonRole.OFFICE)}")
    async with web.client() as browser:
        for who in (OFFICE_USER, other) * 4:
            await ask_code(browser, str(who))
    assert len(web.codes_to(OFFICE_USER)) + len(web.codes_to(other)) == web.service.settings.web.codes_per_hour


async def test_a_name_that_means_nobody_stores_nothing(web: Web) -> None:
    async with web.client() as browser:
        answer = await ask_code(browser, "nobody")
    assert answer.headers["location"] == "/office/login?notice=code-sent"  # the same answer: nothing revealed
    assert web.session_rows() == 0


async def test_a_guess_is_checked_only_against_the_code_of_its_own_session(web: Web) -> None:
    async with web.client() as asker:
        await ask_code(asker)
    (code,) = web.codes_to(OFFICE_USER)
    async with web.client() as other:
        assert await guess(other, code) == "/office/login?notice=bad-code"


async def test_the_right_code_signs_in_once(web: Web) -> None:
    async with web.client() as browser:
        await ask_code(browser)
        (code,) = web.codes_to(OFFICE_USER)
        assert await guess(browser, code) == "/office"
        assert (await browser.get("/office")).status_code == 200


@pytest.mark.both_databases
async def test_code_brute_force_is_locked_out_after_the_limit(web: Web) -> None:
    limit = web.service.settings.web.attempts_per_session
    async with web.client() as browser:
        await ask_code(browser)
        (code,) = web.codes_to(OFFICE_USER)
        wrong = [f"{n:06d}" for n in range(1000) if f"{n:06d}" != code]
        answers = [await guess(browser, w) for w in wrong[:limit]]
        assert answers[:-1] == ["/office/login?notice=bad-code"] * (limit - 1)
        assert answers[-1].startswith("/office/login?notice=locked&until=10:01")
        # While locked out even the right code is not looked at.
        assert (await guess(browser, code)).startswith("/office/login?notice=locked")
        web.clock.advance(timedelta(minutes=1, seconds=1))
        # The code itself took the wrong guesses too: it is used up, a new one has to be asked for.
        assert await guess(browser, code) == "/office/login?notice=bad-code"
        for w in wrong[limit : 2 * limit - 2]:
            await guess(browser, w)
        # The second lockout is twice as long.
        assert (await guess(browser, wrong[2 * limit])).startswith("/office/login?notice=locked&until=10:03")
        assert (await browser.get("/office")).headers["location"] == "/office/login"


@pytest.mark.both_databases
async def test_a_client_address_is_locked_out_across_fresh_sessions(web: Web) -> None:
    limit = web.service.settings.web.attempts_per_address
    answers = []
    for _ in range(limit):
        async with web.client(address="192.0.2.66") as fresh:  # a new cookie every time
            answers.append(await try_secret(fresh, "not the secret at all"))
    assert answers[-2] == "/office/login?notice=bad-secret"
    assert answers[-1].startswith("/office/login?notice=locked")
    async with web.client(address="192.0.2.66") as fresh:
        assert (await try_secret(fresh, SECRET)).startswith("/office/login?notice=locked")
    async with web.client(address="192.0.2.67") as elsewhere:
        assert await try_secret(elsewhere, SECRET) == "/office"


async def test_the_dashboard_secret_has_the_same_attempt_limits(web: Web) -> None:
    async with web.client() as browser:
        for _ in range(web.service.settings.web.attempts_per_session - 1):
            assert await try_secret(browser, "guess") == "/office/login?notice=bad-secret"
        assert (await try_secret(browser, "guess")).startswith("/office/login?notice=locked")
        assert (await try_secret(browser, SECRET)).startswith("/office/login?notice=locked")


async def test_a_login_code_does_not_stay_in_the_outbox_once_sent(web: Web) -> None:
    async with web.client() as browser:
        await ask_code(browser)
    await web.service.sender.drain(timeout=10)
    with web.service.runtime.transaction() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "login")).one()
        assert row.state == "sent"
        assert not re.search(r"\d{6}", row.payload["text"])


# --- sessions -----------------------------------------------------------------------------------


async def test_logout_revokes_the_session_on_the_server(web: Web) -> None:
    async with web.client() as browser:
        assert await try_secret(browser, SECRET) == "/office"
        stolen = dict(browser.cookies)
        logout = await browser.post("/office/logout", data={"csrf": await csrf(browser, "/office")})
        assert logout.status_code == 303
    async with web.client() as thief:
        thief.cookies.update(stolen)
        assert (await thief.get("/office")).headers["location"] == "/office/login"


async def test_a_cookie_less_request_creates_no_session_row(web: Web) -> None:
    for _ in range(20):
        async with web.client() as stranger:
            await stranger.get("/office/login")
            await stranger.get("/office")
    assert web.session_rows() == 0


async def test_a_browser_keeps_its_csrf_token_without_a_stored_session(web: Web) -> None:
    async with web.client() as browser:
        first = await csrf(browser)
        assert await csrf(browser) == first
        assert await try_secret(browser, SECRET) == "/office"  # the form was accepted with it


# --- headers and redirects ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def loopback(tmp_path: Path, db_backend: str) -> AsyncIterator[Web]:
    """The dashboard and sandbox on this machine, no sign-in (no chat platform configured)."""
    running = await start(tmp_path, db_backend, DUBAN_WEB_TRUSTED_PROXIES="127.0.0.1")
    yield running
    running.service.threads.close()
    running.service.runtime.close()


async def test_back_leads_only_to_a_path_on_this_site(loopback: Web) -> None:
    async with loopback.client("127.0.0.1", "http://127.0.0.1:8080") as browser:
        token = await csrf(browser, "/office")
        for back, expected in [
            ("https://evil.example/x", "/office?"),
            ("//evil.example", "/office?"),
            ("/\\evil.example", "/office?"),
            ("javascript:alert(1)", "/office?"),
            ("/office/checkpoints", "/office/checkpoints?"),
        ]:
            answer = await browser.post("/office/urge", data={"csrf": token, "target": "县发改局", "back": back})
            assert answer.headers["location"].startswith(expected), back


async def test_every_response_carries_the_security_headers(loopback: Web) -> None:
    async with loopback.client("127.0.0.1", "http://127.0.0.1:8080") as browser:
        for path in ("/office", "/office/login", "/healthz", "/static/duban.css", "/no-such-page", "/"):
            headers = (await browser.get(path)).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert headers["x-frame-options"] == "DENY", path
            assert headers["x-content-type-options"] == "nosniff", path


async def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(loopback: Web) -> None:
    async with loopback.client("127.0.0.1", "http://127.0.0.1:8080") as via_proxy:
        cookie = (await via_proxy.get("/office", headers={"X-Forwarded-Proto": "https"})).headers["set-cookie"]
        assert "secure" in cookie.lower()
    async with loopback.client("127.0.0.1", "http://127.0.0.1:8080") as plain:
        assert "secure" not in (await plain.get("/office")).headers["set-cookie"].lower()


async def test_x_forwarded_proto_from_anyone_else_is_not_believed(loopback: Web) -> None:
    async with loopback.client("127.0.0.2", "http://127.0.0.1:8080") as untrusted:
        cookie = (await untrusted.get("/office", headers={"X-Forwarded-Proto": "https"})).headers["set-cookie"]
        assert "secure" not in cookie.lower()


async def test_a_foreign_host_name_is_refused_without_sign_in(loopback: Web) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 must not reach the open sandbox and dashboard."""
    async with loopback.client("127.0.0.1", "http://evil.example:8080") as rebound:
        assert (await rebound.get("/")).status_code == 421
        assert (await rebound.get("/office")).status_code == 421
    for name in ("http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"):
        async with loopback.client("127.0.0.1", name) as local_browser:
            assert (await local_browser.get("/office")).status_code == 200, name


async def test_an_invite_code_is_not_put_in_a_url(loopback: Web) -> None:
    async with loopback.client("127.0.0.1", "http://127.0.0.1:8080") as browser:
        token = await csrf(browser, "/office/people")
        answer = await browser.post("/office/invite", data={"csrf": token, "unit": "县发改局", "role": "liaison"})
    assert answer.status_code == 200 and "location" not in answer.headers
    code = re.search(r"<code[^>]*>([A-HJKMNP-Z2-9]{10})</code>", answer.text)
    assert code is not None
    assert f'data-copy="{code.group(1)}"' in answer.text and f"绑定 {code.group(1)}" in answer.text


async def test_an_export_of_an_unknown_round_leaves_no_folder(loopback: Web, tmp_path: Path) -> None:
    async with loopback.client("127.0.0.1", "http://127.0.0.1:8080") as browser:
        for _ in range(3):
            assert (await browser.get("/office/export/nosuch.xlsx")).status_code == 404
    exports = tmp_path / "exports"
    assert not exports.exists() or not any(exports.iterdir())


# --- several counties ------------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_code_sign_in_finds_another_countys_office_and_shows_its_county(web: Web, bundled_text: str) -> None:
    from core.binding import invite as county_invite
    from core.plan_import import import_plan
    from storage.models import Plan

    runtime = web.service.runtime
    with runtime.transaction() as session:
        result = import_plan(
            session,
            runtime.settings,
            bundled_text,
            source_name="tongshan.txt",
            jurisdiction_name="通山县",
            now=web.clock.now(),
        )
        plan = session.get(Plan, result.plan_id)
        issued = county_invite(
            session, runtime.settings, "县政府政务督查室", "office", now=web.clock.now(), created_by="test", plan=plan
        )
        assert issued is not None
    say(web.service.conversation, 950, f"/start {issued.code}")
    async with web.client() as browser:
        await ask_code(browser, "950")
        (code,) = web.codes_to(950)
        assert await guess(browser, code) == "/office"
        page = await browser.get("/office")
    heading = re.search(r"<h1>(.*?)<small", page.text)
    assert heading is not None and heading.group(1).startswith("通山县")


# --- housekeeping -----------------------------------------------------------------------------------


def count_rows(web: Web, model: type) -> int:
    with web.service.runtime.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.both_databases
async def test_housekeeping_expires_sessions_codes_inbound_updates_and_export_folders(web: Web, tmp_path: Path) -> None:
    import os

    from core.office import export_folder
    from jobs.ticks import expire_bookkeeping
    from storage.models import InboundUpdate, LoginCode, SignInLimit

    async with web.client() as browser:
        await ask_code(browser)
        await guess(browser, "000000")
    async with web.client() as browser:
        assert await try_secret(browser, SECRET) == "/office"
    exports = export_folder(web.service.settings)
    old, fresh = exports / "0ld0ld00", exports / "fresh000"
    for folder, age in ((old, timedelta(days=8)), (fresh, timedelta(0))):
        folder.mkdir(parents=True)
        (folder / "通报.xlsx").write_bytes(b"x")
        stamp = (web.clock.now() - age).timestamp()
        os.utime(folder, (stamp, stamp))
    runtime = web.service.runtime
    tables = (WebSession, LoginCode, SignInLimit, InboundUpdate)
    before = {model: count_rows(web, model) for model in tables}
    assert all(before.values()), before

    kept = expire_bookkeeping(runtime, exports, web.clock.now())
    assert (kept.sessions, kept.login_codes, kept.inbound_updates) == (0, 0, 0)
    assert kept.export_folders == 1 and not old.exists() and fresh.exists()

    web.clock.advance(web.service.settings.web.retention + timedelta(hours=1))
    expire_bookkeeping(runtime, exports, web.clock.now())
    assert {model: count_rows(web, model) for model in tables} == dict.fromkeys(tables, 0)


async def test_the_outbox_page_does_not_show_a_sign_in_code_waiting_to_go_out(web: Web) -> None:
    async with web.client() as asker:
        await ask_code(asker)
    (code,) = web.codes_to(OFFICE_USER)
    async with web.client(address="198.51.100.99") as colleague:
        assert await try_secret(colleague, SECRET) == "/office"
        page = await colleague.get("/office/outbox")
    assert page.status_code == 200 and code not in page.text
