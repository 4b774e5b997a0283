"""A fake WeCom server API on loopback, plus helpers that build callbacks as WeCom sends them.

``FakeWeCom`` speaks the real paths and JSON shapes (errors as ``{"errcode", "errmsg"}`` with
HTTP 200, as WeCom answers) for the endpoints the bot uses: gettoken, message/send,
message/update_template_card, media/upload, webhook/send and webhook/upload_media. It runs
uvicorn in a daemon thread with its own event loop; everything it records is guarded by a
lock, so tests read it from their own thread.

It answers as WeCom's documentation says, not as our client expects; each behaviour names
its page:

* 发送应用消息 https://developer.work.weixin.qq.com/document/path/90236
* 更新模版卡片消息 https://developer.work.weixin.qq.com/document/path/94888
* 上传临时素材 https://developer.work.weixin.qq.com/document/path/90253
* 群机器人配置说明 https://developer.work.weixin.qq.com/document/path/91770
* 全局错误码 https://developer.work.weixin.qq.com/document/path/90455

Every message and card body is checked against the documented schema, so a shape WeCom
would refuse fails the test that sent it (see ``schema_errors``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from bot.wecom.crypto import WeComCrypto

__all__ = ["FakeWeCom", "card_event_xml", "make_callback", "text_message_xml"]

GETTOKEN = "/cgi-bin/gettoken"
SEND = "/cgi-bin/message/send"
UPDATE_CARD = "/cgi-bin/message/update_template_card"
MEDIA_UPLOAD = "/cgi-bin/media/upload"
MEDIA_GET = "/cgi-bin/media/get"
ROBOT_SEND = "/cgi-bin/webhook/send"
ROBOT_UPLOAD = "/cgi-bin/webhook/upload_media"

APP_MSGTYPES = frozenset({"text", "markdown", "template_card", "file", "image"})
ROBOT_MSGTYPES = frozenset({"text", "markdown", "file", "image", "news", "template_card"})
# 90236 模板卡片消息: the five card types; the last three call back and return a response_code.
CARD_TYPES = frozenset({"text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"})
CALLBACK_CARD_TYPES = frozenset({"button_interaction", "vote_interaction", "multiple_interaction"})
MEDIA_TYPES = frozenset({"image", "voice", "video", "file"})
MIN_MEDIA_BYTES = 6  # 90253: "所有文件size必须大于5个字节"
# 90236 频率限制: "每应用对同一个成员不可超过30次/分钟,1000次/小时,超过部分会被丢弃不下发"
MEMBER_PER_MINUTE, MEMBER_PER_HOUR = 30, 1000
ROBOT_PER_MINUTE = 20  # 91770: "每个机器人发送的消息不能超过20条/分钟"
FREQ_LIMIT = 45009  # 90455: 接口调用超过限制
ALL_RECIPIENTS_INVALID = 81013  # 90236/90455: "如果全部接收人无权限或不存在,则本次调用返回失败,errcode为81013"
INVALID_PARAMETER = 40058  # 90455: 不合法的参数(传递参数不符合系统要求,需要参照具体API接口说明)
CARD_ACTION_INVALID = 42045  # WeCom's answer to a card_action it cannot use ("card_action Missing or Invalid")
TASK_ID_PATTERN = re.compile(r"[0-9A-Za-z_\-@]{1,128}")  # 90236: "只能由数字、字母和'_-@'组成,最长128字节"
BUTTON_LIST_MAX = 6  # 90236 按钮交互型: button_list "列表长度不超过6"
RESPONSE_CODE_TTL = 72 * 3600  # 94888: "response_code的有效期是72小时"


def _err(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg}


def _card_action_error(card: dict[str, Any], *, required: bool) -> dict[str, Any] | None:
    """90236 文本通知型/图文展示型: card_action is required and its type is 1 (url) or 2 (小程序)."""
    action = card.get("card_action")
    if action is None and not required:
        return None
    if not isinstance(action, dict) or action.get("type") not in (1, 2):
        return _err(CARD_ACTION_INVALID, "Template_Card card_action Missing or Invalid")
    if action["type"] == 1 and not action.get("url"):
        return _err(CARD_ACTION_INVALID, "Template_Card card_action.url Missing")
    if action["type"] == 2 and not action.get("appid"):
        return _err(CARD_ACTION_INVALID, "Template_Card card_action.appid Missing")
    return None


def card_schema_error(card: object) -> dict[str, Any] | None:
    """What WeCom answers to a template_card body it cannot use, or None (90236 模板卡片消息)."""
    if not isinstance(card, dict):
        return _err(INVALID_PARAMETER, "template_card must be an object")
    card_type = card.get("card_type")
    if card_type not in CARD_TYPES:
        return _err(INVALID_PARAMETER, f"invalid card_type {card_type!r}")
    title = card.get("main_title")
    if title is not None and (not isinstance(title, dict) or not isinstance(title.get("title", ""), str)):
        return _err(INVALID_PARAMETER, "main_title must be an object")
    if card_type in ("text_notice", "news_notice"):
        # 文本通知型: "main_title.title和sub_title_text必须有一项填写"; card_action 必填, type 取值范围为[1,2]
        if card_type == "text_notice" and not ((title or {}).get("title") or card.get("sub_title_text")):
            return _err(INVALID_PARAMETER, "main_title.title or sub_title_text required")
        return _card_action_error(card, required=True)
    # 按钮交互型 and the other callback cards: main_title and task_id required.
    if not isinstance(title, dict) or not title.get("title"):
        return _err(INVALID_PARAMETER, "main_title.title required")
    task_id = card.get("task_id")
    if not isinstance(task_id, str) or not TASK_ID_PATTERN.fullmatch(task_id):
        return _err(INVALID_PARAMETER, "task_id required: digits, letters and _-@, at most 128 bytes")
    if (error := _card_action_error(card, required=False)) is not None:
        return error
    if card_type == "button_interaction":
        buttons = card.get("button_list")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= BUTTON_LIST_MAX:
            return _err(INVALID_PARAMETER, f"button_list needs 1..{BUTTON_LIST_MAX} buttons")
        keys = []
        for button in buttons:
            if not isinstance(button, dict) or not button.get("text") or not button.get("key"):
                return _err(INVALID_PARAMETER, "every button needs text and key")
            if len(str(button["key"]).encode("utf-8")) > 1024:
                return _err(INVALID_PARAMETER, "button key longer than 1024 bytes")
            if button.get("style", 1) not in (1, 2, 3, 4):
                return _err(INVALID_PARAMETER, "button style must be 1..4")
            keys.append(button["key"])
        if len(set(keys)) != len(keys):  # "button_list.key ... 不可重复"
            return _err(INVALID_PARAMETER, "button keys must be distinct")
    return None


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Minimal multipart/form-data parser (python-multipart is not a dependency)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + match.group(1).encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = next(
            (line for line in head.decode("utf-8").split("\r\n") if line.lower().startswith("content-disposition")),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name is not None:
            fields[name.group(1)] = (unquote(filename.group(1)) if filename else None, data)
    return fields


class FakeWeCom:
    """A fake qyapi.weixin.qq.com. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        *,
        corp_id: str = "wwcorp123",
        secret: str = "app-secret",
        agent_id: int = 1000002,
        token_ttl: int = 7200,
        now: Callable[[], float] = time.monotonic,
        prefix: str = "",
    ) -> None:
        """``prefix`` serves every path under it, as a 政务微信 private deployment may."""
        self.prefix = prefix
        self.corp_id = corp_id
        self.secret = secret
        self.agent_id = agent_id
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # never reset: ids stay unique across reset()
        self._reset_state(now)
        # server
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._thread_error: BaseException | None = None
        self.url = ""

    def _reset_state(self, now: Callable[[], float]) -> None:
        self._now = now
        # recorded
        self.sent: list[dict[str, Any]] = []
        self.card_updates: list[dict[str, Any]] = []
        self.robot_messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.uploads: list[dict[str, Any]] = []
        self.token_requests = 0
        self.requests: list[tuple[str, float, int]] = []  # errcode is -status for injected HTTP errors
        self.dropped: list[dict[str, Any]] = []
        self.duplicates_suppressed: list[dict[str, Any]] = []
        # behaviour
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self._failures: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self._http_failures: dict[str, deque[int]] = defaultdict(deque)
        self._invalid_users: set[str] = set()
        self._member_limits: tuple[int, int] | None = (MEMBER_PER_MINUTE, MEMBER_PER_HOUR)
        self._deliveries: dict[str, deque[float]] = defaultdict(deque)
        self._robot_limit: int | None = ROBOT_PER_MINUTE
        self._robot_sends: dict[str, deque[float]] = defaultdict(deque)
        self._duplicates: dict[str, float] = {}  # request JSON -> when it was first delivered
        self._task_ids: set[str] = set()
        self._app_media: set[str] = set()
        self._member_files: dict[str, tuple[str, bytes]] = {}
        self._robot_media: dict[str, set[str]] = defaultdict(set)
        # code -> (spent, card type it updates, issued at)
        self._response_codes: dict[str, tuple[bool, str, float]] = {}
        self.schema_errors: list[dict[str, Any]] = []  # bodies refused for their shape, with the answer

    def reset(self, *, now: Callable[[], float] | None = None) -> None:
        """Forget everything recorded and every behaviour set, keeping the server running.

        Lets a test module share one server (start-up and shutdown cost ~0.2 s each).
        Tokens issued before the reset become invalid (40014).
        """
        with self._lock:
            self._reset_state(self._now if now is None else now)

    # ------------------------------------------------------------------ lifecycle

    def _app(self) -> Starlette:
        routes = [
            Route(GETTOKEN, self._gettoken, methods=["GET"]),
            Route(SEND, self._send, methods=["POST"]),
            Route(UPDATE_CARD, self._update_card, methods=["POST"]),
            Route(MEDIA_UPLOAD, self._media_upload, methods=["POST"]),
            Route(MEDIA_GET, self._media_get, methods=["GET"]),
            Route(ROBOT_SEND, self._robot_send, methods=["POST"]),
            Route(ROBOT_UPLOAD, self._robot_upload, methods=["POST"]),
        ]
        return Starlette(routes=[Mount(self.prefix, routes=routes)] if self.prefix else routes)

    def start(self, timeout: float = 10.0) -> FakeWeCom:
        """Serve on 127.0.0.1 at a free port; return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeWeCom already started")
        # Bind the socket here, so the port is ours before the thread starts (no race for it).
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say they are
        # TCP, and without it every answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_config=None,  # leave the test process's logging configuration alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"fake-wecom-{port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                error = self._thread_error
                self.stop()
                raise RuntimeError("FakeWeCom did not start") from error
            time.sleep(0.005)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # uvicorn signals start-up failure with SystemExit
            self._thread_error = exc
        finally:
            loop.close()

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeWeCom:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ behaviour knobs

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 42001."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = float("-inf")

    def fail_next(self, path: str, errcode: int, *, times: int = 1, errmsg: str = "") -> None:
        """The next ``times`` requests to ``path`` answer ``errcode`` (HTTP 200, WeCom's envelope)."""
        with self._lock:
            self._failures[path].extend([(errcode, errmsg or f"fake error {errcode}")] * times)

    def http_error_next(self, path: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` answer HTTP ``status`` with a non-JSON body."""
        with self._lock:
            self._http_failures[path].extend([status] * times)

    def mark_invalid_user(self, userid: str) -> None:
        """A member who left: message/send lists ``userid`` in invaliduser and delivers nothing to it.

        90236: "如果部分接收人无权限或不存在,发送仍然执行,但会返回无效的部分(即invaliduser…)";
        "如果全部接收人无权限或不存在,则本次调用返回失败,errcode为81013"。
        """
        with self._lock:
            self._invalid_users.add(userid.lower())

    def set_member_limits(self, per_minute: int = MEMBER_PER_MINUTE, per_hour: int = MEMBER_PER_HOUR) -> None:
        """Per-member limits (on by default at WeCom's 30/min, 1000/h); beyond them nothing is delivered."""
        with self._lock:
            self._member_limits = (per_minute, per_hour)

    def set_robot_limit(self, per_minute: int = ROBOT_PER_MINUTE) -> None:
        """Beyond ``per_minute`` sends per webhook key (20 by default, as 91770 says), webhook/send answers 45009."""
        with self._lock:
            self._robot_limit = per_minute

    def register_response_code(self, code: str, card_type: str = "button_interaction") -> None:
        """Accept ``code`` once on update_template_card (as if it came with a card callback)."""
        with self._lock:
            self._response_codes[code] = (False, card_type, self._now())

    def delivered_to(self, userid: str) -> list[dict[str, Any]]:
        """Every app message delivered to ``userid``, in order."""
        with self._lock:
            return [m for m in self.sent if userid.lower() in m["touser"].lower().split("|")]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """Block until a message in ``sent`` satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find_sent(predicate)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no sent message matched within {timeout} s; sent={self.sent!r}")
            time.sleep(0.01)

    async def wait_for_async(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """``wait_for`` for async tests: yields to the test's event loop while waiting."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find_sent(predicate)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no sent message matched within {timeout} s; sent={self.sent!r}")
            await asyncio.sleep(0.01)

    def _find_sent(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        with self._lock:
            snapshot = list(self.sent)
        return next((message for message in snapshot if predicate(message)), None)

    # ------------------------------------------------------------------ plumbing

    def _answer(self, path: str, payload: dict[str, Any]) -> JSONResponse:
        with self._lock:
            self.requests.append((path, self._now(), int(payload.get("errcode", 0))))
        return JSONResponse(payload)

    def _injected(self, path: str) -> Response | None:
        """An injected HTTP error or errcode for this request, if one is queued."""
        with self._lock:
            if self._http_failures[path]:
                status = self._http_failures[path].popleft()
                self.requests.append((path, self._now(), -status))
                return PlainTextResponse("fake upstream failure", status_code=status)
            injected = self._failures[path].popleft() if self._failures[path] else None
        if injected is not None:
            return self._answer(path, _err(*injected))
        return None

    def _token_error(self, request: Request) -> dict[str, Any] | None:
        token = request.query_params.get("access_token")
        if not token:
            return _err(41001, "access_token missing")
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            return _err(40014, "invalid access_token")
        if self._now() >= expiry:
            return _err(42001, "access_token expired")
        return None

    async def _json_body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}-{secrets.token_hex(4)}"

    # ------------------------------------------------------------------ app endpoints

    async def _gettoken(self, request: Request) -> Response:
        with self._lock:
            self.token_requests += 1
        if (injected := self._injected(GETTOKEN)) is not None:
            return injected
        if request.query_params.get("corpid") != self.corp_id:
            return self._answer(GETTOKEN, _err(40013, "invalid corpid"))
        if request.query_params.get("corpsecret") != self.secret:
            return self._answer(GETTOKEN, _err(40001, "invalid credential"))
        token = self._next_id("tok-")
        with self._lock:
            self._tokens[token] = self._now() + self.token_ttl
        return self._answer(
            GETTOKEN, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl}
        )

    def _member_allows(self, userid: str, now: float) -> bool:
        """Record a delivery to ``userid`` if the per-member limits allow it (caller holds the lock)."""
        times = self._deliveries[userid]
        while times and now - times[0] >= 3600:
            times.popleft()
        if self._member_limits is not None:
            per_minute, per_hour = self._member_limits
            if len(times) >= per_hour or sum(1 for t in times if now - t < 60) >= per_minute:
                return False
        times.append(now)
        return True

    def _schema_refusal(self, path: str, body: dict[str, Any], answer: dict[str, Any]) -> JSONResponse:
        with self._lock:
            self.schema_errors.append({"path": path, "body": body, "answer": answer})
        return self._answer(path, answer)

    async def _send(self, request: Request) -> Response:
        """message/send (90236)."""
        if (injected := self._injected(SEND)) is not None:
            return injected
        if (error := self._token_error(request)) is not None:
            return self._answer(SEND, error)
        body = await self._json_body(request)
        if body is None:
            return self._answer(SEND, _err(47001, "data format error"))
        if body.get("agentid") != self.agent_id:
            return self._answer(SEND, _err(40056, "invalid agentid"))
        msgtype = body.get("msgtype")
        if msgtype not in APP_MSGTYPES or not isinstance(body.get(msgtype), dict):
            return self._schema_refusal(SEND, body, _err(40008, "invalid message type"))
        content = body[msgtype]
        if msgtype in {"text", "markdown"} and not content.get("content"):
            return self._schema_refusal(SEND, body, _err(41009, "missing content"))
        if msgtype == "file" and content.get("media_id") not in self._app_media:
            return self._answer(SEND, _err(40007, "invalid media_id"))
        if body.get("enable_duplicate_check") not in (None, 0, 1):
            return self._schema_refusal(SEND, body, _err(INVALID_PARAMETER, "enable_duplicate_check is 0 or 1"))
        interval = body.get("duplicate_check_interval", 1800)  # 90236: "默认1800秒,最长不超过4小时"
        if not isinstance(interval, int) or not 0 < interval <= 4 * 3600:
            return self._schema_refusal(SEND, body, _err(INVALID_PARAMETER, "duplicate_check_interval out of range"))
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if msgtype == "template_card":
            if (refusal := card_schema_error(content)) is not None:
                return self._schema_refusal(SEND, body, refusal)
            with self._lock:
                task_id_used = content.get("task_id") in self._task_ids
            if task_id_used:  # "同一个应用任务id不能重复"
                return self._schema_refusal(SEND, body, _err(INVALID_PARAMETER, "task_id already used"))
            if content["card_type"] in CALLBACK_CARD_TYPES or "action_menu" in content:
                answer["response_code"] = self._next_id("rc-")
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            return self._answer(SEND, _err(40031, "invalid userid list"))

        msgid = self._next_id("msg-")
        record = {**body, "msgid": msgid}
        now = self._now()
        with self._lock:
            outcome = self._deliver(body, record, content, answer, now)
        return self._answer(SEND, outcome)

    def _deliver(
        self, body: dict[str, Any], record: dict[str, Any], content: dict[str, Any], answer: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Deliver an accepted message/send; the answer WeCom gives (caller holds the lock)."""
        # "返回包中的userid,不区分大小写,统一转为小写"
        recipients = [user.lower() for user in body["touser"].split("|") if user]
        invalid = [user for user in recipients if user in self._invalid_users]
        valid = [user for user in recipients if user not in self._invalid_users]
        if not valid:
            return {**_err(ALL_RECIPIENTS_INVALID, "user & party & tag all invalid"), "invaliduser": "|".join(invalid)}
        if invalid:
            answer["invaliduser"] = "|".join(invalid)
        # "同样内容(请求json)的消息,不会重复收到;时间间隔可通过duplicate_check_interval指定"
        key = json.dumps(body, sort_keys=True, ensure_ascii=False)
        first_seen = self._duplicates.get(key)
        interval = body.get("duplicate_check_interval", 1800)
        if body.get("enable_duplicate_check") == 1 and first_seen is not None and now - first_seen < interval:
            self.duplicates_suppressed.append(record)
            return {**answer, "msgid": record["msgid"]}
        allowed = [user for user in valid if self._member_allows(user, now)]
        for user in valid:
            if user not in allowed:
                self.dropped.append({**record, "touser": user})
        if not allowed:
            # Over the per-member frequency: nothing is delivered, and WeCom says so.
            return _err(FREQ_LIMIT, "api freq out of limit")
        self._duplicates[key] = now
        if body["msgtype"] == "template_card":
            self._task_ids.add(content["task_id"])
        if "response_code" in answer:
            self._response_codes[answer["response_code"]] = (False, content["card_type"], now)
        self.sent.append(record)
        return {**answer, "msgid": record["msgid"]}

    async def _update_card(self, request: Request) -> Response:
        """message/update_template_card (94888): grey the buttons out, or replace the card."""
        if (injected := self._injected(UPDATE_CARD)) is not None:
            return injected
        if (error := self._token_error(request)) is not None:
            return self._answer(UPDATE_CARD, error)
        body = await self._json_body(request)
        if body is None:
            return self._answer(UPDATE_CARD, _err(47001, "data format error"))
        if body.get("agentid") != self.agent_id:
            return self._answer(UPDATE_CARD, _err(40056, "invalid agentid"))
        userids = body.get("userids")
        if not isinstance(userids, list) or not userids or len(userids) > 1000:
            return self._schema_refusal(UPDATE_CARD, body, _err(40031, "userids: 1..1000 member ids"))
        card, button = body.get("template_card"), body.get("button")
        if (card is None) == (button is None):
            return self._schema_refusal(UPDATE_CARD, body, _err(INVALID_PARAMETER, "template_card or button required"))
        if button is not None and (not isinstance(button, dict) or not button.get("replace_name")):
            return self._schema_refusal(UPDATE_CARD, body, _err(INVALID_PARAMETER, "button.replace_name required"))
        if card is not None and (refusal := card_schema_error(card)) is not None:
            return self._schema_refusal(UPDATE_CARD, body, refusal)
        code = body.get("response_code")
        now = self._now()
        with self._lock:
            known = self._response_codes.get(code) if isinstance(code, str) else None
            # "一个code只能调用一次该接口,且只能在72小时内调用"
            usable = known is not None and not known[0] and now - known[2] < RESPONSE_CODE_TTL
            # "仅原卡片为 按钮交互型、投票选择型、多项选择型的卡片可以更新按钮"
            greys_a_callback_card = button is None or (known is not None and known[1] in CALLBACK_CARD_TYPES)
            if usable and greys_a_callback_card:
                assert known is not None and isinstance(code, str)
                self._response_codes[code] = (True, known[1], known[2])
                self.card_updates.append(body)
        if not usable:
            return self._answer(UPDATE_CARD, _err(40035, "invalid response_code"))
        if not greys_a_callback_card:
            return self._schema_refusal(UPDATE_CARD, body, _err(INVALID_PARAMETER, "this card has no buttons"))
        return self._answer(UPDATE_CARD, {"errcode": 0, "errmsg": "ok", "invaliduser": []})

    async def _upload(self, request: Request, kind: str) -> tuple[dict[str, Any], str | None]:
        """Shared upload logic: returns (answer, media_id)."""
        media_type = request.query_params.get("type")
        if media_type not in (MEDIA_TYPES if kind == "app" else {"file", "voice"}):
            return _err(40005, "invalid media type"), None
        fields = _parse_multipart(request.headers.get("content-type", ""), await request.body())
        file_name, content = fields.get("media", (None, b""))
        if not file_name:
            return _err(41005, "media data missing"), None
        if len(content) < MIN_MEDIA_BYTES or len(content) > 20 * 1024 * 1024:
            return _err(40006, "invalid file size"), None
        media_id = self._next_id("media-")
        with self._lock:
            self.uploads.append({"kind": kind, "file_name": file_name, "content": content, "media_id": media_id})
        answer = {
            "errcode": 0,
            "errmsg": "ok",
            "type": media_type,
            "media_id": media_id,
            "created_at": str(int(time.time())),
        }
        return answer, media_id

    def user_media(self, file_name: str, content: bytes) -> str:
        """A file a member sends the app: returns the MediaId its callback will carry."""
        media_id = self._next_id("user-media-")
        with self._lock:
            self._member_files[media_id] = (file_name, content)
        return media_id

    async def _media_get(self, request: Request) -> Response:
        if (injected := self._injected(MEDIA_GET)) is not None:
            return injected
        if (error := self._token_error(request)) is not None:
            return self._answer(MEDIA_GET, error)
        with self._lock:
            found = self._member_files.get(request.query_params.get("media_id", ""))
        if found is None:
            return self._answer(MEDIA_GET, _err(40007, "invalid media_id"))
        file_name, content = found
        self.requests.append((MEDIA_GET, time.monotonic(), 0))
        disposition = f"attachment; filename*=UTF-8''{quote(file_name)}"
        return Response(content, media_type="application/octet-stream", headers={"Content-Disposition": disposition})

    async def _media_upload(self, request: Request) -> Response:
        if (injected := self._injected(MEDIA_UPLOAD)) is not None:
            return injected
        if (error := self._token_error(request)) is not None:
            return self._answer(MEDIA_UPLOAD, error)
        answer, media_id = await self._upload(request, "app")
        if media_id is not None:
            with self._lock:
                self._app_media.add(media_id)
        return self._answer(MEDIA_UPLOAD, answer)

    # ------------------------------------------------------------------ robot endpoints

    async def _robot_send(self, request: Request) -> Response:
        if (injected := self._injected(ROBOT_SEND)) is not None:
            return injected
        key = request.query_params.get("key")
        if not key:
            return self._answer(ROBOT_SEND, _err(93000, "invalid webhook url"))
        body = await self._json_body(request)
        if body is None:
            return self._answer(ROBOT_SEND, _err(40058, "data format error"))
        msgtype = body.get("msgtype")
        if msgtype not in ROBOT_MSGTYPES or not isinstance(body.get(msgtype), dict):
            return self._answer(ROBOT_SEND, _err(40008, "invalid message type"))
        content = body[msgtype]
        limits = {"text": 2048, "markdown": 4096}
        if msgtype in limits:
            text = content.get("content")
            if not isinstance(text, str) or not text:
                return self._answer(ROBOT_SEND, _err(40058, f"{msgtype}.content missing"))
            if len(text.encode("utf-8")) > limits[msgtype]:
                return self._answer(ROBOT_SEND, _err(40058, f"{msgtype}.content exceed max length {limits[msgtype]}"))
        now = self._now()
        with self._lock:
            if msgtype == "file" and content.get("media_id") not in self._robot_media[key]:
                error = _err(40007, "invalid media_id")
            else:
                times = self._robot_sends[key]
                while times and now - times[0] >= 60:
                    times.popleft()
                if self._robot_limit is not None and len(times) >= self._robot_limit:
                    error = _err(45009, "api freq out of limit")
                else:
                    error = None
                    times.append(now)
                    self.robot_messages[key].append(body)
        return self._answer(ROBOT_SEND, error or {"errcode": 0, "errmsg": "ok"})

    async def _robot_upload(self, request: Request) -> Response:
        if (injected := self._injected(ROBOT_UPLOAD)) is not None:
            return injected
        key = request.query_params.get("key")
        if not key:
            return self._answer(ROBOT_UPLOAD, _err(93000, "invalid webhook url"))
        answer, media_id = await self._upload(request, "robot")
        if media_id is not None:
            with self._lock:
                self._robot_media[key].add(media_id)
        return self._answer(ROBOT_UPLOAD, answer)


# ---------------------------------------------------------------------- callback builders


def _cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA: close and reopen around it, as XML writers do.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def make_callback(
    crypto: WeComCrypto, inner_xml: str, *, timestamp: str | None = None, nonce: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Encrypt and sign ``inner_xml`` as WeCom POSTs it: (query params, body)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**10))
    encrypted = crypto.encrypt(inner_xml)
    agent_id = ET.fromstring(inner_xml).findtext("AgentID") or ""
    body = (
        f"<xml><ToUserName>{_cdata(crypto.receive_id)}</ToUserName>"
        f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
        f"<AgentID>{_cdata(agent_id)}</AgentID></xml>"
    )
    params = {"msg_signature": crypto.signature(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    return params, body.encode("utf-8")


def text_message_xml(corp_id: str, from_user: str, content: str, msg_id: str, agent_id: int, create_time: int) -> str:
    """The plaintext XML of a member's text message to the app."""
    return (
        f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        f"<MsgId>{msg_id}</MsgId>"
        f"<AgentID>{agent_id}</AgentID></xml>"
    )


def card_event_xml(
    corp_id: str, from_user: str, event_key: str, task_id: str, response_code: str, agent_id: int, create_time: int
) -> str:
    """The plaintext XML of a button press on a button_interaction template card."""
    return (
        f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[template_card_event]]></Event>"
        f"<EventKey>{_cdata(event_key)}</EventKey>"
        f"<TaskId>{_cdata(task_id)}</TaskId>"
        f"<CardType><![CDATA[button_interaction]]></CardType>"
        f"<ResponseCode>{_cdata(response_code)}</ResponseCode>"
        f"<AgentID>{agent_id}</AgentID></xml>"
    )
