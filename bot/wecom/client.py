"""Async clients for the WeCom server API (app messages) and group robot webhooks.

Errors are sorted by what the caller should do about them:

* ``WeComRateLimited`` – back off for ``retry_after`` seconds, then resend (45009/45033).
* ``WeComRetryable`` – transient (system busy after our own retries, 5xx, network); resend later.
* ``WeComPermanent`` – resending the same request will fail again.

* ``WeComRecipientsInvalid`` – 81013: every recipient left or is outside the app's visible range.

The clients never sleep for a rate limit themselves: the caller's outbox owns scheduling.
Duplicate suppression (``enable_duplicate_check``) is asked for only when the caller gives an
interval: WeCom then drops any identical request inside it, which is right for a reminder
resent after an ambiguous failure and wrong for two identical answers a member should both get
(发送应用消息 https://developer.work.weixin.qq.com/document/path/90236).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

__all__ = [
    "RobotClient",
    "SendResult",
    "WeComClient",
    "WeComError",
    "WeComPermanent",
    "WeComRateLimited",
    "WeComRecipientsInvalid",
    "WeComRetryable",
    "download_media",
    "split_markdown",
]

BUSY = -1
TOKEN_ERRORS = frozenset({40014, 42001, 41001})  # invalid, expired, missing access_token
RATE_LIMITS = frozenset({45009, 45033})  # per-interval frequency limit, concurrency limit
RETRYABLE = frozenset({BUSY, 6000})  # system busy; data version conflict
ALL_RECIPIENTS_INVALID = 81013  # "如果全部接收人无权限或不存在,则本次调用返回失败,errcode为81013"
TOKEN_MARGIN = 300.0  # refresh this many seconds before WeCom says the token expires
MAX_DUPLICATE_CHECK_INTERVAL = 4 * 3600  # WeCom's documented maximum
ROBOT_MARKDOWN_LIMIT = 4096  # bytes of UTF-8
ROBOT_TEXT_LIMIT = 2048
MEDIA_KINDS = frozenset({"file", "image", "voice", "video"})


class WeComError(Exception):
    """A WeCom call failed. ``errcode`` is WeCom's, or -1 where the failure had none (HTTP, network)."""

    def __init__(self, errcode: int, errmsg: str, *, http_status: int | None = None) -> None:
        super().__init__(f"WeCom error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.http_status = http_status


class WeComRateLimited(WeComError):
    """WeCom refused the call for frequency; retry no sooner than ``retry_after`` seconds."""

    def __init__(self, errcode: int, errmsg: str, *, retry_after: float, http_status: int | None = None) -> None:
        super().__init__(errcode, errmsg, http_status=http_status)
        self.retry_after = retry_after


class WeComRetryable(WeComError):
    """A transient failure: system busy, 5xx, or a network error."""


class WeComPermanent(WeComError):
    """A failure that resending the same request will not fix."""


class WeComRecipientsInvalid(WeComPermanent):
    """81013: no recipient can be reached (left the corp, or outside the app's visible range)."""

    def __init__(self, errmsg: str, invaliduser: list[str], *, http_status: int | None = None) -> None:
        super().__init__(ALL_RECIPIENTS_INVALID, errmsg, http_status=http_status)
        self.invaliduser = invaliduser


@dataclass(frozen=True)
class SendResult:
    """What WeCom answered to an accepted send."""

    msgid: str | None
    invaliduser: list[str] = field(default_factory=list)
    response_code: str | None = None  # template cards only; spend it on update_template_card


def _split_ids(value: object) -> list[str]:
    # WeCom answers "a|b" normally but [] in some error answers.
    if isinstance(value, str):
        return [part for part in value.split("|") if part]
    if isinstance(value, list):
        return [str(part) for part in value if part]
    return []


def _classify(data: dict[str, Any], *, rate_limit_retry_after: dict[int, float], http_status: int) -> WeComError | None:
    """Map a non-zero errcode to the exception the caller should see (None for success)."""
    errcode = data.get("errcode", 0)
    if not isinstance(errcode, int):
        return WeComRetryable(BUSY, f"malformed errcode {errcode!r}", http_status=http_status)
    if errcode == 0:
        return None
    errmsg = str(data.get("errmsg", ""))
    if errcode in RATE_LIMITS:
        return WeComRateLimited(errcode, errmsg, retry_after=rate_limit_retry_after[errcode], http_status=http_status)
    if errcode in RETRYABLE:
        return WeComRetryable(errcode, errmsg, http_status=http_status)
    if errcode == ALL_RECIPIENTS_INVALID:
        return WeComRecipientsInvalid(errmsg, _split_ids(data.get("invaliduser")), http_status=http_status)
    return WeComPermanent(errcode, errmsg, http_status=http_status)


async def _request_json(
    http: httpx.AsyncClient, method: str, url: str, *, retry_after_429: float, **kwargs: Any
) -> tuple[dict[str, Any], int]:
    """One HTTP exchange; transport and HTTP-level failures become WeComError.

    Messages deliberately omit the URL: it carries the access token or webhook key.
    """
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise WeComRetryable(BUSY, f"network error: {type(exc).__name__}") from None
    status = response.status_code
    if status == 429:
        raise WeComRateLimited(BUSY, "HTTP 429", retry_after=retry_after_429, http_status=status)
    if status >= 500:
        raise WeComRetryable(BUSY, f"HTTP {status}", http_status=status)
    if status != 200:
        raise WeComPermanent(BUSY, f"HTTP {status}", http_status=status)
    try:
        data = response.json()
    except ValueError:
        # A proxy's error page rather than WeCom's answer: worth another try later.
        raise WeComRetryable(BUSY, "answer is not JSON", http_status=status) from None
    if not isinstance(data, dict):
        raise WeComRetryable(BUSY, "answer is not a JSON object", http_status=status)
    return data, status


def _check_interval(interval: int) -> int:
    if not 0 < interval <= MAX_DUPLICATE_CHECK_INTERVAL:
        raise ValueError(f"duplicate_check_interval must be in 1..{MAX_DUPLICATE_CHECK_INTERVAL} seconds")
    return interval


class WeComClient:
    """The app ("自建应用") side of the WeCom server API, for one agent."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_base: str,
        corp_id: str,
        secret: str,
        agent_id: int,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        busy_retries: int = 3,
        busy_backoff: float = 0.5,
        rate_limit_retry_after: float = 60.0,
        concurrency_retry_after: float = 5.0,
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self._agent_id = agent_id
        self._now = now
        self._sleep = sleep
        self._busy_retries = busy_retries
        self._busy_backoff = busy_backoff
        # 45009 is a per-minute/hour quota, so a minute is the useful wait; 45033 clears quickly.
        self._retry_after = {45009: rate_limit_retry_after, 45033: concurrency_retry_after}
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = asyncio.Lock()

    @property
    def agent_id(self) -> int:
        return self._agent_id

    async def _busy_pause(self, attempt: int) -> None:
        await self._sleep(self._busy_backoff * (2**attempt))

    async def access_token(self) -> str:
        """A valid access token, fetched from /cgi-bin/gettoken and cached until near expiry."""
        if self._token is not None and self._now() < self._token_refresh_at:
            return self._token
        # One fetch for all concurrent callers: WeCom rate-limits gettoken too.
        async with self._token_lock:
            if self._token is not None and self._now() < self._token_refresh_at:
                return self._token
            attempt = 0
            while True:
                data, status = await _request_json(
                    self._http,
                    "GET",
                    f"{self._base}/cgi-bin/gettoken",
                    retry_after_429=self._retry_after[45009],
                    params={"corpid": self._corp_id, "corpsecret": self._secret},
                )
                error = _classify(data, rate_limit_retry_after=self._retry_after, http_status=status)
                if error is not None and error.errcode == BUSY and attempt < self._busy_retries:
                    await self._busy_pause(attempt)
                    attempt += 1
                    continue
                if error is not None:
                    raise error
                token = data.get("access_token")
                if not isinstance(token, str) or not token:
                    raise WeComRetryable(BUSY, "gettoken answered without access_token", http_status=status)
                expires_in = data.get("expires_in", 7200)
                if not isinstance(expires_in, int | float) or expires_in <= 0:
                    expires_in = 7200  # WeCom's documented lifetime; better than failing the send
                self._token = token
                self._token_refresh_at = self._now() + max(expires_in - TOKEN_MARGIN, 0.0)
                return token

    def _forget_token(self, token: str) -> None:
        # Only drop the token that failed: a concurrent caller may already hold a fresh one.
        if self._token == token:
            self._token = None

    async def _call(
        self, method: str, path: str, *, build: Callable[[], dict[str, Any]], params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Call an access-token API: refetch the token once on 40014/42001/41001, retry -1 with backoff.

        ``build`` returns fresh httpx request arguments for every attempt (a multipart body
        cannot be sent twice).
        """
        token_retried = False
        attempt = 0
        while True:
            token = await self.access_token()
            data, status = await _request_json(
                self._http,
                method,
                f"{self._base}{path}",
                retry_after_429=self._retry_after[45009],
                params={**(params or {}), "access_token": token},
                **build(),
            )
            error = _classify(data, rate_limit_retry_after=self._retry_after, http_status=status)
            if error is None:
                return data
            if error.errcode in TOKEN_ERRORS:
                self._forget_token(token)
                if not token_retried:
                    token_retried = True
                    continue
                # A token WeCom just issued was refused again: odd, but not the request's fault.
                raise WeComRetryable(error.errcode, error.errmsg, http_status=status)
            if error.errcode == BUSY and attempt < self._busy_retries:
                await self._busy_pause(attempt)
                attempt += 1
                continue
            raise error

    async def _send(self, touser: str, msgtype: str, payload: dict[str, Any], interval: int | None) -> SendResult:
        body: dict[str, Any] = {"touser": touser, "msgtype": msgtype, "agentid": self._agent_id, msgtype: payload}
        if interval is not None:
            body["enable_duplicate_check"] = 1
            body["duplicate_check_interval"] = _check_interval(interval)
        data = await self._call("POST", "/cgi-bin/message/send", build=lambda: {"json": body})
        msgid = data.get("msgid")
        response_code = data.get("response_code")
        return SendResult(
            msgid=str(msgid) if msgid else None,
            invaliduser=_split_ids(data.get("invaliduser")),
            response_code=str(response_code) if response_code else None,
        )

    async def send_text(self, touser: str, content: str, *, duplicate_check_interval: int | None = None) -> SendResult:
        """Send a text message to ``touser`` ("userid" or "a|b|c"); duplicate check only with an interval."""
        return await self._send(touser, "text", {"content": content}, duplicate_check_interval)

    async def send_markdown(
        self, touser: str, content: str, *, duplicate_check_interval: int | None = None
    ) -> SendResult:
        """Send a markdown message (rendered in the WeCom client only, not in WeChat)."""
        return await self._send(touser, "markdown", {"content": content}, duplicate_check_interval)

    async def send_template_card(
        self, touser: str, card: dict[str, Any], *, duplicate_check_interval: int | None = None
    ) -> SendResult:
        """Send a template card (e.g. ``card_type: button_interaction``); keep ``response_code`` to update it."""
        return await self._send(touser, "template_card", card, duplicate_check_interval)

    async def send_file(self, touser: str, media_id: str, *, duplicate_check_interval: int | None = None) -> SendResult:
        """Send a file previously uploaded with ``upload_media``."""
        return await self._send(touser, "file", {"media_id": media_id}, duplicate_check_interval)

    async def update_template_card(
        self,
        userids: list[str],
        response_code: str,
        card: dict[str, Any] | None = None,
        *,
        replace_name: str | None = None,
    ) -> None:
        """Replace a sent card for ``userids`` with ``card``, or just grey out its buttons with ``replace_name``.

        A response_code can be spent once (within 72 h).
        """
        if (card is None) == (replace_name is None):
            raise ValueError("give exactly one of card or replace_name")
        body: dict[str, Any] = {"userids": userids, "agentid": self._agent_id, "response_code": response_code}
        if card is not None:
            body["template_card"] = card
        else:
            body["button"] = {"replace_name": replace_name}
        await self._call("POST", "/cgi-bin/message/update_template_card", build=lambda: {"json": body})

    async def upload_media(self, kind: str, file_name: str, content: bytes) -> str:
        """Upload temporary media (valid 3 days) via /cgi-bin/media/upload; return its media_id."""
        if kind not in MEDIA_KINDS:
            raise ValueError(f"kind must be one of {sorted(MEDIA_KINDS)}")
        data = await self._call(
            "POST",
            "/cgi-bin/media/upload",
            params={"type": kind},
            build=lambda: {"files": {"media": (file_name, content, "application/octet-stream")}},
        )
        media_id = data.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WeComRetryable(BUSY, "upload answered without media_id")
        return media_id


async def _download(
    http: httpx.AsyncClient, url: str, params: dict[str, str]
) -> tuple[int, dict[str, Any] | None, bytes, str]:
    try:
        response = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise WeComRetryable(BUSY, f"network error: {exc}") from exc
    if response.status_code >= 500:
        raise WeComRetryable(BUSY, f"HTTP {response.status_code}", http_status=response.status_code)
    if response.headers.get("content-type", "").startswith(("application/json", "text/plain")):
        try:
            return response.status_code, response.json(), b"", ""
        except ValueError:
            pass
    disposition = response.headers.get("content-disposition", "")
    match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
    name = unquote(match.group(1)) if match else ""
    return response.status_code, None, response.content, name


async def download_media(client: WeComClient, media_id: str, *, max_bytes: int) -> tuple[str, bytes]:
    """Fetch a member's file (``/cgi-bin/media/get``): (file name, content); refetches an expired token once."""
    for attempt in range(2):
        token = await client.access_token()
        status, error_body, content, name = await _download(
            client._http, f"{client._base}/cgi-bin/media/get", {"access_token": token, "media_id": media_id}
        )
        if error_body is None:
            if len(content) > max_bytes:
                raise WeComPermanent(40006, f"file larger than {max_bytes} bytes")
            return name, content
        error = _classify(error_body, rate_limit_retry_after=client._retry_after, http_status=status)
        if error is None:
            raise WeComRetryable(BUSY, "media/get answered JSON without an error")
        if error.errcode in TOKEN_ERRORS and attempt == 0:
            client._forget_token(token)
            continue
        raise error
    raise WeComRetryable(BUSY, "media/get: token refused twice")


class RobotClient:
    """A group robot (群机器人) webhook, identified by its key.

    Robot sends have no duplicate check, so nothing here retries a send on its own:
    a "system busy" answer is raised as WeComRetryable for the caller to decide.
    """

    def __init__(
        self, http: httpx.AsyncClient, *, api_base: str, key: str, rate_limit_retry_after: float = 60.0
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._key = key
        self._retry_after = {45009: rate_limit_retry_after, 45033: rate_limit_retry_after}

    async def _post(self, path: str, params: dict[str, str], **kwargs: Any) -> dict[str, Any]:
        data, status = await _request_json(
            self._http,
            "POST",
            f"{self._base}{path}",
            retry_after_429=self._retry_after[45009],
            params={"key": self._key, **params},
            **kwargs,
        )
        error = _classify(data, rate_limit_retry_after=self._retry_after, http_status=status)
        if error is not None:
            raise error
        return data

    async def _send(self, body: dict[str, Any]) -> None:
        await self._post("/cgi-bin/webhook/send", {}, json=body)

    async def send_markdown(self, content: str) -> None:
        """Post markdown to the group; at most 4096 UTF-8 bytes (see ``split_markdown``)."""
        if len(content.encode("utf-8")) > ROBOT_MARKDOWN_LIMIT:
            raise ValueError(f"robot markdown is limited to {ROBOT_MARKDOWN_LIMIT} UTF-8 bytes; split it first")
        await self._send({"msgtype": "markdown", "markdown": {"content": content}})

    async def send_text(self, content: str) -> None:
        """Post plain text to the group; at most 2048 UTF-8 bytes."""
        if len(content.encode("utf-8")) > ROBOT_TEXT_LIMIT:
            raise ValueError(f"robot text is limited to {ROBOT_TEXT_LIMIT} UTF-8 bytes")
        await self._send({"msgtype": "text", "text": {"content": content}})

    async def upload_media(self, file_name: str, content: bytes) -> str:
        """Upload a file for this robot (valid 3 days, usable by this robot only); return its media_id."""
        data = await self._post(
            "/cgi-bin/webhook/upload_media",
            {"type": "file"},
            files={"media": (file_name, content, "application/octet-stream")},
        )
        media_id = data.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WeComRetryable(BUSY, "upload answered without media_id")
        return media_id

    async def send_file(self, media_id: str) -> None:
        """Post a file uploaded with this robot's ``upload_media``."""
        await self._send({"msgtype": "file", "file": {"media_id": media_id}})


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _hard_split(line: str, limit_bytes: int) -> list[str]:
    """Cut one over-long line into pieces of at most ``limit_bytes``, never inside a character."""
    data = line.encode("utf-8")
    pieces: list[str] = []
    while data:
        cut = min(limit_bytes, len(data))
        # Step back off UTF-8 continuation bytes (10xxxxxx) so the cut lands on a character start.
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    return pieces


def _pack(units: list[str], separator: str, limit_bytes: int) -> list[str]:
    """Greedily join units with ``separator`` into chunks of at most ``limit_bytes``."""
    chunks: list[str] = []
    current: str | None = None
    for unit in units:
        if current is None:
            current = unit
        elif _utf8_len(current) + _utf8_len(separator) + _utf8_len(unit) <= limit_bytes:
            current = current + separator + unit
        else:
            chunks.append(current)
            current = unit
    if current is not None:
        chunks.append(current)
    return chunks


def split_markdown(text: str, limit_bytes: int = ROBOT_MARKDOWN_LIMIT) -> list[str]:
    """Split ``text`` into pieces of at most ``limit_bytes`` UTF-8 bytes for separate robot messages.

    Prefers paragraph boundaries (blank lines), then line boundaries; only a single line
    longer than the limit is cut mid-line, and never inside a UTF-8 character. The
    separators at a cut are dropped; chunks that would be only whitespace are omitted.
    """
    if limit_bytes < 4:  # a 4-byte character must fit
        raise ValueError("limit_bytes must be at least 4")
    units: list[str] = []
    for paragraph in text.split("\n\n"):
        if _utf8_len(paragraph) <= limit_bytes:
            units.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.split("\n"):
            # Pieces of a hard-split line never rejoin with "\n": each but the last fills the
            # limit to within one character, and the next piece starts with that character.
            lines.extend(_hard_split(line, limit_bytes) if _utf8_len(line) > limit_bytes else [line])
        # Lines of one paragraph pack with "\n"; each packed piece is then a unit of its own.
        units.extend(_pack(lines, "\n", limit_bytes))
    return [chunk for chunk in _pack(units, "\n\n", limit_bytes) if chunk.strip()]
