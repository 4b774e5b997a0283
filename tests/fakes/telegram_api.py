"""A fake Telegram Bot API server on loopback, for driving the real python-telegram-bot client.

``FakeTelegram`` serves ``POST {url}/bot{token}/{method}`` and ``GET {url}/file/bot{token}/{path}``
the way api.telegram.org does: bodies may be url-encoded forms (nested objects such as
``reply_markup`` arrive as JSON strings inside the form, which is how PTB sends them), multipart
uploads or JSON; answers are the ``{"ok": true, "result": ...}`` envelope, or
``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`` with the matching
HTTP status, so PTB raises the same exceptions it raises against Telegram:

* 429 with ``parameters.retry_after``  -> ``telegram.error.RetryAfter``
* 403                                  -> ``telegram.error.Forbidden``
* 400                                  -> ``telegram.error.BadRequest`` (a subclass of NetworkError!)
* 401 / 404                            -> ``telegram.error.InvalidToken`` (``EndPointNotFound`` for
  ``bot.do_api_request`` on an initialised bot)
* 409                                  -> ``telegram.error.Conflict``
* 5xx, or a dropped connection         -> ``telegram.error.NetworkError``

Tests simulate users with ``user_message``/``user_document``/``user_callback``/...; each queues an
update for ``getUpdates`` (or can be posted to the bot's webhook with ``post_update_to``). What the
bot did is recorded on the instance (``sent``, ``requests``, ``answered_callbacks``, ...). Failures
are injected with ``fail_next``/``drop_next``/``start_outage``/``block_user``/``forget_chat`` and flood limits are
enforced like Telegram's (sliding one-second windows, globally and per chat).

The server is uvicorn + Starlette in a daemon thread with its own event loop. All state lives on
the instance and is guarded by one lock, so tests may read it and simulate users from any thread.
The blocking helpers (``wait_for``, ``wait_for_count``, ``post_update_to``) refuse to run on a
thread with a running event loop, where they would stall a bot served by that loop; coroutines
use the ``*_async`` twins instead.

Deliberate simplifications: chats are not checked for existence (any chat id works unless
``forget_chat`` was called), HTML ``parse_mode`` is parsed and validated like Telegram does
(entities are returned), Markdown modes are passed through unparsed, webhook URLs may be plain
http, and photos report one stored file for every size.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import math
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["FakeTelegram", "RequestRecord", "SentMessage"]

#: Methods that count against the flood limits and are recorded in ``FakeTelegram.sent``.
SEND_METHODS = frozenset({"sendMessage", "sendDocument", "editMessageText"})
#: Telegram's getFile limit for bots on the public Bot API.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
#: Pseudo method name under which file downloads are recorded (and can be failed or dropped).
DOWNLOAD_METHOD = "download"

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
POLL_TERMINATED = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"

# Parameters that arrive as strings in forms and must be converted, by the type Telegram expects.
_INT_PARAMS = frozenset(
    [
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "cache_time",
        "max_connections",
        "reply_to_message_id",
        "message_thread_id",
        "user_id",
    ]
)
_BOOL_PARAMS = frozenset(
    [
        "show_alert",
        "drop_pending_updates",
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "disable_content_type_detection",
    ]
)
_JSON_PARAMS = frozenset(
    [
        "reply_markup",
        "reply_parameters",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "link_preview_options",
    ]
)

# HTML parse mode: tag -> entity type (see https://core.telegram.org/bots/api#html-style).
_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_SPACE = " \t\r\n\v\0"  # tdlib's is_space; "\0" also stands for the end of the text

_RAW_SEND_KEY = "fake_telegram.raw_send"


@dataclass
class SentMessage:
    """One successful sendMessage / sendDocument / editMessageText, as the bot asked for it."""

    method: str
    chat_id: int
    message_id: int
    text: str | None  # the text (or caption) parameter exactly as sent, markup included
    reply_markup: dict[str, Any] | None
    reply_to_message_id: int | None
    parse_mode: str | None
    document: dict[str, Any] | None  # {"file_name", "content", "mime_type", "file_id"} for sendDocument
    at: float  # time.monotonic() when accepted
    plain_text: str | None = None  # the text as Telegram shows it (HTML tags removed, entities decoded)


@dataclass
class RequestRecord:
    """One request the server answered: Bot API method, arrival time, HTTP status (0 = dropped)."""

    method: str
    at: float
    status: int
    chat_id: int | None


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    description: str | None


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    content: bytes
    size: int
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None


@dataclass
class _Upload:
    filename: str | None
    content: bytes
    content_type: str | None


@dataclass
class _QueuedUpdate:
    update: dict[str, Any]
    redelivery: bool = False  # pushed again after the bot had confirmed its id
    delivered: bool = False


@dataclass
class _OpenTag:
    """An HTML tag still open while parsing."""

    name: str
    offset: int  # UTF-16 offset of its text
    text_start: int  # index into the parsed text, for <a> without href
    argument: str = ""  # href of <a>, language of <code class="language-...">, ...
    attrs: dict[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    """Raised inside handlers; becomes the Bot API error envelope."""

    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def _bad_request(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _default_description(status: int, retry_after: int | None) -> str:
    if status == 429:
        return f"Too Many Requests: retry after {retry_after}"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"
    return f"{phrase}: injected failure" if status in (400, 403) else phrase


class _HtmlParser:
    """Telegram's HTML parse mode: text -> (plain text, entities), or the 400 Telegram answers.

    A port of tdlib's ``parse_html`` (which the Bot API runs): every ``<`` must open a supported
    tag or close the innermost open one; ``&lt;``/``&gt;``/``&amp;``/``&quot;`` and numeric
    references are decoded (the ``;`` is optional), any other ``&`` is literal. Byte offsets in
    errors are UTF-8 offsets into the raw text; entity offsets are UTF-16 code units.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.offset = 0
        self.stack: list[_OpenTag] = []
        self.entities: list[dict[str, Any]] = []

    def at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else "\0"

    def fail(self, message: str) -> _ApiError:
        return _bad_request(f"can't parse entities: {message}")

    def byte_offset(self, i: int) -> int:
        return len(self.text[:i].encode("utf-8"))

    def emit(self, char: str) -> None:
        self.out.append(char)
        self.offset += _utf16_len(char)

    def decode_entity(self, i: int) -> tuple[str, int] | None:
        """The character an HTML entity at ``i`` stands for and the index after it, if it is one."""
        end = i + 1
        if self.at(end) == "#":
            end += 1
            digits = "0123456789abcdefABCDEF" if self.at(end) == "x" else "0123456789"
            base = 16 if self.at(end) == "x" else 10
            end += base == 16
            start = end
            while self.at(end) in digits and self.at(end) != "\0":
                end += 1
            code = int(self.text[start:end], base) if end > start else 0
            if code == 0 or code >= 0x10FFFF or end - i >= 10:
                return None
            char = chr(code)
        else:
            while self.at(end).isascii() and self.at(end).isalpha():
                end += 1
            named = _HTML_NAMED_ENTITIES.get(self.text[i + 1 : end])
            if named is None:
                return None
            char = named
        return char, end + (self.at(end) == ";")

    def parse(self) -> tuple[str, list[dict[str, Any]]]:
        text, i = self.text, 0
        while i < len(text):
            if text[i] == "&" and (decoded := self.decode_entity(i)) is not None:
                char, i = decoded
                self.emit(char)
            elif text[i] != "<":
                self.emit(text[i])
                i += 1
            elif self.at(i + 1) != "/":
                i = self.start_tag(i)
            else:
                i = self.end_tag(i)
        if self.stack:
            raise self.fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"')
        plain = "".join(self.out)
        if any(0xD800 <= ord(char) <= 0xDFFF for char in plain):
            raise self.fail(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            )
        for entity in self.entities:
            if entity["type"] == "code":
                entity.pop("language", None)  # a language only sticks to a <pre>
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return plain, self.entities

    def start_tag(self, begin: int) -> int:
        """Parse ``<name attr="value" ...>`` at ``begin``; return the index after it."""
        at, where = self.at, self.byte_offset(begin)
        i = begin + 1
        while at(i) not in _HTML_SPACE and at(i) != ">":
            i += 1
        if i >= len(self.text):
            raise self.fail(f"Unclosed start tag at byte offset {where}")
        name = self.text[begin + 1 : i].lower()
        if name not in _HTML_TAGS:
            raise self.fail(f'Unsupported start tag "{name}" at byte offset {where}')
        tag = _OpenTag(name, self.offset, len(self.out))
        while at(i) != ">":
            while i < len(self.text) and at(i) in _HTML_SPACE:
                i += 1
            if at(i) == ">":
                break
            attribute_begin = i
            while at(i) not in _HTML_SPACE and at(i) not in "=>":
                i += 1
            attribute = self.text[attribute_begin:i]
            if not attribute:
                raise self.fail(f'Empty attribute name in the tag "{name}" at byte offset {where}')
            while i < len(self.text) and at(i) in _HTML_SPACE:
                i += 1
            if i >= len(self.text):
                raise self.fail(f'Unclosed start tag "{name}" at byte offset {where}')
            if at(i) != "=":
                if name == "blockquote" and attribute.lower() == "expandable":
                    tag.attrs["expandable"] = ""
                    continue
                raise self.fail(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" at byte offset {where}'
                )
            i += 1
            while i < len(self.text) and at(i) in _HTML_SPACE:
                i += 1
            if i >= len(self.text):
                raise self.fail(f'Unclosed start tag "{name}" at byte offset {where}')
            if at(i) not in "'\"":
                token_begin = i
                while at(i).isascii() and (at(i).isalnum() or at(i) in ".-") and at(i) != "\0":
                    i += 1
                value = self.text[token_begin:i].lower()
                if at(i) not in _HTML_SPACE and at(i) != ">":
                    raise self.fail(f"Unexpected end of name token at byte offset {self.byte_offset(token_begin)}")
            else:
                quote, chars = self.text[i], []
                i += 1
                while i < len(self.text) and self.text[i] != quote:
                    if self.text[i] == "&" and (decoded := self.decode_entity(i)) is not None:
                        chars.append(decoded[0])
                        i = decoded[1]
                    else:
                        chars.append(self.text[i])
                        i += 1
                i += at(i) == quote
                value = "".join(chars)
            if i >= len(self.text):
                raise self.fail(f"Unclosed start tag at byte offset {where}")
            tag.attrs[attribute] = value
        if name == "span" and tag.attrs.get("class") != "tg-spoiler":
            raise self.fail(f'Tag "span" must have class "tg-spoiler" at byte offset {where}')
        if name == "a":
            tag.argument = tag.attrs.get("href", "")
        elif name == "code" and tag.attrs.get("class", "").startswith("language-"):
            tag.argument = tag.attrs["class"].removeprefix("language-")
        elif name == "tg-emoji":
            tag.argument = tag.attrs.get("emoji-id", "")
            if not tag.argument.isdigit():
                raise _bad_request("Invalid custom emoji identifier specified")
        self.stack.append(tag)
        return i + 1

    def end_tag(self, begin: int) -> int:
        """Parse ``</name>`` at ``begin``, closing the innermost tag; return the index after it."""
        at, where = self.at, self.byte_offset(begin)
        if not self.stack:
            raise self.fail(f"Unexpected end tag at byte offset {where}")
        i = begin + 2
        while at(i) not in _HTML_SPACE and at(i) != ">":
            i += 1
        end_name = self.text[begin + 2 : i]
        while i < len(self.text) and at(i) in _HTML_SPACE:
            i += 1
        if at(i) != ">":
            raise self.fail(f"Unclosed end tag at byte offset {where}")
        tag = self.stack[-1]
        if end_name and end_name != tag.name:
            raise self.fail(
                f'Unmatched end tag at byte offset {where}, expected "</{tag.name}>", found "</{end_name}>"'
            )
        self.stack.pop()
        if self.offset > tag.offset:
            self.add_entity(tag)
        return i + 1

    def add_entity(self, tag: _OpenTag) -> None:
        kind = _HTML_TAGS[tag.name]
        entity: dict[str, Any] = {"type": kind, "offset": tag.offset, "length": self.offset - tag.offset}
        last = self.entities[-1] if self.entities else None
        same_range = last is not None and (last["offset"], last["length"]) == (entity["offset"], entity["length"])
        if kind == "text_link":
            url = tag.argument or "".join(self.out[tag.text_start :])
            user = re.fullmatch(r"tg://user\?id=(\d+)", url)
            if user is not None:
                entity.update(type="text_mention", user={"id": int(user.group(1)), "is_bot": False, "first_name": ""})
            elif re.match(r"(?i)^(https?|tg|ton|tonsite)://\S+$|^[\w.-]+\.[a-z]{2,}(/\S*)?$", url):
                entity["url"] = url
            else:
                return  # Telegram silently drops links it cannot parse
        elif kind == "pre" and same_range and last is not None and last["type"] == "code" and last.get("language"):
            last["type"] = "pre"  # <pre><code class="language-x">: one pre entity with a language
            return
        elif kind == "code" and same_range and last is not None and last["type"] == "pre" and tag.argument:
            last["language"] = tag.argument  # <code class="language-x"><pre>
            return
        elif kind == "code" and tag.argument:
            entity["language"] = tag.argument  # kept only if an enclosing <pre> claims it
        elif kind == "blockquote" and "expandable" in tag.attrs:
            entity["type"] = "expandable_blockquote"
        elif kind == "custom_emoji":
            entity["custom_emoji_id"] = tag.argument
        self.entities.append(entity)


def _parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram's HTML parse mode into (plain text, entities) or raise the 400 Telegram gives."""
    return _HtmlParser(text).parse()


def _unescape_form_param(value: str) -> str:
    """Undo the HTML5 escaping httpx applies to multipart ``name``/``filename`` parameters."""
    value = re.sub(r"%(22|[01][0-9A-Fa-f])", lambda m: chr(int(m.group(1), 16)), value)
    return value.replace("\\\\", "\\")


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, _Upload]]:
    """Split a multipart/form-data body into plain fields and file parts (python-multipart is not a dependency)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise _bad_request("can't parse multipart/form-data: no boundary")
    fields: dict[str, str] = {}
    files: dict[str, _Upload] = {}
    for part in body.split(b"--" + match.group(1).encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name_match = re.search(r'\bname="((?:[^"\\]|\\.)*)"', disposition)
        if name_match is None:
            continue
        name = _unescape_form_param(name_match.group(1))
        filename_match = re.search(r'\bfilename="((?:[^"\\]|\\.)*)"', disposition)
        extended = re.search(r"\bfilename\*=(?:UTF-8|utf-8)''([^;]+)", disposition)
        if filename_match is not None or extended is not None:
            filename = unquote(extended.group(1)) if extended else _unescape_form_param(filename_match.group(1))  # type: ignore[union-attr]
            files[name] = _Upload(filename, data, headers.get("content-type"))
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


def _normalise_params(raw: dict[str, Any]) -> dict[str, Any]:
    """Convert form strings to the types Telegram documents for each parameter name."""
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            if key in _JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    raise _bad_request(f"can't parse {key} JSON object") from None
            elif key in _BOOL_PARAMS:
                value = value.lower() in ("true", "1")
            elif key in _INT_PARAMS:
                with contextlib.suppress(ValueError):
                    value = int(value)
        params[key] = value
    return params


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    return None


class _DropConnection(Response):
    """A "response" that closes the TCP connection without writing anything, like a dead proxy."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_send = scope.get(_RAW_SEND_KEY)
        # uvicorn's h11 protocol passes the bound ``send`` of its request cycle, which owns the transport.
        transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
        if transport is None:  # pragma: no cover - only if uvicorn changes its internals
            # Start a response whose body never comes; uvicorn then closes the connection.
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
            return
        transport.close()
        # Wait for uvicorn to notice, so it does not try to answer on the closed connection.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while (await receive())["type"] != "http.disconnect":
                    pass


class FakeTelegram:
    """A fake api.telegram.org on 127.0.0.1. Use as a context manager, or call start()/stop().

    Args:
        token: the only token accepted in URLs; others get 401 Unauthorized.
        bot_username: the bot's username, as returned by getMe.
        global_per_second: sends allowed in any sliding one-second window, over all chats.
        per_chat_per_second: sends allowed per chat in any sliding one-second window.
        enforce_limits: whether those limits answer 429.
        latency: seconds each Bot API answer takes (not ``getUpdates``); a request counts
            against the flood limits when it arrives, as at Telegram.
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        *,
        bot_username: str = "duban_test_bot",
        global_per_second: int = 30,
        per_chat_per_second: int = 1,
        enforce_limits: bool = True,
        latency: float = 0.0,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        bot_id = _as_int(token.partition(":")[0])
        self.bot_user: dict[str, Any] = {
            "id": bot_id if bot_id is not None else 1,
            "is_bot": True,
            "first_name": "Duban Test Bot",
            "username": bot_username,
        }
        self.url = ""
        self.base_url = ""
        self.base_file_url = ""

        self._lock = threading.RLock()
        self._global_per_second = global_per_second
        self._per_chat_per_second = per_chat_per_second
        self._enforce_limits = enforce_limits
        # Seconds before each Bot API answer (not getUpdates): a round trip from a county's network.
        self._latency = latency
        self._open_calls = 0
        self._peak_open_calls = 0

        # Recorded behaviour of the bot.
        self._sent: list[SentMessage] = []
        self._requests: list[RequestRecord] = []
        self._answered_callbacks: list[dict[str, Any]] = []
        self._commands: list[dict[str, Any]] | None = None
        self._commands_by_scope: dict[str, list[dict[str, Any]]] = {}
        self._webhook: dict[str, Any] | None = None
        self._count_429 = 0

        # Telegram's side of the conversation.
        self._updates: list[_QueuedUpdate] = []
        self._next_update_id = 100_001
        self._confirmed_below = 0  # every update_id below this has been confirmed by an offset
        self._last_update: dict[str, Any] | None = None
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._last_message_id: dict[int, int] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._file_counter = itertools.count(1)
        self._callback_queries: dict[str, dict[str, Any]] = {}
        self._callback_counter = itertools.count(1)

        # Failure injection and flood control.
        self._failures: dict[str, deque[_Failure]] = {}
        self._drops: dict[str, int] = {}
        self._blocked: set[int] = set()
        self._forgotten: set[int] = set()
        self._outage: int | None = None
        self._send_times: deque[float] = deque()
        self._chat_send_times: dict[int, deque[float]] = {}

        # Long polling: one asyncio.Event per waiting getUpdates, set from any thread.
        self._poll_waiters: set[asyncio.Event] = set()
        self._poll_generation = 0
        self._closing = False

        # Server plumbing.
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_error: BaseException | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, _Upload]], Any]] = {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._true,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
        }
        # Telegram matches method names case-insensitively.
        self._method_names = {name.lower(): name for name in [*self._handlers, "getUpdates"]}
        self._starlette = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._api_endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._file_endpoint, methods=["GET"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            ]
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> FakeTelegram:
        """Serve on 127.0.0.1 at a free port; return once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeTelegram already started (it cannot be restarted)")
        # Bind and listen here, so the port is ours before the thread starts.
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else ~40 ms per request).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._socket = sock
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/bot"
        self.base_file_url = f"{self.url}/file/bot"
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            http="h11",  # _DropConnection relies on the h11 protocol's request cycle
            ws="none",
            lifespan="off",
            log_config=None,  # leave the test process's logging alone
            log_level=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"fake-telegram-{port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                error = self._thread_error
                self.stop()
                raise RuntimeError(f"FakeTelegram did not start: {error!r}") from error
            time.sleep(0.005)
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            pass
        return self

    def _run(self) -> None:
        server, sock = self._server, self._socket
        assert server is not None and sock is not None

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        try:
            asyncio.run(serve())
        except BaseException as exc:  # SystemExit on start-up failure, too
            self._thread_error = exc

    def stop(self) -> None:
        """Shut the server down (waking any long poll) and wait for its thread. Idempotent."""
        with self._lock:
            self._closing = True
            self._wake_pollers()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._socket = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ simulating users

    def user_message(
        self,
        user_id: int,
        text: str,
        *,
        reply_to_message_id: int | None = None,
        first_name: str = "测试",
        username: str | None = None,
    ) -> dict[str, Any]:
        """The user sends ``text`` in their private chat with the bot. Returns the queued Update.

        A text starting with "/" carries a bot_command entity over its first word, as Telegram sends it.
        """
        with self._lock:
            self._remember_user(user_id, first_name, username)
            message = self._new_user_message(user_id, reply_to_message_id)
            message["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0] if text.strip() else text
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
            return self._queue({"message": message})

    def group_message(
        self, chat_id: int, user_id: int, text: str, *, first_name: str = "测试", username: str | None = None
    ) -> dict[str, Any]:
        """The user sends ``text`` in a group the bot is a member of (``chat_id`` negative). Returns the Update.

        The message's ``chat`` has ``type`` "group" (or "supergroup" for -100… ids) and a title;
        ``from`` is the user (https://core.telegram.org/bots/api#message, #chat).
        """
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        with self._lock:
            self._remember_user(user_id, first_name, username)
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat_id),
                "from": self._user(user_id),
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "text": text,
            }
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
            self._messages[(chat_id, message["message_id"])] = message
            return self._queue({"message": message})

    def user_document(
        self,
        user_id: int,
        file_name: str,
        content: bytes,
        *,
        caption: str | None = None,
        mime_type: str = "application/pdf",
        reply_to_message_id: int | None = None,
        size_override: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a file. Its bytes are stored, so getFile and the download work.

        ``size_override`` makes Telegram report that size instead of ``len(content)`` (getFile then
        refuses files over 20 MB with "file is too big", as Telegram does). Returns the queued Update.
        """
        with self._lock:
            message = self._new_user_message(user_id, reply_to_message_id)
            stored = self._store_file(content, "documents", file_name, mime_type, size_override)
            message["document"] = self._document_object(stored)
            if caption is not None:
                message["caption"] = caption
            return self._queue({"message": message})

    def user_photo(self, user_id: int, content: bytes, *, caption: str | None = None) -> dict[str, Any]:
        """The user sends a photo: a PhotoSize array, largest last (every size downloads ``content``)."""
        with self._lock:
            message = self._new_user_message(user_id, None)
            stored = self._store_file(content, "photos", "photo.jpg", "image/jpeg", None)
            message["photo"] = [
                {
                    "file_id": stored.file_id,
                    "file_unique_id": f"{stored.file_unique_id}-{side}",
                    "width": side,
                    "height": side * 3 // 4,
                    "file_size": stored.size,
                }
                for side in (90, 320, 1280)
            ]
            if caption is not None:
                message["caption"] = caption
            return self._queue({"message": message})

    def user_callback(self, user_id: int, message_id: int, data: str) -> str:
        """The user presses an inline button with ``data`` on a bot message in their chat.

        Returns the callback query id (to match against ``answered_callbacks``).
        """
        with self._lock:
            message = self._messages.get((user_id, message_id))
            if message is None or message.get("from", {}).get("id") != self.bot_user["id"]:
                raise ValueError(f"the bot sent no message {message_id} to chat {user_id}")
            query_id = f"{user_id}{next(self._callback_counter):06d}"
            query = {
                "id": query_id,
                "from": self._user(user_id),
                "message": copy.deepcopy(message),
                "chat_instance": f"ci{user_id}",
                "data": data,
            }
            self._callback_queries[query_id] = query
            self._queue({"callback_query": query})
            return query_id

    def user_edit(self, user_id: int, message_id: int, text: str) -> dict[str, Any]:
        """The user edits a text message they sent earlier. Returns the queued edited_message Update."""
        with self._lock:
            message = self._messages.get((user_id, message_id))
            if message is None or message.get("from", {}).get("id") != user_id:
                raise ValueError(f"user {user_id} sent no message {message_id}")
            message["text"] = text
            message["edit_date"] = int(time.time())
            message.pop("entities", None)
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0] if text.strip() else text
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
            return self._queue({"edited_message": copy.deepcopy(message)})

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue a raw Update dict, keeping its ``update_id`` (one is assigned if missing).

        Pushing an update whose id the bot already confirmed delivers it once more (Telegram would
        not; this is how tests simulate a redelivery, e.g. after a crash before the offset advanced).
        """
        with self._lock:
            update = copy.deepcopy(update)
            update_id = _as_int(update.get("update_id"))
            if update_id is None:
                update_id = self._next_update_id
                update["update_id"] = update_id
            self._next_update_id = max(self._next_update_id, update_id + 1)
            self._updates.append(_QueuedUpdate(update, redelivery=update_id < self._confirmed_below))
            self._last_update = copy.deepcopy(update)
            self._wake_pollers()

    @property
    def last_update(self) -> dict[str, Any] | None:
        """The most recently queued update (a copy)."""
        with self._lock:
            return copy.deepcopy(self._last_update)

    @property
    def pending_updates(self) -> int:
        """How many updates are queued and not yet confirmed by an offset."""
        with self._lock:
            return len(self._updates)

    @property
    def pending_polls(self) -> int:
        """How many getUpdates requests are waiting right now (long polling)."""
        with self._lock:
            return len(self._poll_waiters)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The current state of a message in a chat (after edits), as Telegram would send it."""
        with self._lock:
            found = self._messages.get((chat_id, message_id))
            return copy.deepcopy(found) if found is not None else None

    # ------------------------------------------------------------------ what the bot did

    @property
    def sent(self) -> list[SentMessage]:
        """Every successful sendMessage/sendDocument/editMessageText, in order (a copy of the list)."""
        with self._lock:
            return list(self._sent)

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        """The sends to one chat, in order."""
        with self._lock:
            return [message for message in self._sent if message.chat_id == chat_id]

    @property
    def answered_callbacks(self) -> list[dict[str, Any]]:
        """The parameters of every answerCallbackQuery, in order."""
        with self._lock:
            return copy.deepcopy(self._answered_callbacks)

    @property
    def commands(self) -> list[dict[str, Any]] | None:
        """The command list of the last setMyCommands (None before any, or after deleteMyCommands)."""
        with self._lock:
            return copy.deepcopy(self._commands)

    @property
    def webhook(self) -> dict[str, Any] | None:
        """The parameters of the last setWebhook; None when no webhook is set."""
        with self._lock:
            return copy.deepcopy(self._webhook)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered (or dropped, status 0), in order of completion."""
        with self._lock:
            return list(self._requests)

    @property
    def peak_open_calls(self) -> int:
        """The most Bot API calls (not ``getUpdates``) the bot had waiting for an answer at once."""
        with self._lock:
            return self._peak_open_calls

    @property
    def count_429(self) -> int:
        """How many 429 Too Many Requests answers were given (flood limits and injected ones)."""
        with self._lock:
            return self._count_429

    def wait_for(self, predicate: Callable[[SentMessage], bool], timeout: float = 5.0) -> SentMessage:
        """Block until a sent message satisfies ``predicate``; return the first that does.

        Raises AssertionError listing what was sent on timeout. Not for use on a thread running an
        event loop (it would stall a bot on that loop): use ``await wait_for_async(...)`` there.
        """
        self._refuse_inside_event_loop("wait_for", "wait_for_async")
        deadline = time.monotonic() + timeout
        while True:
            found = self._find_sent(predicate)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"no sent message matched within {timeout}s\n{self.describe()}")
            time.sleep(0.01)

    async def wait_for_async(self, predicate: Callable[[SentMessage], bool], timeout: float = 5.0) -> SentMessage:
        """``wait_for`` for coroutines: yields to the event loop while it waits."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find_sent(predicate)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"no sent message matched within {timeout}s\n{self.describe()}")
            await asyncio.sleep(0.01)

    def wait_for_count(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` messages were sent (AssertionError with a dump on timeout)."""
        self._refuse_inside_event_loop("wait_for_count", "wait_for_count_async")
        deadline = time.monotonic() + timeout
        while len(self.sent) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(f"expected {n} sent messages within {timeout}s\n{self.describe()}")
            time.sleep(0.01)

    async def wait_for_count_async(self, n: int, timeout: float = 10.0) -> None:
        """``wait_for_count`` for coroutines."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(f"expected {n} sent messages within {timeout}s\n{self.describe()}")
            await asyncio.sleep(0.01)

    def describe(self) -> str:
        """A readable dump of what was sent and of the last requests, for assertion messages."""
        with self._lock:
            sent = list(self._sent)
            recent = self._requests[-20:]
            total = len(self._requests)
        lines = [f"sent ({len(sent)}):"]
        for message in sent:
            text = message.text if message.text is None or len(message.text) <= 200 else message.text[:200] + "…"
            extra = f" document={message.document['file_name']!r}" if message.document else ""
            keyboard = " +markup" if message.reply_markup else ""
            lines.append(
                f"  {message.method} chat={message.chat_id} id={message.message_id}{extra}{keyboard}: {text!r}"
            )
        lines.append(f"last {len(recent)} of {total} requests:")
        lines.extend(f"  {record.method} chat={record.chat_id} -> {record.status}" for record in recent)
        return "\n".join(lines)

    # ------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        method: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error ``status``.

        A 429 always carries ``retry_after`` (default 1), as Telegram's do. Use the method name
        "download" to fail file downloads.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        key = self._method_key(method)
        with self._lock:
            queue = self._failures.setdefault(key, deque())
            queue.extend(_Failure(status, retry_after, description) for _ in range(times))

    def drop_next(self, method: str, times: int = 1) -> None:
        """Close the connection of the next ``times`` calls of ``method`` without any HTTP answer."""
        key = self._method_key(method)
        with self._lock:
            self._drops[key] = self._drops.get(key, 0) + times

    def start_outage(self, status: int = 502) -> None:
        """From now on every Bot API call answers ``status`` (a 5xx), until :meth:`end_outage`.

        What an outage of api.telegram.org looks like to a client: its front end answers 5xx
        ("502 Bad Gateway") for every method.  The Bot API documents that errors come as
        ``{"ok": false, "error_code", "description"}`` with the HTTP status
        (https://core.telegram.org/bots/api#making-requests), which is the body given here;
        PTB raises ``NetworkError`` for a 5xx either way.
        """
        if not 500 <= status < 600:
            raise ValueError("an outage answers a 5xx status")
        with self._lock:
            self._outage = status

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def block_user(self, chat_id: int) -> None:
        """From now on, calls for this chat answer 403 "Forbidden: bot was blocked by the user"."""
        with self._lock:
            self._blocked.add(chat_id)

    def forget_chat(self, chat_id: int) -> None:
        """From now on, calls for this chat answer 400 "Bad Request: chat not found"."""
        with self._lock:
            self._forgotten.add(chat_id)

    def set_limits(
        self,
        *,
        global_per_second: int | None = None,
        per_chat_per_second: int | None = None,
        enforce: bool | None = None,
    ) -> None:
        """Change the flood limits; None leaves a setting as it is."""
        with self._lock:
            if global_per_second is not None:
                self._global_per_second = global_per_second
            if per_chat_per_second is not None:
                self._per_chat_per_second = per_chat_per_second
            if enforce is not None:
                self._enforce_limits = enforce

    def set_latency(self, seconds: float) -> None:
        """Answer every Bot API call (not ``getUpdates``) ``seconds`` after it arrives."""
        with self._lock:
            self._latency = seconds

    # ------------------------------------------------------------------ webhook mode

    def post_update_to(self, url: str, update: dict[str, Any], secret_token: str | None) -> int:
        """POST ``update`` to the bot's webhook as Telegram does; return the HTTP status it answered.

        Sends header X-Telegram-Bot-Api-Secret-Token unless ``secret_token`` is None. Blocks: on a
        thread with a running event loop use ``await post_update_to_async(...)``.
        """
        self._refuse_inside_event_loop("post_update_to", "post_update_to_async")
        content, headers = self._webhook_request(update, secret_token)
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            return client.post(url, content=content, headers=headers).status_code

    async def post_update_to_async(self, url: str, update: dict[str, Any], secret_token: str | None) -> int:
        """``post_update_to`` for coroutines."""
        content, headers = self._webhook_request(update, secret_token)
        async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
            response = await client.post(url, content=content, headers=headers)
            return response.status_code

    # ------------------------------------------------------------------ internals: users and updates

    def _user(self, user_id: int) -> dict[str, Any]:
        if user_id not in self._users:
            self._remember_user(user_id, "测试", None)
        return copy.deepcopy(self._users[user_id])

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id > 0:
            user = self._users.get(chat_id, {})
            chat = {"id": chat_id, "type": "private", "first_name": user.get("first_name", "测试")}
            if user.get("username"):
                chat["username"] = user["username"]
            return chat
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}

    def _next_message_id(self, chat_id: int) -> int:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return message_id

    def _remember_user(self, user_id: int, first_name: str, username: str | None) -> None:
        """Record the user's profile, as later messages and chats show it (a None username keeps the old one)."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "zh-hans"}
        username = username or self._users.get(user_id, {}).get("username")
        if username:
            user["username"] = username
        self._users[user_id] = user

    def _new_user_message(self, user_id: int, reply_to_message_id: int | None) -> dict[str, Any]:
        """A stored message from the user in their private chat (the caller adds the content)."""
        message: dict[str, Any] = {
            "message_id": self._next_message_id(user_id),
            "from": self._user(user_id),
            "chat": self._chat(user_id),
            "date": int(time.time()),
        }
        if reply_to_message_id is not None:
            replied = self._messages.get((user_id, reply_to_message_id))
            if replied is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {user_id} to reply to")
            message["reply_to_message"] = self._without_reply(replied)
        self._messages[(user_id, message["message_id"])] = message
        return message

    @staticmethod
    def _without_reply(message: dict[str, Any]) -> dict[str, Any]:
        """A copy for embedding as reply_to_message (Telegram does not nest replies further)."""
        embedded = copy.deepcopy(message)
        embedded.pop("reply_to_message", None)
        return embedded

    def _queue(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a new update (assigning the next update_id); return a copy of it."""
        update = {"update_id": self._next_update_id, **copy.deepcopy(payload)}
        self._next_update_id += 1
        self._updates.append(_QueuedUpdate(update))
        self._last_update = copy.deepcopy(update)
        self._wake_pollers()
        return copy.deepcopy(update)

    def _store_file(
        self, content: bytes, folder: str, file_name: str | None, mime_type: str | None, size_override: int | None
    ) -> _StoredFile:
        number = next(self._file_counter)
        suffix = ""
        if file_name and "." in file_name:
            candidate = file_name.rsplit(".", 1)[1].lower()
            if candidate.isascii() and candidate.isalnum():
                suffix = f".{candidate}"
        stored = _StoredFile(
            file_id=f"BQACAgFake{number:06d}{secrets.token_hex(6)}",
            file_unique_id=f"AgADFake{number:06d}",
            content=bytes(content),
            size=size_override if size_override is not None else len(content),
            file_path=f"{folder}/file_{number}{suffix}",
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    @staticmethod
    def _document_object(stored: _StoredFile) -> dict[str, Any]:
        document: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
        }
        if stored.file_name is not None:
            document["file_name"] = stored.file_name
        if stored.mime_type is not None:
            document["mime_type"] = stored.mime_type
        return document

    def _wake_pollers(self) -> None:
        """Wake every waiting getUpdates (call with the lock held)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for event in self._poll_waiters:
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(event.set)

    def _confirm(self, offset: int | None) -> None:
        """Forget updates confirmed by ``offset``, as Telegram does (call with the lock held)."""
        if not offset:
            return
        if offset < 0:  # keep only the last -offset updates
            removed, self._updates = self._updates[:offset], self._updates[offset:]
            for queued in removed:
                self._confirmed_below = max(self._confirmed_below, queued.update["update_id"] + 1)
            return
        self._updates = [
            queued
            for queued in self._updates
            if queued.update["update_id"] >= offset or (queued.redelivery and not queued.delivered)
        ]
        self._confirmed_below = max(self._confirmed_below, offset)

    def _find_sent(self, predicate: Callable[[SentMessage], bool]) -> SentMessage | None:
        with self._lock:
            candidates = list(self._sent)
        return next((message for message in candidates if predicate(message)), None)

    @staticmethod
    def _refuse_inside_event_loop(name: str, alternative: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise RuntimeError(
            f"FakeTelegram.{name} blocks the thread, and this thread runs an event loop (a bot served by it "
            f"would stall); use `await fake.{alternative}(...)` instead"
        )

    @staticmethod
    def _webhook_request(update: dict[str, Any], secret_token: str | None) -> tuple[bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json"}
        if secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        return json.dumps(update, ensure_ascii=False).encode("utf-8"), headers

    def _method_key(self, method: str) -> str:
        return self._method_names.get(method.lower(), method)

    # ------------------------------------------------------------------ internals: HTTP

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Outermost ASGI app: remember uvicorn's own ``send`` (for dropping connections), then route."""
        if scope["type"] == "http":
            scope[_RAW_SEND_KEY] = send
        await self._starlette(scope, receive, send)

    def _error_response(self, error: _ApiError) -> JSONResponse:
        """The Bot API error envelope (call with the lock held)."""
        body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
        if error.retry_after is not None:
            body["parameters"] = {"retry_after": error.retry_after}
        if error.status == 429:
            self._count_429 += 1
        return JSONResponse(body, status_code=error.status)

    def _record(self, method: str, at: float, status: int, chat_id: int | None) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, at, status, chat_id))

    def _injected(self, method: str) -> Response | None:
        """A drop or an injected failure due for ``method`` (call with the lock held)."""
        if self._outage is not None:
            return self._error_response(_ApiError(self._outage, _default_description(self._outage, None)))
        if self._drops.get(method, 0) > 0:
            self._drops[method] -= 1
            return _DropConnection()
        failures = self._failures.get(method)
        if failures:
            failure = failures.popleft()
            description = failure.description or _default_description(failure.status, failure.retry_after)
            return self._error_response(_ApiError(failure.status, description, retry_after=failure.retry_after))
        return None

    async def _not_found(self, request: Request) -> Response:
        with self._lock:
            self._requests.append(RequestRecord(request.url.path, time.monotonic(), 404, None))
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)

    async def _api_endpoint(self, request: Request) -> Response:
        """One Bot API call, answered after the configured latency (the request counts when it arrives)."""
        if request.path_params["method"].lower() == "getupdates":
            return await self._handle_api(request)
        with self._lock:
            self._open_calls += 1
            self._peak_open_calls = max(self._peak_open_calls, self._open_calls)
        try:
            response = await self._handle_api(request)
            if self._latency > 0:
                await asyncio.sleep(self._latency)
            return response
        finally:
            with self._lock:
                self._open_calls -= 1

    async def _handle_api(self, request: Request) -> Response:
        """POST/GET /bot{token}/{method}: check token and method, inject failures, then run the method."""
        at = time.monotonic()
        raw_method = request.path_params["method"]
        method = self._method_key(raw_method)
        body = await request.body()
        chat_id: int | None = None
        try:
            if request.path_params["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            if raw_method.lower() not in self._method_names:
                raise _ApiError(404, "Not Found")
            params, uploads = self._parse_request(request, body)
            chat_id = _as_int(params.get("chat_id"))
            with self._lock:
                injected = self._injected(method)
                if injected is not None:
                    status = 0 if isinstance(injected, _DropConnection) else injected.status_code
                    self._requests.append(RequestRecord(method, at, status, chat_id))
                    return injected
            if method == "getUpdates":
                result: Any = await self._get_updates(params)
                self._record(method, at, 200, chat_id)
                return JSONResponse({"ok": True, "result": result})
            with self._lock:
                if chat_id is not None and chat_id in self._blocked:
                    raise _ApiError(403, "Forbidden: bot was blocked by the user")
                if chat_id is not None and chat_id in self._forgotten:
                    raise _bad_request("chat not found")
                result = self._handlers[method](params, uploads)
                self._requests.append(RequestRecord(method, at, 200, chat_id))
            return JSONResponse({"ok": True, "result": result})
        except _ApiError as error:
            with self._lock:
                self._requests.append(RequestRecord(method, at, error.status, chat_id))
                return self._error_response(error)

    async def _file_endpoint(self, request: Request) -> Response:
        """GET /file/bot{token}/{file_path}: the stored bytes."""
        at = time.monotonic()
        with self._lock:
            if request.path_params["token"] != self.token:
                response: Response = self._error_response(_ApiError(401, "Unauthorized"))
            else:
                injected = self._injected(DOWNLOAD_METHOD)
                stored = self._files_by_path.get(request.path_params["file_path"])
                if injected is not None:
                    response = injected
                elif stored is None:
                    response = self._error_response(_ApiError(404, "Not Found"))
                else:
                    response = Response(stored.content, media_type=stored.mime_type or "application/octet-stream")
            status = 0 if isinstance(response, _DropConnection) else response.status_code
            self._requests.append(RequestRecord(DOWNLOAD_METHOD, at, status, None))
        return response

    @staticmethod
    def _parse_request(request: Request, body: bytes) -> tuple[dict[str, Any], dict[str, _Upload]]:
        """Query string + url-encoded / multipart / JSON body -> typed parameters and uploads."""
        raw: dict[str, Any] = dict(request.query_params)
        uploads: dict[str, _Upload] = {}
        content_type = request.headers.get("content-type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if body:
            if media_type == "application/json":
                try:
                    decoded = json.loads(body)
                except ValueError:
                    raise _bad_request("can't parse JSON request body") from None
                if not isinstance(decoded, dict):
                    raise _bad_request("request body must be a JSON object")
                raw.update(decoded)
            elif media_type == "multipart/form-data":
                fields, uploads = _parse_multipart(content_type, body)
                raw.update(fields)
            else:
                raw.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return _normalise_params(raw), uploads

    # ------------------------------------------------------------------ internals: Bot API methods
    # Each runs with the lock held, takes (params, uploads) and returns the "result" or raises _ApiError.

    def _true(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        return True

    def _get_me(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Long polling: answer as soon as an update is queued, or with [] after ``timeout`` seconds."""
        limit = min(max(_as_int(params.get("limit")) or 100, 1), 100)
        timeout = max(0.0, float(params.get("timeout") or 0))
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._webhook is not None:
                raise _ApiError(409, WEBHOOK_ACTIVE)
            self._confirm(_as_int(params.get("offset")))
            self._poll_generation += 1
            generation = self._poll_generation
            self._wake_pollers()  # an older poll still waiting is now terminated, as on Telegram
        while True:
            with self._lock:
                if generation != self._poll_generation:
                    raise _ApiError(409, POLL_TERMINATED)
                ready = sorted(self._updates, key=lambda queued: queued.update["update_id"])[:limit]
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or self._closing:
                    for queued in ready:
                        queued.delivered = True
                    return [copy.deepcopy(queued.update) for queued in ready]
                event = asyncio.Event()
                self._poll_waiters.add(event)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await event.wait()
            finally:
                with self._lock:
                    self._poll_waiters.discard(event)

    def _set_webhook(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        url = params.get("url") or ""
        if params.get("drop_pending_updates"):
            self._drop_pending()
        if not url:
            self._webhook = None
            return True
        self._webhook = {key: value for key, value in params.items() if key != "certificate"}
        if "certificate" in uploads:
            self._webhook["certificate"] = uploads["certificate"].content
        return True

    def _delete_webhook(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        if params.get("drop_pending_updates"):
            self._drop_pending()
        self._webhook = None
        return True

    def _drop_pending(self) -> None:
        if self._updates:
            highest = max(queued.update["update_id"] for queued in self._updates)
            self._confirmed_below = max(self._confirmed_below, highest + 1)
        self._updates = []

    def _get_webhook_info(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": (self._webhook or {}).get("url", ""),
            "has_custom_certificate": bool(self._webhook and "certificate" in self._webhook),
            "pending_update_count": len(self._updates),
        }
        if self._webhook:
            for key in ("max_connections", "allowed_updates", "ip_address"):
                if key in self._webhook:
                    info[key] = self._webhook[key]
        return info

    def _require_chat(self, params: dict[str, Any]) -> int:
        if "chat_id" not in params or params["chat_id"] in ("", None):
            raise _bad_request("chat_id is empty")
        chat_id = _as_int(params["chat_id"])
        if chat_id is None or chat_id == 0:
            raise _bad_request("chat not found")
        return chat_id

    def _admit_send(self, chat_id: int, now: float) -> None:
        """Enforce the flood limits for one send, then count it (raises the 429)."""
        window = self._chat_send_times.setdefault(chat_id, deque())
        for times in (self._send_times, window):
            while times and times[0] <= now - 1.0:
                times.popleft()
        if self._enforce_limits:
            waits = []
            if len(self._send_times) >= self._global_per_second:
                waits.append(self._send_times[0] + 1.0 - now)
            if len(window) >= self._per_chat_per_second:
                waits.append(window[0] + 1.0 - now)
            if waits:
                retry_after = max(1, math.ceil(max(waits)))
                raise _ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        self._send_times.append(now)
        window.append(now)

    @staticmethod
    def _check_markup(markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is not None:
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict):
                        raise _bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad_request("BUTTON_DATA_INVALID")
        return markup

    @staticmethod
    def _render_text(
        text: str | None, parse_mode: str | None, entities: Any, *, caption: bool
    ) -> tuple[str, list[Any]]:
        """What Telegram makes of a text/caption parameter: (plain text, entities), validated."""
        text = text or ""
        if parse_mode and parse_mode.upper() == "HTML":
            plain, parsed = _parse_html(text)
        else:
            plain, parsed = text, list(entities) if isinstance(entities, list) else []
        if caption:
            if _utf16_len(plain) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
        else:
            if not plain.strip():
                raise _bad_request("message text is empty")
            if _utf16_len(plain) > MAX_TEXT_LENGTH:
                raise _bad_request("message is too long")
        return plain, parsed

    def _reply_target(self, chat_id: int, params: dict[str, Any]) -> tuple[int | None, int | None]:
        """(the message id the bot asked to reply to, that message if it exists in the chat).

        From reply_parameters (what PTB 22 sends) or the older reply_to_message_id; a missing target
        is a 400 unless allow_sending_without_reply is set.
        """
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        requested = _as_int(params.get("reply_to_message_id"))
        if isinstance(reply, dict):
            requested = _as_int(reply.get("message_id"))
            allow_missing = allow_missing or bool(reply.get("allow_sending_without_reply"))
        if requested is None:
            return None, None
        if (chat_id, requested) not in self._messages:
            if allow_missing:
                return requested, None
            raise _bad_request("message to be replied not found")
        return requested, requested

    def _bot_message(self, chat_id: int, reply_to: int | None, markup: dict[str, Any] | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "from": dict(self.bot_user),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
        }
        if reply_to is not None:
            message["reply_to_message"] = self._without_reply(self._messages[(chat_id, reply_to)])
        if markup is not None and "inline_keyboard" in markup:  # only inline keyboards are echoed
            message["reply_markup"] = markup
        return message

    def _send_message(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        chat_id = self._require_chat(params)
        text = params.get("text")
        parse_mode = params.get("parse_mode") or None
        plain, entities = self._render_text(text, parse_mode, params.get("entities"), caption=False)
        markup = self._check_markup(params.get("reply_markup"))
        reply_to, replied = self._reply_target(chat_id, params)
        now = time.monotonic()
        self._admit_send(chat_id, now)
        message = self._bot_message(chat_id, replied, markup)
        message["text"] = plain
        if entities:
            message["entities"] = entities
        self._messages[(chat_id, message["message_id"])] = message
        self._sent.append(
            SentMessage(
                "sendMessage", chat_id, message["message_id"], text, markup, reply_to, parse_mode, None, now, plain
            )
        )
        return copy.deepcopy(message)

    def _send_document(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        chat_id = self._require_chat(params)
        reference = params.get("document")
        upload = uploads.get("document")
        if upload is None and isinstance(reference, str) and reference.startswith("attach://"):
            upload = uploads.get(reference.removeprefix("attach://"))
        if upload is not None:
            stored = self._store_file(upload.content, "documents", upload.filename, upload.content_type, None)
        elif isinstance(reference, str) and reference in self._files:
            stored = self._files[reference]
        elif reference:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        else:
            raise _bad_request("there is no document in the request")
        caption = params.get("caption")
        parse_mode = params.get("parse_mode") or None
        plain, entities = self._render_text(caption, parse_mode, params.get("caption_entities"), caption=True)
        markup = self._check_markup(params.get("reply_markup"))
        reply_to, replied = self._reply_target(chat_id, params)
        now = time.monotonic()
        self._admit_send(chat_id, now)
        message = self._bot_message(chat_id, replied, markup)
        message["document"] = self._document_object(stored)
        if caption:
            message["caption"] = plain
            if entities:
                message["caption_entities"] = entities
        self._messages[(chat_id, message["message_id"])] = message
        document = {
            "file_name": stored.file_name,
            "content": stored.content,
            "mime_type": stored.mime_type,
            "file_id": stored.file_id,
        }
        self._sent.append(
            SentMessage(
                "sendDocument",
                chat_id,
                message["message_id"],
                caption,
                markup,
                reply_to,
                parse_mode,
                document,
                now,
                plain if caption else None,
            )
        )
        return copy.deepcopy(message)

    def _editable_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if params.get("inline_message_id"):
            raise _bad_request("inline messages are not supported by FakeTelegram")
        chat_id = self._require_chat(params)
        message_id = _as_int(params.get("message_id"))
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise _bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        return chat_id, message

    def _edit_message_text(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        chat_id, message = self._editable_message(params)
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        text = params.get("text")
        parse_mode = params.get("parse_mode") or None
        plain, entities = self._render_text(text, parse_mode, params.get("entities"), caption=False)
        markup = self._check_markup(params.get("reply_markup"))
        inline_markup = markup if markup is not None and "inline_keyboard" in markup else None
        if (
            plain == message["text"]
            and entities == message.get("entities", [])
            and inline_markup == message.get("reply_markup")
        ):
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        now = time.monotonic()
        self._admit_send(chat_id, now)
        message["text"] = plain
        message["edit_date"] = int(time.time())
        if entities:
            message["entities"] = entities
        else:
            message.pop("entities", None)
        if inline_markup is not None:
            message["reply_markup"] = inline_markup
        else:
            message.pop("reply_markup", None)
        self._sent.append(
            SentMessage(
                "editMessageText", chat_id, message["message_id"], text, markup, None, parse_mode, None, now, plain
            )
        )
        return copy.deepcopy(message)

    def _edit_message_reply_markup(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        _, message = self._editable_message(params)
        markup = self._check_markup(params.get("reply_markup"))
        inline_markup = markup if markup is not None and "inline_keyboard" in markup else None
        if inline_markup == message.get("reply_markup"):
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        if inline_markup is not None:
            message["reply_markup"] = inline_markup
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _delete_message(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        chat_id = self._require_chat(params)
        message_id = _as_int(params.get("message_id"))
        if message_id is None or self._messages.pop((chat_id, message_id), None) is None:
            raise _bad_request("message to delete not found")
        return True

    def _answer_callback_query(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callback_queries:
            raise _bad_request("query is too old and response timeout expired or query ID is invalid")
        self._answered_callbacks.append(dict(params))
        return True

    def _get_file(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise _bad_request("wrong file_id or the file is temporarily unavailable")
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }

    @staticmethod
    def _scope_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    def _set_my_commands(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands = copy.deepcopy(commands)
        self._commands_by_scope[self._scope_key(params)] = copy.deepcopy(commands)
        return True

    def _get_my_commands(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> list[dict[str, Any]]:
        return copy.deepcopy(self._commands_by_scope.get(self._scope_key(params), []))

    def _delete_my_commands(self, params: dict[str, Any], uploads: dict[str, _Upload]) -> bool:
        self._commands_by_scope.pop(self._scope_key(params), None)
        self._commands = None
        return True
