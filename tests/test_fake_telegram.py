"""The fake Telegram Bot API server, driven end to end by the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dtm
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import Application, CommandHandler, ContextTypes

from tests.fakes.telegram_api import FakeTelegram

KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("完成", callback_data="done:7")]])


@pytest.fixture(autouse=True)
def _timedelta_time_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    # PTB 22 warns (PTBDeprecationWarning) when a time period such as RetryAfter.retry_after is read
    # as an int; under filterwarnings=error that warning would replace the RetryAfter itself.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest_asyncio.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as client:
        yield client


@pytest.mark.asyncio
async def test_get_me_returns_the_fake_bot(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()

    assert me.is_bot
    assert me.id == 123456
    assert me.username == "duban_test_bot"
    assert [record.method for record in fake.requests] == ["getMe", "getMe"]  # Bot.initialize calls it too


@pytest.mark.asyncio
async def test_send_message_records_reply_markup_and_reply_parameters(bot: Bot, fake: FakeTelegram) -> None:
    asked = fake.user_message(42, "/report 三月")["message"]

    message = await bot.send_message(
        42,
        "<b>收到</b>：三月 &amp; 四月",
        parse_mode="HTML",
        reply_markup=KEYBOARD,
        reply_parameters=ReplyParameters(asked["message_id"]),
    )

    [sent] = fake.sent
    assert sent.method == "sendMessage"
    assert (sent.chat_id, sent.message_id) == (42, message.message_id)
    assert message.message_id == asked["message_id"] + 1  # ids are per chat, shared with the user's
    assert sent.text == "<b>收到</b>：三月 &amp; 四月"
    assert sent.plain_text == "收到：三月 & 四月"
    assert sent.parse_mode == "HTML"
    assert sent.reply_markup == {"inline_keyboard": [[{"text": "完成", "callback_data": "done:7"}]]}
    assert sent.reply_to_message_id == asked["message_id"]
    assert message.reply_to_message is not None and message.reply_to_message.text == "/report 三月"
    assert message.reply_markup == KEYBOARD
    assert message.text_html == "<b>收到</b>：三月 &amp; 四月"
    assert fake.messages_to(42) == [sent]
    assert fake.messages_to(43) == []


@pytest.mark.asyncio
async def test_long_poll_returns_an_update_pushed_while_waiting(bot: Bot, fake: FakeTelegram) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    deadline = time.monotonic() + 2
    while fake.pending_polls == 0:
        assert time.monotonic() < deadline, "getUpdates never started waiting"
        await asyncio.sleep(0.005)

    pushed_at = time.monotonic()
    fake.user_message(7, "/start")
    updates = await poll

    assert time.monotonic() - pushed_at < 1
    [update] = updates
    assert update.message is not None and update.message.text == "/start"
    assert update.message.chat.id == 7 and update.message.chat.type == "private"
    assert update.message.entities[0].type == "bot_command" and update.message.entities[0].length == 6


@pytest.mark.asyncio
async def test_offset_confirms_updates(bot: Bot, fake: FakeTelegram) -> None:
    ids = [fake.user_message(7, text)["update_id"] for text in ("一", "二", "三")]

    assert [u.update_id for u in await bot.get_updates()] == ids
    assert [u.update_id for u in await bot.get_updates(offset=ids[1])] == ids[1:]
    assert [u.update_id for u in await bot.get_updates()] == ids[1:]  # the first stays confirmed
    assert await bot.get_updates(offset=ids[-1] + 1) == ()
    assert fake.pending_updates == 0


@pytest.mark.asyncio
async def test_pushing_a_confirmed_update_delivers_it_again_with_its_id(bot: Bot, fake: FakeTelegram) -> None:
    fake.user_message(7, "交了")
    original = fake.last_update
    assert original is not None
    [first] = await bot.get_updates()
    assert await bot.get_updates(offset=first.update_id + 1) == ()

    fake.push_update(original)

    [again] = await bot.get_updates(offset=first.update_id + 1)
    assert again.update_id == first.update_id
    assert again.message is not None and again.message.message_id == first.message.message_id  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_user_edit_queues_an_edited_message(bot: Bot, fake: FakeTelegram) -> None:
    sent = fake.user_message(7, "进度 50%")["message"]

    update = fake.user_edit(7, sent["message_id"], "进度 80%")

    assert [u.update_id for u in await bot.get_updates()] == [update["update_id"] - 1, update["update_id"]]
    edited = (await bot.get_updates(offset=update["update_id"]))[0].edited_message
    assert edited is not None and edited.message_id == sent["message_id"] and edited.text == "进度 80%"
    assert edited.edit_date is not None


@pytest.mark.asyncio
async def test_a_polling_application_answers_a_user(fake: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.effective_user is not None
        await update.message.reply_text(f"你好，{update.effective_user.first_name}")

    app = Application.builder().token(fake.token).base_url(fake.base_url).base_file_url(fake.base_file_url).build()
    app.add_handler(CommandHandler("start", start))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0)
        fake.user_message(77, "/start", first_name="张三")

        reply = await fake.wait_for_async(lambda m: m.chat_id == 77)

        await app.updater.stop()
        await app.stop()
    assert reply.text == "你好，张三"
    assert fake.pending_updates == 0  # the updater confirmed the update on its way out


@pytest.mark.asyncio
async def test_injected_429_raises_retry_after_with_its_value(bot: Bot, fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", 429, retry_after=2)

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(1, "hello")

    assert caught.value.retry_after == dtm.timedelta(seconds=2)
    assert fake.count_429 == 1
    assert fake.sent == []
    await bot.send_message(1, "hello")  # only the next call failed
    assert len(fake.sent) == 1


@pytest.mark.asyncio
async def test_exceeding_the_per_chat_limit_answers_429_and_counts_it(bot: Bot, fake: FakeTelegram) -> None:
    await bot.send_message(1, "第一条")

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(1, "第二条")
    await bot.send_message(2, "另一个人")  # other chats are not held up

    assert caught.value.retry_after == dtm.timedelta(seconds=1)
    assert fake.count_429 == 1
    assert [m.text for m in fake.sent] == ["第一条", "另一个人"]
    assert [r.status for r in fake.requests if r.method == "sendMessage"] == [200, 429, 200]


@pytest.mark.asyncio
async def test_exceeding_the_global_limit_answers_429(bot: Bot, fake: FakeTelegram) -> None:
    fake.set_limits(global_per_second=3, per_chat_per_second=10)
    for chat in (1, 2, 3):
        await bot.send_message(chat, "ok")

    with pytest.raises(RetryAfter):
        await bot.send_message(4, "too many")

    fake.set_limits(enforce=False)
    await bot.send_message(4, "limits off")
    assert fake.count_429 == 1
    assert len(fake.sent) == 4


@pytest.mark.asyncio
async def test_blocked_user_raises_forbidden(bot: Bot, fake: FakeTelegram) -> None:
    fake.block_user(99)

    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(99, "催办")

    assert fake.sent == []
    assert fake.requests[-1].status == 403 and fake.requests[-1].chat_id == 99


@pytest.mark.asyncio
async def test_forgotten_chat_raises_bad_request(bot: Bot, fake: FakeTelegram) -> None:
    fake.forget_chat(98)

    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(98, "催办")


@pytest.mark.asyncio
async def test_fail_next_502_raises_network_error(bot: Bot, fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", 502, times=2)

    for _ in range(2):
        with pytest.raises(NetworkError, match="Bad Gateway") as caught:
            await bot.send_message(1, "x")
        assert type(caught.value) is NetworkError  # not BadRequest, which also subclasses NetworkError

    await bot.send_message(1, "x")
    assert [r.status for r in fake.requests if r.method == "sendMessage"] == [502, 502, 200]


@pytest.mark.asyncio
async def test_drop_next_raises_network_error(bot: Bot, fake: FakeTelegram) -> None:
    fake.drop_next("sendMessage")

    with pytest.raises(NetworkError) as caught:
        await bot.send_message(1, "x")

    assert type(caught.value) is NetworkError
    assert fake.sent == []
    await bot.send_message(1, "x")  # a fresh connection works
    assert [r.status for r in fake.requests if r.method == "sendMessage"] == [0, 200]


@pytest.mark.asyncio
async def test_document_upload_round_trips_through_get_file(bot: Bot, fake: FakeTelegram) -> None:
    content = bytes(range(256)) * 40 + b"\r\n--boundary-like\r\n"

    message = await bot.send_document(
        3, document=content, filename="三月报告.pdf", caption="<i>附件</i>", parse_mode="HTML"
    )

    [sent] = fake.sent
    assert sent.method == "sendDocument"
    assert sent.text == "<i>附件</i>"
    assert sent.document is not None
    assert sent.document["file_name"] == "三月报告.pdf"
    assert sent.document["content"] == content
    assert sent.document["mime_type"] == "application/pdf"
    assert message.document is not None and message.document.file_size == len(content)
    assert message.caption == "附件"

    file = await bot.get_file(message.document.file_id)
    assert file.file_path is not None and file.file_path.startswith(fake.base_file_url + fake.token + "/")
    assert await file.download_as_bytearray() == bytearray(content)

    resent = await bot.send_document(4, document=message.document.file_id)  # by file_id, no upload
    assert resent.document is not None and resent.document.file_id == message.document.file_id


@pytest.mark.asyncio
async def test_user_document_bytes_download_via_get_file(bot: Bot, fake: FakeTelegram) -> None:
    content = "第一季度督办台账\n".encode() * 100
    update = fake.user_document(5, "台账.xlsx", content, caption="请查收", mime_type="application/vnd.ms-excel")

    [received] = await bot.get_updates()
    assert received.update_id == update["update_id"]
    assert received.message is not None and received.message.document is not None
    assert received.message.document.file_name == "台账.xlsx"
    assert received.message.caption == "请查收"

    file = await bot.get_file(received.message.document.file_id)
    assert await file.download_as_bytearray() == bytearray(content)


@pytest.mark.asyncio
async def test_oversize_user_document_is_refused_by_get_file(bot: Bot, fake: FakeTelegram) -> None:
    update = fake.user_document(5, "big.pdf", b"%PDF", size_override=25 * 1024 * 1024)

    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(update["message"]["document"]["file_id"])


@pytest.mark.asyncio
async def test_user_photo_largest_size_downloads(bot: Bot, fake: FakeTelegram) -> None:
    fake.user_photo(5, b"\xff\xd8jpeg", caption="现场照片")

    [update] = await bot.get_updates()
    assert update.message is not None
    photo = update.message.photo
    assert [size.width for size in photo] == sorted(size.width for size in photo)
    file = await bot.get_file(photo[-1].file_id)
    assert await file.download_as_bytearray() == bytearray(b"\xff\xd8jpeg")


@pytest.mark.asyncio
async def test_set_my_commands_is_recorded(bot: Bot, fake: FakeTelegram) -> None:
    assert fake.commands is None

    await bot.set_my_commands([BotCommand("start", "开始"), ("tasks", "我的任务")])

    assert fake.commands == [
        {"command": "start", "description": "开始"},
        {"command": "tasks", "description": "我的任务"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "tasks"]
    await bot.delete_my_commands()
    assert fake.commands is None


@pytest.mark.asyncio
async def test_callback_query_and_its_answer_are_recorded(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(8, "任务 7 已到期", reply_markup=KEYBOARD)

    query_id = fake.user_callback(8, sent.message_id, "done:7")
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None
    assert query.id == query_id
    assert query.data == "done:7"
    assert query.from_user.id == 8
    assert query.message is not None and query.message.message_id == sent.message_id

    await bot.answer_callback_query(query.id, text="已标记完成", show_alert=True)

    assert fake.answered_callbacks == [{"callback_query_id": query_id, "text": "已标记完成", "show_alert": True}]
    with pytest.raises(BadRequest, match="query id is invalid"):
        await bot.answer_callback_query("no-such-query")


@pytest.mark.asyncio
async def test_edit_message_text_is_recorded_and_an_unchanged_edit_is_refused(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(8, "待办", reply_markup=KEYBOARD)
    fake.set_limits(enforce=False)

    edited = await bot.edit_message_text("已完成", chat_id=8, message_id=sent.message_id)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("已完成", chat_id=8, message_id=sent.message_id)

    assert edited.text == "已完成" and edited.reply_markup is None
    assert [(m.method, m.text) for m in fake.sent] == [("sendMessage", "待办"), ("editMessageText", "已完成")]
    assert fake.message(8, sent.message_id)["text"] == "已完成"  # type: ignore[index]


@pytest.mark.asyncio
async def test_invalid_html_and_oversize_callback_data_are_refused(bot: Bot, fake: FakeTelegram) -> None:
    fake.set_limits(enforce=False)
    with pytest.raises(BadRequest, match=r"unsupported start tag \"\" at byte offset 7"):
        await bot.send_message(1, "进度 < 50%", parse_mode="HTML")
    with pytest.raises(BadRequest, match="find end tag corresponding to start tag"):
        await bot.send_message(1, "<b>未闭合", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        long_data = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="督办" * 11)]])  # 66 bytes
        await bot.send_message(1, "x", reply_markup=long_data)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(1, "长" * 4097)

    await bot.send_message(1, "进度 < 50%")  # without parse_mode "<" is just text
    assert [m.text for m in fake.sent] == ["进度 < 50%"]


@pytest.mark.asyncio
async def test_wrong_token_raises_invalid_token(fake: FakeTelegram) -> None:
    wrong = Bot("999:WRONG", base_url=fake.base_url, base_file_url=fake.base_file_url)

    with pytest.raises(InvalidToken):
        await wrong.get_me()
    with pytest.raises(InvalidToken, match="rejected by the server"):
        await wrong.initialize()

    assert {(r.method, r.status) for r in fake.requests} == {("getMe", 401)}
    await wrong.shutdown()


@pytest.mark.asyncio
async def test_unknown_method_answers_404(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("notARealMethod", api_kwargs={"chat_id": 1})

    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(f"{fake.base_url}{fake.token}/notARealMethod")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


@pytest.mark.asyncio
async def test_json_bodies_are_accepted(fake: FakeTelegram) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            f"{fake.base_url}{fake.token}/sendMessage",
            json={"chat_id": 5, "text": "json", "reply_markup": {"inline_keyboard": []}},
        )

    assert response.status_code == 200
    assert response.json()["result"]["text"] == "json"
    assert fake.sent[0].chat_id == 5 and fake.sent[0].reply_markup == {"inline_keyboard": []}


@pytest.mark.asyncio
async def test_webhook_is_recorded_and_updates_are_posted_with_the_secret(bot: Bot, fake: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, object]]] = []

    async def hook(request: Request) -> Response:
        secret = request.headers.get("x-telegram-bot-api-secret-token")
        received.append((secret, await request.json()))
        return Response(status_code=200 if secret == "s3cret" else 403)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/telegram/webhook"
    config = uvicorn.Config(
        Starlette(routes=[Route("/telegram/webhook", hook, methods=["POST"])]),
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        log_level=None,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.005)

        await bot.set_webhook(url, secret_token="s3cret")
        assert fake.webhook is not None and fake.webhook["url"] == url
        assert fake.webhook["secret_token"] == "s3cret"
        assert (await bot.get_webhook_info()).url == url
        with pytest.raises(Conflict):
            await bot.get_updates()

        update = fake.user_message(6, "走 webhook")
        assert await fake.post_update_to_async(url, update, "s3cret") == 200
        # The blocking twin works from a thread without an event loop, while this loop serves the hook.
        assert await asyncio.to_thread(fake.post_update_to, url, update, None) == 403
        assert received == [("s3cret", update), (None, update)]

        await bot.delete_webhook()
        assert fake.webhook is None
    finally:
        server.should_exit = True
        await serving
        sock.close()


def test_wait_for_returns_the_matching_message_and_dumps_on_timeout(fake: FakeTelegram) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.05)
        async with Bot(fake.token, base_url=fake.base_url) as client:
            await client.send_message(11, "稍后发送")

    worker = threading.Thread(target=asyncio.run, args=(send_later(),))
    worker.start()
    try:
        found = fake.wait_for(lambda m: m.chat_id == 11, timeout=5)
        fake.wait_for_count(1, timeout=1)
    finally:
        worker.join(timeout=5)

    assert found.text == "稍后发送"
    with pytest.raises(AssertionError, match=r"sendMessage chat=11 id=1: '稍后发送'"):
        fake.wait_for(lambda m: m.chat_id == 12, timeout=0.05)


@pytest.mark.asyncio
async def test_blocking_helpers_refuse_to_run_inside_an_event_loop(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(RuntimeError, match="wait_for_async"):
        fake.wait_for(lambda m: True, timeout=0.01)

    await bot.send_message(11, "x")
    assert (await fake.wait_for_async(lambda m: m.chat_id == 11)).text == "x"
    await fake.wait_for_count_async(1)


@pytest.mark.asyncio
async def test_stop_does_not_hang_on_a_waiting_long_poll() -> None:
    fake = FakeTelegram().start()
    async with Bot(fake.token, base_url=fake.base_url) as client:
        poll = asyncio.create_task(client.get_updates(timeout=30))
        while fake.pending_polls == 0:
            await asyncio.sleep(0.005)

        started = time.monotonic()
        await asyncio.to_thread(fake.stop)

        assert time.monotonic() - started < 3
        assert await poll == ()
