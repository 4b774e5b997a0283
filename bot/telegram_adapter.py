"""Telegram: updates into the durable inbox, the conversation core's answers out through the outbox.

:func:`build_application` is the one place the PTB client is built (token,
API base URL, timeouts); :class:`UpdateFeed`, built from its Bot, is the long
poll's own connection.  Updates reach the inbox before Telegram is told we
have them: :func:`poll_updates` stores each ``getUpdates`` batch, as
Telegram's JSON, before the next call's offset acknowledges it; the webhook
(bot.web) stores the update before answering 200.  :class:`TelegramAdapter`
reads a stored update back: an Update becomes an
:class:`~core.conversation.Incoming` (its file downloaded into staging), the
core decides and queues the answers, and the outbox sender delivers them
through :class:`TelegramTransport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.exc import SQLAlchemyError
from telegram import (
    Bot,
    BotCommand,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder
from telegram.request import HTTPXRequest

from bot.inbox import InboundRetry, Inbox
from core.config import Settings
from core.conversation import Conversation, Handled, Incoming, IncomingFile, file_refusal
from core.inbox import Received
from core.reporting import StagedFile
from jobs.pacing import SendLimits
from jobs.sender import Delivered, OutgoingRow, PermanentFailure, RetryLater, TransientFailure
from messages import Messages
from storage.threads import DatabaseThreads

log = logging.getLogger("duban.telegram")
PLATFORM = "telegram"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
POLL_SECONDS = 25  # long polling: how long one getUpdates waits for something to arrive

# The command menu (setMyCommands), described by the "menu" labels of the messages;
# Telegram command names are ASCII only, the Chinese aliases work as plain text.
MENU = ("tasks", "report", "whoami", "help", "cancel", "overdue", "digest")


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    """The PTB application for the configured bot; the only place a Telegram client is made.

    Only its Bot is used: updates come through the durable inbox (fetched by
    an :class:`UpdateFeed` or posted to the webhook), not through PTB's update queue.
    """
    telegram = settings.telegram
    if telegram.token is None:
        raise ValueError("no Telegram token configured (DUBAN_TELEGRAM_TOKEN)")
    timeout = telegram.request_timeout.total_seconds()
    builder: ApplicationBuilder = (  # type: ignore[type-arg]
        Application.builder()
        .token(telegram.token.get_secret_value())
        .base_url(telegram.base_url)
        .base_file_url(telegram.base_file_url)
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .updater(None)
    )
    return builder.build()


def received_update(data: object) -> Received | None:
    """A Telegram Update (as JSON) ready for the inbox; None when it is not an update at all."""
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        return None
    user_id = chat_id = None
    query = data.get("callback_query")
    message = next((data[k] for k in ("message", "edited_message") if isinstance(data.get(k), dict)), None)
    if isinstance(query, dict):
        user_id = _id_of(query.get("from"))
        chat_id = _id_of((query.get("message") or {}).get("chat")) or user_id
    elif message is not None:
        user_id = _id_of(message.get("from"))
        chat_id = _id_of(message.get("chat"))
    return Received(PLATFORM, str(data["update_id"]), data, user_id, chat_id)


def _id_of(party: object) -> str | None:
    return str(party["id"]) if isinstance(party, dict) and isinstance(party.get("id"), int) else None


class UpdateFeed:
    """``getUpdates`` long-polled, its updates kept as the JSON Telegram sent (https://core.telegram.org/bots/api#getupdates).

    They are stored as they came, as the webhook stores its posts, and PTB
    parses each one once, when the inbox reads it back for handling: parsed
    here as well, and turned back into JSON to be stored, every update of a
    burst cost about a quarter of a millisecond more.  An update PTB cannot
    parse is stored all the same; handling it fails, and its sender is told.

    The request goes through a PTB request object of the feed's own (one
    connection, the long poll's read timeout), which maps Telegram's answers
    to PTB's errors (:class:`Conflict`, :class:`RetryAfter`, :class:`NetworkError`);
    the parameters travel in the query string, one of the four ways the Bot
    API takes them (https://core.telegram.org/bots/api#making-requests).
    """

    def __init__(self, bot: Bot, settings: Settings) -> None:
        timeout = settings.telegram.request_timeout.total_seconds()
        self.url = f"{bot.base_url}/getUpdates"
        self.read_timeout = POLL_SECONDS + timeout
        self.request = HTTPXRequest(
            connection_pool_size=1, connect_timeout=timeout, read_timeout=self.read_timeout, write_timeout=timeout
        )

    async def fetch(self, offset: int | None) -> list[dict[str, Any]]:
        """One long poll: the updates from ``offset`` on (None: all Telegram holds), as JSON."""
        parameters: dict[str, Any] = {"timeout": POLL_SECONDS, "allowed_updates": json.dumps(ALLOWED_UPDATES)}
        if offset is not None:
            parameters["offset"] = offset
        result = await self.request.post(f"{self.url}?{urlencode(parameters)}", read_timeout=self.read_timeout)
        return [update for update in result if isinstance(update, dict)] if isinstance(result, list) else []

    async def __aenter__(self) -> UpdateFeed:
        await self.request.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.request.shutdown()


async def poll_updates(feed: UpdateFeed, inbox: Inbox, stop: asyncio.Event, *, retry_base: float = 1.0) -> None:
    """Long-poll ``getUpdates`` into the inbox until ``stop``.

    Telegram forgets a batch when a later call's offset passes it, so the
    offset moves on only once the batch is stored: a crash before that gets the
    same batch again, and the inbox keeps each update once.  While the batch
    cannot be stored (the database locked) it is kept and stored again later.
    The feed is opened here and closed when polling stops.
    """
    async with feed:
        await _poll(feed, inbox, stop, retry_base)


async def _poll(feed: UpdateFeed, inbox: Inbox, stop: asyncio.Event, retry_base: float) -> None:
    offset: int | None = None
    batch: list[Received] = []
    failures = 0
    while not stop.is_set():
        try:
            if not batch:
                fetch = asyncio.ensure_future(feed.fetch(offset))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not fetch.done():  # stopping: what this call would return is not acknowledged, so not lost
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TelegramError):
                        await fetch
                    return
                updates = fetch.result()
                batch = [r for r in (received_update(u) for u in updates) if r is not None]
                if batch:
                    offset = max(int(r.update_key) for r in batch) + 1
            if batch:
                await inbox.accept(*batch)
                inbox.wake()
                batch = []
            failures = 0
        except (NetworkError, Conflict, RetryAfter, SQLAlchemyError) as exc:  # the batch is kept; Telegram keeps it
            failures += 1
            wait = min(retry_base * 2 ** min(failures - 1, 6), 60.0)
            if isinstance(
                exc, RetryAfter
            ):  # a 429 says how long to wait (core.telegram.org/bots/api#responseparameters)
                wait = max(wait, _seconds(exc.retry_after))
            log.warning("getUpdates or storing its batch failed (%s); again in %.1f s", exc, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


class TelegramAdapter:
    """Reads stored Telegram updates for the conversation core; downloads the files it will keep."""

    platform = PLATFORM
    refetches_files = True

    def __init__(self, settings: Settings, conversation: Conversation, threads: DatabaseThreads, bot: Bot) -> None:
        self.settings = settings
        self.conversation = conversation
        self.threads = threads
        self.bot = bot

    async def read(self, payload: dict[str, Any]) -> Incoming | None:
        update = Update.de_json(payload, self.bot)
        if update is None:
            return None
        query = update.callback_query
        if query is not None:
            return Incoming(
                platform=PLATFORM,
                user_id=str(query.from_user.id),
                chat_id=str(query.message.chat.id if query.message else query.from_user.id),
                update_key=str(update.update_id),
                callback=query.data or "",
                button_message_id=str(query.message.message_id) if query.message else None,
                display_name=query.from_user.full_name,
                username=query.from_user.username or "",
                private=query.message is None or query.message.chat.type == Chat.PRIVATE,
            )
        message = update.effective_message
        user = update.effective_user
        chat = update.effective_chat
        if message is None or user is None or chat is None:
            return None
        # Stickers, voice, locations …: text "" and no file, and the core answers that it did not understand.
        return Incoming(
            platform=PLATFORM,
            user_id=str(user.id),
            chat_id=str(chat.id),
            update_key=str(update.update_id),
            message_id=str(message.message_id),
            text=message.text or message.caption or "",
            reply_to=str(message.reply_to_message.message_id) if message.reply_to_message else None,
            files=tuple(await self._files(message, str(user.id))),
            display_name=user.full_name,
            username=user.username or "",
            edited=update.edited_message is not None,
            private=chat.type == Chat.PRIVATE,
        )

    async def answered(self, payload: dict[str, Any], handled: Handled) -> None:
        query = payload.get("callback_query")
        if not isinstance(query, dict) or not query.get("id"):
            return
        try:
            # Stops the button's spinner; not a message, so not an outbox row.
            await self.bot.answer_callback_query(str(query["id"]), (handled.toast or "")[:190] or None)
        except TelegramError as exc:  # too old after a restart, say: the answer in the chat stands
            log.info("could not answer callback query: %s", exc)

    async def _files(self, message: Message, user_id: str) -> list[IncomingFile]:
        if message.document is not None:
            document = message.document
            candidates = [
                IncomingFile(
                    file_id=document.file_id,
                    file_unique_id=document.file_unique_id,
                    file_name=document.file_name or f"{document.file_unique_id}.bin",
                    size=document.file_size or 0,
                    mime_type=document.mime_type or "",
                )
            ]
        elif message.photo:
            photo = message.photo[-1]  # the largest size
            candidates = [
                IncomingFile(
                    file_id=photo.file_id,
                    file_unique_id=photo.file_unique_id,
                    file_name=f"photo-{photo.file_unique_id}.jpg",
                    size=photo.file_size or 0,
                    mime_type="image/jpeg",
                )
            ]
        else:
            return []
        # Download only what will be kept: a file within the limits, from someone bound.
        if any(file_refusal(self.settings, f) for f in candidates):
            return candidates
        if not await self.threads.run(self.conversation.accepts_files_from, PLATFORM, user_id):
            return candidates
        return [await self._download(file) for file in candidates]

    async def _download(self, file: IncomingFile) -> IncomingFile:
        with self.conversation.stage(file.file_name) as target:
            try:
                remote = await self.bot.get_file(file.file_id)
                await remote.download_to_drive(custom_path=target)
            except BadRequest:
                raise  # the file id is wrong or the file too big: trying again will not help
            except NetworkError as exc:  # the file API unreachable, timing out or 5xx
                target.unlink(missing_ok=True)
                raise InboundRetry(f"downloading {file.file_name!r} from Telegram: {exc}") from exc
            size = target.stat().st_size
            if size > self.settings.uploads.max_bytes:  # the platform's size was wrong
                target.unlink(missing_ok=True)
                return IncomingFile(file.file_id, file.file_name, size, file.mime_type, file.file_unique_id)
            sha256 = await asyncio.to_thread(StagedFile.digest, target)
        staged = StagedFile(
            file_name=file.file_name,
            size=size,
            mime_type=file.mime_type,
            file_id=file.file_id,
            file_unique_id=file.file_unique_id,
            staged_path=target,
            sha256=sha256,
            platform=PLATFORM,
        )
        return IncomingFile(file.file_id, file.file_name, size, file.mime_type, file.file_unique_id, staged)


def verify_webhook_secret(settings: Settings, header: str | None) -> bool:
    """The X-Telegram-Bot-Api-Secret-Token header, compared in constant time."""
    secret = settings.telegram.webhook_secret
    if secret is None or not secret.get_secret_value():
        return False
    return hmac.compare_digest((header or "").encode(), secret.get_secret_value().encode())


async def set_up_bot(application: Application, settings: Settings, messages: Messages) -> None:  # type: ignore[type-arg]
    """The command menu, and the webhook (or its removal, for polling)."""
    await application.bot.set_my_commands([BotCommand(name, messages.label("menu", name)) for name in MENU])
    telegram = settings.telegram
    if telegram.mode == "webhook":
        secret = telegram.webhook_secret.get_secret_value() if telegram.webhook_secret else None
        await application.bot.set_webhook(
            url=telegram.webhook_url, secret_token=secret, allowed_updates=Update.ALL_TYPES
        )
    else:
        await application.bot.delete_webhook(drop_pending_updates=False)


def _seconds(value: float | timedelta | int) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramTransport:
    """Sends outbox rows with the bot; maps Telegram's errors onto the sender's outcomes."""

    platform = PLATFORM

    def __init__(self, application: Application, settings: Settings) -> None:  # type: ignore[type-arg]
        self.bot = application.bot
        telegram = settings.telegram
        self.limits = SendLimits(
            per_second=telegram.messages_per_second,
            per_chat_interval=telegram.per_chat_interval.total_seconds(),
        )

    async def send(self, row: OutgoingRow) -> Delivered:
        payload = row.payload
        markup = None
        if payload.get("buttons"):
            markup = InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton(b["text"], callback_data=b["data"]) for b in line]
                    for line in payload["buttons"]
                ]
            )
        chat_id = int(row.chat_id) if row.chat_id.lstrip("-").isdigit() else row.chat_id
        try:
            if payload.get("close") and payload.get("edit_of"):
                # only the buttons go: the message keeps its text, the answer is a message of its own
                try:
                    await self.bot.edit_message_reply_markup(
                        chat_id=chat_id, message_id=int(payload["edit_of"]), reply_markup=None
                    )
                except BadRequest as exc:
                    log.info("could not take the buttons off message %s: %s", payload["edit_of"], exc)
                return Delivered(payload["edit_of"])
            if payload.get("edit_of"):
                try:
                    edited = await self.bot.edit_message_text(
                        payload["text"], chat_id=chat_id, message_id=int(payload["edit_of"]), reply_markup=markup
                    )
                    return Delivered(str(edited.message_id) if isinstance(edited, Message) else payload["edit_of"])
                except BadRequest as exc:
                    if "not modified" in str(exc).lower():
                        return Delivered(payload["edit_of"])
                    if "not found" not in str(exc).lower() and "can't be edited" not in str(exc).lower():
                        raise
                    # the menu is gone: send the new state as a fresh message
            reply = (
                ReplyParameters(message_id=int(payload["reply_to"]), allow_sending_without_reply=True)
                if payload.get("reply_to")
                else None
            )
            if payload.get("document"):
                document = payload["document"]
                with Path(document["path"]).open("rb") as handle:
                    sent = await self.bot.send_document(
                        chat_id,
                        document=handle,
                        filename=document.get("file_name"),
                        caption=payload["text"][:1024] or None,
                        reply_markup=markup,
                        reply_parameters=reply,
                    )
            else:
                sent = await self.bot.send_message(
                    chat_id,
                    payload["text"],
                    reply_markup=markup,
                    reply_parameters=reply,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            return Delivered(str(sent.message_id))
        except RetryAfter as exc:
            raise RetryLater(_seconds(exc.retry_after), str(exc)) from exc
        except Forbidden as exc:
            raise PermanentFailure(f"Forbidden: {exc}", unreachable=True) from exc
        except BadRequest as exc:
            text = str(exc).lower()
            unreachable = "chat not found" in text or "user is deactivated" in text or "bot was kicked" in text
            raise PermanentFailure(f"BadRequest: {exc}", unreachable=unreachable) from exc
        except InvalidToken as exc:
            raise RetryLater(60, f"Telegram refused the token: {exc}") from exc
        except NetworkError as exc:  # TimedOut and 5xx included (BadRequest handled above)
            raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise PermanentFailure(f"document not readable: {exc}") from exc
