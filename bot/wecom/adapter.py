"""WeCom (企业微信) in front of the conversation core: the callback URL in, the app and group robot out.

Receiving: the callback is verified (signature in constant time, AES-256-CBC
with strict padding, the corp id as receive id) before anything is read; a
request that fails any check gets 403 and changes nothing.  A message or a
button press is stored in the durable inbox before answering 200, and handled
from there (a file is downloaded then, after the 200, since WeCom retries
after 5 s); WeCom's retries are deduplicated by MsgId.

Sending: :class:`WeComTransport` turns outbox rows into text messages and
``button_interaction`` template cards (at most six buttons; a longer menu
becomes a numbered text), updates a card after its button is pressed with
``update_template_card`` as documented (更新模版卡片消息,
https://developer.work.weixin.qq.com/document/path/94888): a new menu becomes a
new ``button_interaction`` card; an answer greys the buttons out with
``button.replace_name`` showing what was recorded, and the answer itself follows
as a message.  It paces by WeCom's per-member limits.  Only reminder rungs ask
WeCom's duplicate check: two identical answers to a member are both wanted.
:class:`RobotTransport` posts digests and files to office group robots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bot.inbox import InboundRetry, Inbox
from bot.wecom.callback import WeComInbound, parse_callback
from bot.wecom.client import (
    RobotClient,
    WeComClient,
    WeComPermanent,
    WeComRateLimited,
    WeComRecipientsInvalid,
    WeComRetryable,
    download_media,
)
from bot.wecom.crypto import CallbackRejected, WeComCrypto
from core.config import Settings
from core.conversation import Conversation, Handled, Incoming, IncomingFile, file_refusal
from core.inbox import Received
from core.reporting import StagedFile
from jobs.pacing import SendLimits, below
from jobs.sender import Delivered, OutgoingRow, PermanentFailure, RetryLater, TransientFailure
from messages import Messages
from storage.threads import DatabaseThreads

log = logging.getLogger("duban.wecom")
PLATFORM = "wecom"
ROBOT = "wecom_robot"
# Seconds added to every per-member and per-robot window: a 30th message 60.002 s after the
# first must not be the one WeCom counts inside the minute (network jitter).
WINDOW_GUARD = 1.0
TIMESTAMP_TOLERANCE = 600  # seconds; WeCom retries within seconds, so older requests are replays
CARD_BUTTONS = 6
CARD_BUTTON_CHARS = 10
CARD_TITLE_CHARS = 26
CARD_TEXT_CHARS = 120  # longer texts go as a message of their own, the card beside them
# A rung resent after an ambiguous failure must not reach the member twice; any other answer
# may repeat word for word and still be wanted (two "没有看懂…" to two unclear messages).
DUPLICATE_CHECK_KINDS = frozenset({"reminder", "escalation", "urge"})
DUPLICATE_CHECK_SECONDS = 1800


def build_wecom_client(settings: Settings, http: httpx.AsyncClient) -> WeComClient:
    """The one place the WeCom app client is made."""
    wecom = settings.wecom
    assert wecom.secret is not None
    return WeComClient(
        http,
        api_base=wecom.api_base,
        corp_id=wecom.corp_id,
        secret=wecom.secret.get_secret_value(),
        agent_id=wecom.agent_id,
    )


def build_crypto(settings: Settings) -> WeComCrypto | None:
    wecom = settings.wecom
    if not (wecom.callback_token and wecom.encoding_aes_key and wecom.corp_id):
        return None
    return WeComCrypto(
        wecom.callback_token.get_secret_value(), wecom.encoding_aes_key.get_secret_value(), wecom.corp_id
    )


class WeComAdapter:
    """Serves the callback URL: verifies, decrypts and stores messages in the inbox; reads them back for the core."""

    platform = PLATFORM
    refetches_files = True

    def __init__(
        self,
        settings: Settings,
        conversation: Conversation,
        threads: DatabaseThreads,
        inbox: Inbox,
        client: WeComClient,
        crypto: WeComCrypto,
        *,
        now: Any = time.time,
    ) -> None:
        self.settings = settings
        self.conversation = conversation
        self.threads = threads
        self.inbox = inbox
        self.client = client
        self.crypto = crypto
        self.now = now

    def _fresh(self, timestamp: str) -> bool:
        try:
            return abs(self.now() - int(timestamp)) <= TIMESTAMP_TOLERANCE
        except ValueError:
            return False

    async def verify_url(self, request: Request) -> Response:
        """GET: WeCom checks that the URL is ours; answer the decrypted echostr."""
        query = request.query_params
        try:
            if not self._fresh(query.get("timestamp", "")):
                raise CallbackRejected("stale timestamp")
            plain = self.crypto.verify_url(
                query.get("msg_signature", ""),
                query.get("timestamp", ""),
                query.get("nonce", ""),
                query.get("echostr", ""),
            )
        except CallbackRejected as exc:
            log.warning("refused WeCom URL verification: %s", exc)
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse(plain)

    async def receive(self, request: Request) -> Response:
        """POST: a member's message or button press."""
        query = request.query_params
        body = await request.body()  # its size is capped by the server (bot.web)
        try:
            if not self._fresh(query.get("timestamp", "")):
                raise CallbackRejected("stale timestamp")
            plain = self.crypto.decrypt_callback(
                query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", ""), body
            )
            inbound = parse_callback(plain)
            if inbound.agent_id is not None and inbound.agent_id != self.settings.wecom.agent_id:
                raise CallbackRejected("callback for another agent")
        except CallbackRejected as exc:
            log.warning("refused WeCom callback: %s", exc)
            return PlainTextResponse("forbidden", status_code=403)
        if self.to_incoming(inbound) is None:
            return PlainTextResponse("")
        try:
            await self.inbox.accept(
                Received(PLATFORM, inbound.dedup_key, {"xml": plain}, inbound.from_user, inbound.from_user)
            )
        except Exception:  # not stored, so not acknowledged: WeCom tries again
            log.exception("could not store a WeCom callback")
            return PlainTextResponse("busy", status_code=503)
        self.inbox.wake()
        return PlainTextResponse("")

    async def read(self, payload: dict[str, Any]) -> Incoming | None:
        inbound = parse_callback(payload["xml"])
        incoming = self.to_incoming(inbound)
        if incoming is not None and inbound.kind in ("file", "image") and inbound.media_id:
            files = await self._download(incoming)
            incoming = Incoming(**{**incoming.__dict__, "files": tuple(files)})
        return incoming

    async def answered(self, payload: dict[str, Any], handled: Handled) -> None:
        """Nothing to do: a card's new state goes out through the outbox."""

    def to_incoming(self, inbound: WeComInbound) -> Incoming | None:
        """What the core understands; None for events it has no use for (entering the app …)."""

        def incoming(**what: Any) -> Incoming:
            return Incoming(
                platform=PLATFORM,
                user_id=inbound.from_user,
                chat_id=inbound.from_user,
                update_key=inbound.dedup_key,
                message_id=inbound.msg_id,
                display_name=inbound.from_user,
                username=inbound.from_user,
                **what,
            )

        if inbound.kind == "text":
            return incoming(text=inbound.content or "")
        if inbound.kind == "event" and inbound.event == "template_card_event" and inbound.event_key:
            return incoming(
                callback=inbound.event_key,
                button_message_id=f"card|{inbound.response_code}" if inbound.response_code else None,
            )
        if inbound.kind in ("file", "image"):
            name = inbound.file_name or f"{inbound.media_id}.{'jpg' if inbound.kind == 'image' else 'bin'}"
            # WeCom does not say the size up front; the download checks it.
            return incoming(files=(IncomingFile(file_id=inbound.media_id or "", file_name=name, size=0),))
        if inbound.kind == "event":
            return None
        return incoming(text="")

    async def _download(self, incoming: Incoming) -> list[IncomingFile]:
        declared = incoming.files[0]
        if file_refusal(self.settings, declared) or not await self.threads.run(
            self.conversation.accepts_files_from, PLATFORM, incoming.user_id
        ):
            return [declared]
        limit = self.settings.uploads.max_bytes
        try:
            name, content = await download_media(self.client, declared.file_id, max_bytes=limit)
        except WeComPermanent:
            return [IncomingFile(declared.file_id, declared.file_name, limit + 1)]  # refused as too large
        except (WeComRetryable, WeComRateLimited, httpx.HTTPError) as exc:
            raise InboundRetry(f"downloading {declared.file_name!r} from WeCom: {exc}") from exc
        name = name or declared.file_name
        with self.conversation.stage(name) as target:
            await asyncio.to_thread(target.write_bytes, content)
            sha256 = await asyncio.to_thread(StagedFile.digest, target)
        staged = StagedFile(
            file_name=name,
            size=len(content),
            mime_type="",
            file_id=declared.file_id,
            file_unique_id=declared.file_id,
            staged_path=target,
            sha256=sha256,
            platform=PLATFORM,
        )
        return [IncomingFile(declared.file_id, name, len(content), staged=staged)]


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, WeComRecipientsInvalid):
        # 81013: the member left or is outside the app's range; the ladder stops sending to them.
        return PermanentFailure(f"81013 all recipients invalid: {'|'.join(exc.invaliduser)}", unreachable=True)
    if isinstance(exc, WeComRateLimited):
        return RetryLater(exc.retry_after, str(exc))
    if isinstance(exc, WeComRetryable):
        return TransientFailure(str(exc))
    if isinstance(exc, WeComPermanent):
        return PermanentFailure(str(exc))
    return exc


def _card(text: str, buttons: list[dict[str, str]], task_id: str) -> dict[str, Any]:
    title, _, rest = text.partition("\n")
    return {
        "card_type": "button_interaction",
        "main_title": {"title": title[:CARD_TITLE_CHARS], "desc": title[CARD_TITLE_CHARS : CARD_TITLE_CHARS * 3]},
        "sub_title_text": rest.strip()[:400],
        "task_id": task_id,
        "button_list": [{"text": b["text"][:CARD_BUTTON_CHARS], "style": 1, "key": b["data"]} for b in buttons],
    }


def _text_menu(messages: Messages, text: str, buttons: list[dict[str, str]]) -> str:
    """More buttons than a card holds: list them; the core understands the typed answers."""
    options = [b["text"] for b in buttons if not b["data"].endswith("|x|") and "|p|" not in b["data"]]
    paged = any("|p|" in b["data"] for b in buttons)
    return messages.render("typed_menu", text=text, options=options, paged=paged)


class WeComTransport:
    """Delivers outbox rows to members through the self-built app."""

    platform = PLATFORM

    def __init__(self, client: WeComClient, settings: Settings, messages: Messages) -> None:
        self.client = client
        self.messages = messages
        wecom = settings.wecom
        # WeCom drops what goes past a member's quota without saying so: keep below it, measured on departures.
        self.limits = SendLimits(
            per_second=20.0,
            per_chat_interval=0.0,
            per_chat_windows=(
                (below(wecom.per_member_per_minute), 60.0),
                (below(wecom.per_member_per_hour), 3600.0),
            ),
            guard=WINDOW_GUARD,
        )

    @staticmethod
    def calls(row: OutgoingRow) -> int:
        """How many messages one row puts to the member: a long text goes before its card, a text before its file."""
        payload = row.payload
        buttons = [b for line in payload.get("buttons", []) for b in line]
        if payload.get("document"):
            return 2 if payload.get("text") else 1
        if buttons and len(buttons) <= CARD_BUTTONS and len(payload.get("text", "")) > 120:
            return 2
        return 1

    async def send(self, row: OutgoingRow) -> Delivered:
        try:
            return await self._send(row)
        except (WeComRateLimited, WeComRetryable, WeComPermanent) as exc:
            raise _translate(exc) from exc

    async def _send(self, row: OutgoingRow) -> Delivered:
        payload = row.payload
        text: str = payload["text"]
        buttons = [b for line in payload.get("buttons", []) for b in line]
        interval = DUPLICATE_CHECK_SECONDS if row.kind in DUPLICATE_CHECK_KINDS else None
        edit_of = payload.get("edit_of") or ""
        if edit_of.startswith("card|"):
            code = edit_of.split("|", 1)[1]
            if buttons and len(buttons) <= CARD_BUTTONS and not payload.get("close"):
                # a new menu in place of the old one: a valid button_interaction card; a card shows
                # little text, so a long one (a page of tasks) comes first as a message of its own
                title = text
                if len(text) > CARD_TEXT_CHARS:
                    await self._check(row, await self.client.send_text(row.chat_id, text))
                    title = text.partition("\n")[0]
                if await self._update(row, code, card=_card(title, buttons, f"duban-{row.id}-u")):
                    return Delivered(edit_of)
                if title != text:  # the text is out: only the menu is still to send
                    card = _card(title, buttons, f"duban-{row.id}")
                    return await self._check(row, await self.client.send_template_card(row.chat_id, card))
            else:
                label = (payload.get("label") or text.partition("\n")[0])[:CARD_BUTTON_CHARS]
                updated = await self._update(row, code, replace_name=label)
                if payload.get("close"):
                    return Delivered(edit_of if updated else None)
        elif payload.get("close"):
            return Delivered(None)  # nothing WeCom can close (a text, or a card already answered)
        if payload.get("document"):
            document = payload["document"]
            content = await asyncio.to_thread(Path(document["path"]).read_bytes)
            media_id = await self.client.upload_media("file", document.get("file_name") or "file", content)
            if text:
                await self._check(
                    row, await self.client.send_text(row.chat_id, text, duplicate_check_interval=interval)
                )
            return await self._check(
                row, await self.client.send_file(row.chat_id, media_id, duplicate_check_interval=interval)
            )
        if buttons and len(buttons) <= CARD_BUTTONS:
            first = None
            if len(text) > CARD_TEXT_CHARS:  # a card shows little text: send the text, then the card
                first = await self._check(
                    row, await self.client.send_text(row.chat_id, text, duplicate_check_interval=interval)
                )
                text = self.messages.label("button", "choose") if "\n" not in text else text.partition("\n")[0]
            sent = await self.client.send_template_card(
                row.chat_id, _card(text, buttons, f"duban-{row.id}"), duplicate_check_interval=interval
            )
            checked = await self._check(row, sent)
            return first or checked
        if buttons:
            text = _text_menu(self.messages, text, buttons)
        if payload.get("format") == "markdown":
            return await self._check(
                row, await self.client.send_markdown(row.chat_id, text, duplicate_check_interval=interval)
            )
        return await self._check(row, await self.client.send_text(row.chat_id, text, duplicate_check_interval=interval))

    async def _update(
        self, row: OutgoingRow, code: str, *, card: dict[str, Any] | None = None, replace_name: str | None = None
    ) -> bool:
        """Update a card; False when WeCom refuses (its code spent or expired), so the answer is sent anew."""
        try:
            await self.client.update_template_card([row.chat_id], code, card, replace_name=replace_name)
        except WeComPermanent as exc:
            log.info("card could not be updated (%s); sending a new message", exc)
            return False
        return True

    @staticmethod
    async def _check(row: OutgoingRow, result: Any) -> Delivered:
        # "返回包中的userid,不区分大小写,统一转为小写"
        if row.chat_id.lower() in {user.lower() for user in result.invaliduser}:
            raise PermanentFailure(f"invaliduser: {row.chat_id}", unreachable=True)
        return Delivered(result.msgid)


class RobotTransport:
    """Delivers digests and report files to office group robots (群机器人), keyed by name in config."""

    platform = ROBOT

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        wecom = settings.wecom
        self.robots = {
            name: RobotClient(http, api_base=wecom.api_base, key=key.get_secret_value())
            for name, key in wecom.robot_keys.items()
        }
        self.limits = SendLimits(
            per_second=10.0,
            per_chat_interval=0.0,
            per_chat_windows=((below(wecom.robot_per_minute), 60.0),),
            guard=WINDOW_GUARD,
        )

    @staticmethod
    def calls(row: OutgoingRow) -> int:
        """A file with a text is two robot messages."""
        return 2 if row.payload.get("document") and row.payload.get("text") else 1

    async def send(self, row: OutgoingRow) -> Delivered:
        robot = self.robots.get(row.chat_id)
        if robot is None:
            raise PermanentFailure(f"no robot named {row.chat_id!r} in [wecom] robot_keys")
        payload = row.payload
        try:
            if payload.get("document"):
                document = payload["document"]
                content = await asyncio.to_thread(Path(document["path"]).read_bytes)
                media_id = await robot.upload_media(document.get("file_name") or "file", content)
                await robot.send_file(media_id)
                if payload.get("text"):
                    await robot.send_markdown(payload["text"])
            elif payload.get("format") == "markdown":
                await robot.send_markdown(payload["text"])
            else:
                await robot.send_text(payload["text"])
        except (WeComRateLimited, WeComRetryable, WeComPermanent) as exc:
            raise _translate(exc) from exc
        return Delivered(None)
