"""Telegram: python-telegram-bot in front of the conversation core, and the outbox's Telegram transport.

:func:`build_application` is the one place the PTB client is built (token,
API base URL, timeouts); every handler is registered in :func:`register_handlers`.
Handlers only translate: an Update becomes an :class:`~core.conversation.Incoming`,
the core decides and queues the answers, the outbox sender delivers them
through :class:`TelegramTransport`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from telegram import (
    BotCommand,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.runner import ConversationRunner
from core.config import Settings
from core.conversation import COMMANDS, Incoming, IncomingFile, file_refusal
from core.reporting import StagedFile
from jobs.sender import Delivered, OutgoingRow, PermanentFailure, RetryLater, SendLimits, TransientFailure
from messages import Messages

log = logging.getLogger("duban.telegram")
PLATFORM = "telegram"

# The command menu (setMyCommands), described by the "menu" labels of the messages;
# Telegram command names are ASCII only, the Chinese aliases work as plain text.
MENU = ("tasks", "report", "whoami", "help", "cancel", "overdue", "digest")


def build_application(settings: Settings, *, webhook: bool | None = None) -> Application:  # type: ignore[type-arg]
    """The PTB application for the configured bot; the only place a Telegram client is made."""
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
        .get_updates_read_timeout(timeout + 30)
        .concurrent_updates(8)
    )
    use_webhook = telegram.mode == "webhook" if webhook is None else webhook
    if use_webhook:
        builder = builder.updater(None)  # updates arrive through our own web server
    return builder.build()


def register_handlers(application: Application, adapter: TelegramAdapter) -> None:  # type: ignore[type-arg]
    """Every handler of the bot, in one place.  The core parses commands, so they all lead to it."""
    known = [name for name, aliases in COMMANDS.items() if aliases[0].isascii()]
    application.add_handler(CallbackQueryHandler(adapter.on_button))
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, adapter.on_message))
    application.add_handler(
        MessageHandler(filters.COMMAND | filters.TEXT | filters.Document.ALL | filters.PHOTO, adapter.on_message)
    )
    application.add_handler(MessageHandler(filters.ALL, adapter.on_unsupported))
    application.add_error_handler(adapter.on_error)
    log.debug("registered handlers for commands: %s", ", ".join(known))


class TelegramAdapter:
    """Translates Telegram updates for the conversation core; downloads files it will keep."""

    def __init__(self, settings: Settings, runner: ConversationRunner, *, wake_sender: Any = None) -> None:
        self.settings = settings
        self.runner = runner
        self.conversation = runner.conversation
        self.wake_sender = wake_sender or (lambda: None)

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        chat = update.effective_chat
        if message is None or user is None or chat is None:
            return
        files = await self._files(message, str(user.id), context)
        incoming = Incoming(
            platform=PLATFORM,
            user_id=str(user.id),
            chat_id=str(chat.id),
            update_key=str(update.update_id),
            message_id=str(message.message_id),
            text=message.text or message.caption or "",
            reply_to=str(message.reply_to_message.message_id) if message.reply_to_message else None,
            files=tuple(files),
            display_name=user.full_name,
            username=user.username or "",
            edited=update.edited_message is not None,
            private=chat.type == Chat.PRIVATE,
        )
        await self.runner.handle(incoming)
        self.wake_sender()

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or query.from_user is None:
            return
        chat_id = query.message.chat.id if query.message else query.from_user.id
        incoming = Incoming(
            platform=PLATFORM,
            user_id=str(query.from_user.id),
            chat_id=str(chat_id),
            update_key=str(update.update_id),
            callback=query.data or "",
            button_message_id=str(query.message.message_id) if query.message else None,
            display_name=query.from_user.full_name,
            username=query.from_user.username or "",
            private=query.message is None or query.message.chat.type == Chat.PRIVATE,
        )
        handled = await self.runner.handle(incoming)
        self.wake_sender()
        try:
            # Stops the button's spinner; not a message, so not an outbox row.
            await query.answer((handled.toast or "")[:190] or None)
        except TelegramError as exc:
            log.info("could not answer callback query: %s", exc)

    async def on_unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, voice, locations …: the core answers that it did not understand."""
        await self.on_message(update, context)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling an update", exc_info=context.error)

    async def _files(self, message: Message, user_id: str, context: ContextTypes.DEFAULT_TYPE) -> list[IncomingFile]:
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
        if not await self.runner.threads.run(self.conversation.accepts_files_from, PLATFORM, user_id):
            return candidates
        return [await self._download(file, context) for file in candidates]

    async def _download(self, file: IncomingFile, context: ContextTypes.DEFAULT_TYPE) -> IncomingFile:
        staging = self.conversation.staging_dir()
        target = staging / f"{uuid.uuid4().hex}{Path(file.file_name).suffix}"
        remote = await context.bot.get_file(file.file_id)
        await remote.download_to_drive(custom_path=target)
        size = target.stat().st_size
        if size > self.settings.uploads.max_bytes:  # the platform's size was wrong
            target.unlink(missing_ok=True)
            return IncomingFile(file.file_id, file.file_name, size, file.mime_type, file.file_unique_id)
        staged = StagedFile(
            file_name=file.file_name,
            size=size,
            mime_type=file.mime_type,
            file_id=file.file_id,
            file_unique_id=file.file_unique_id,
            staged_path=target,
            sha256=await asyncio.to_thread(StagedFile.digest, target),
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
