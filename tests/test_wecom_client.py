"""WeComClient and RobotClient against the loopback FakeWeCom."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from bot.wecom.client import (
    RobotClient,
    WeComClient,
    WeComPermanent,
    WeComRateLimited,
    WeComRecipientsInvalid,
    WeComRetryable,
    split_markdown,
)
from tests.fakes.wecom_api import GETTOKEN, ROBOT_SEND, SEND, FakeWeCom

CARD = {
    "card_type": "button_interaction",
    "main_title": {"title": "第3项 督办事项", "desc": "请于周五前反馈进展"},
    "task_id": "task-3",
    "button_list": [{"text": "已完成", "style": 1, "key": "done:3"}, {"text": "需延期", "style": 2, "key": "delay:3"}],
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeWeCom]:
    with FakeWeCom() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeWeCom, clock: Clock) -> FakeWeCom:
    """The module's server, wiped and put on this test's clock."""
    server.reset(now=clock)
    return server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient, fake: FakeWeCom, clock: Clock, sleeps: Sleeps) -> WeComClient:
    return WeComClient(
        http,
        api_base=fake.url,
        corp_id=fake.corp_id,
        secret=fake.secret,
        agent_id=fake.agent_id,
        now=clock,
        sleep=sleeps,
    )


@pytest.fixture
def robot(http: httpx.AsyncClient, fake: FakeWeCom) -> RobotClient:
    return RobotClient(http, api_base=fake.url, key="robot-key-1")


def errcodes(fake: FakeWeCom, path: str) -> list[int]:
    return [code for p, _, code in fake.requests if p == path]


# ---------------------------------------------------------------- access token


@pytest.mark.asyncio
async def test_access_token_is_cached_across_sends(client: WeComClient, fake: FakeWeCom) -> None:
    for n in range(3):
        await client.send_text("zhangsan", f"第{n}条")
    assert fake.token_requests == 1
    assert len(fake.sent) == 3


@pytest.mark.asyncio
async def test_access_token_is_refreshed_300_s_before_expiry(
    client: WeComClient, fake: FakeWeCom, clock: Clock
) -> None:
    await client.send_text("zhangsan", "a")
    clock.now += 7200 - 300 - 1
    await client.send_text("zhangsan", "b")
    assert fake.token_requests == 1
    clock.now += 1
    await client.send_text("zhangsan", "c")
    assert fake.token_requests == 2


@pytest.mark.asyncio
async def test_expired_token_is_refetched_and_call_retried_once(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_text("zhangsan", "before")
    fake.expire_tokens()
    await client.send_text("zhangsan", "after")
    assert fake.token_requests == 2
    assert errcodes(fake, SEND) == [0, 42001, 0]
    assert [m["text"]["content"] for m in fake.sent] == ["before", "after"]


@pytest.mark.asyncio
async def test_token_refused_twice_raises_retryable(client: WeComClient, fake: FakeWeCom) -> None:
    fake.fail_next(SEND, 40014, times=2)
    with pytest.raises(WeComRetryable):
        await client.send_text("zhangsan", "x")
    assert fake.token_requests == 2
    assert fake.sent == []


@pytest.mark.asyncio
async def test_concurrent_callers_share_one_token_fetch(client: WeComClient, fake: FakeWeCom) -> None:
    await asyncio.gather(*(client.send_text("zhangsan", f"m{n}") for n in range(5)))
    assert fake.token_requests == 1


@pytest.mark.asyncio
async def test_wrong_secret_is_permanent(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    client = WeComClient(http, api_base=fake.url, corp_id=fake.corp_id, secret="wrong", agent_id=fake.agent_id)
    with pytest.raises(WeComPermanent) as raised:
        await client.access_token()
    assert raised.value.errcode == 40001
    assert "wrong" not in str(raised.value)


@pytest.mark.asyncio
async def test_busy_gettoken_is_retried(client: WeComClient, fake: FakeWeCom, sleeps: Sleeps) -> None:
    fake.fail_next(GETTOKEN, -1)
    assert await client.access_token()
    assert sleeps.calls == [0.5]


# ---------------------------------------------------------------- errors


@pytest.mark.asyncio
async def test_system_busy_is_retried_with_backoff_then_succeeds(
    client: WeComClient, fake: FakeWeCom, sleeps: Sleeps
) -> None:
    fake.fail_next(SEND, -1, times=2)
    result = await client.send_text("zhangsan", "x")
    assert result.msgid
    assert sleeps.calls == [0.5, 1.0]
    assert len(fake.sent) == 1


@pytest.mark.asyncio
async def test_system_busy_beyond_retries_raises_retryable(
    client: WeComClient, fake: FakeWeCom, sleeps: Sleeps
) -> None:
    fake.fail_next(SEND, -1, times=4)
    with pytest.raises(WeComRetryable) as raised:
        await client.send_text("zhangsan", "x")
    assert raised.value.errcode == -1
    assert sleeps.calls == [0.5, 1.0, 2.0]


@pytest.mark.asyncio
@pytest.mark.parametrize(("errcode", "retry_after"), [(45009, 60.0), (45033, 5.0)])
async def test_rate_limit_raises_without_sleeping(
    client: WeComClient, fake: FakeWeCom, sleeps: Sleeps, errcode: int, retry_after: float
) -> None:
    fake.fail_next(SEND, errcode)
    with pytest.raises(WeComRateLimited) as raised:
        await client.send_text("zhangsan", "x")
    assert (raised.value.errcode, raised.value.retry_after) == (errcode, retry_after)
    assert sleeps.calls == []
    assert errcodes(fake, SEND) == [errcode]


@pytest.mark.asyncio
async def test_rate_limit_backoff_is_configurable(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    client = WeComClient(
        http,
        api_base=fake.url,
        corp_id=fake.corp_id,
        secret=fake.secret,
        agent_id=fake.agent_id,
        rate_limit_retry_after=90.0,
    )
    fake.fail_next(SEND, 45009)
    with pytest.raises(WeComRateLimited) as raised:
        await client.send_text("zhangsan", "x")
    assert raised.value.retry_after == 90.0


@pytest.mark.asyncio
async def test_http_5xx_raises_retryable(client: WeComClient, fake: FakeWeCom) -> None:
    fake.http_error_next(SEND, 502)
    with pytest.raises(WeComRetryable) as raised:
        await client.send_text("zhangsan", "x")
    assert raised.value.http_status == 502


@pytest.mark.asyncio
async def test_network_error_raises_retryable(http: httpx.AsyncClient) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = WeComClient(http, api_base=f"http://127.0.0.1:{port}", corp_id="c", secret="s", agent_id=1)
    with pytest.raises(WeComRetryable):
        await client.send_text("zhangsan", "x")


@pytest.mark.asyncio
async def test_other_errcodes_are_permanent(client: WeComClient, fake: FakeWeCom) -> None:
    fake.fail_next(SEND, 40008, errmsg="invalid message type")
    with pytest.raises(WeComPermanent) as raised:
        await client.send_text("zhangsan", "x")
    assert (raised.value.errcode, raised.value.errmsg) == (40008, "invalid message type")


# ---------------------------------------------------------------- sending


@pytest.mark.asyncio
async def test_sends_carry_agentid_and_duplicate_check(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_markdown("zhangsan", "**督办提醒**", duplicate_check_interval=600)
    (message,) = fake.sent
    assert message["agentid"] == fake.agent_id
    assert (message["enable_duplicate_check"], message["duplicate_check_interval"]) == (1, 600)
    assert message["markdown"] == {"content": "**督办提醒**"}


@pytest.mark.asyncio
async def test_repeated_identical_send_with_duplicate_check_is_not_delivered_twice(
    client: WeComClient, fake: FakeWeCom
) -> None:
    await client.send_text("zhangsan", "请反馈第3项进展", duplicate_check_interval=1800)
    await client.send_text("zhangsan", "请反馈第3项进展", duplicate_check_interval=1800)
    assert len(fake.sent) == 1
    assert len(fake.duplicates_suppressed) == 1


@pytest.mark.asyncio
async def test_identical_sends_without_duplicate_check_are_both_delivered(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_text("zhangsan", "没有看懂这条消息")
    await client.send_text("zhangsan", "没有看懂这条消息")
    assert len(fake.sent) == 2
    assert "enable_duplicate_check" not in fake.sent[0]


@pytest.mark.asyncio
async def test_identical_send_after_the_interval_is_delivered(
    client: WeComClient, fake: FakeWeCom, clock: Clock
) -> None:
    await client.send_text("zhangsan", "周报", duplicate_check_interval=60)
    clock.now += 61
    await client.send_text("zhangsan", "周报", duplicate_check_interval=60)
    assert len(fake.sent) == 2


@pytest.mark.asyncio
async def test_invaliduser_is_parsed(client: WeComClient, fake: FakeWeCom) -> None:
    fake.mark_invalid_user("ghost")
    fake.mark_invalid_user("Left")
    result = await client.send_text("zhangsan|ghost|Left", "x")
    assert result.invaliduser == ["ghost", "left"]  # WeCom answers user ids in lower case
    assert len(fake.sent) == 1


@pytest.mark.asyncio
async def test_every_recipient_invalid_raises_81013_with_the_users(client: WeComClient, fake: FakeWeCom) -> None:
    fake.mark_invalid_user("left")
    with pytest.raises(WeComRecipientsInvalid) as caught:
        await client.send_text("left", "x")
    assert (caught.value.errcode, caught.value.invaliduser) == (81013, ["left"])
    assert fake.sent == []


@pytest.mark.asyncio
async def test_the_31st_message_in_a_minute_to_one_member_is_dropped_with_45009(
    client: WeComClient, fake: FakeWeCom, clock: Clock
) -> None:
    for n in range(30):
        await client.send_text("zhangsan", f"m{n}")
        clock.now += 1.9
    with pytest.raises(WeComRateLimited) as caught:
        await client.send_text("zhangsan", "m30")
    assert caught.value.errcode == 45009
    assert [m["text"]["content"] for m in fake.dropped] == ["m30"]
    assert len(fake.sent) == 30
    clock.now += 5  # the first message is now more than a minute old
    await client.send_text("zhangsan", "m30")
    assert fake.sent[-1]["text"]["content"] == "m30"


@pytest.mark.asyncio
async def test_other_members_are_not_limited_by_one_members_minute(client: WeComClient, fake: FakeWeCom) -> None:
    fake.set_member_limits(per_minute=1)
    await client.send_text("zhangsan", "a")
    await client.send_text("lisi", "b")
    assert len(fake.sent) == 2


@pytest.mark.asyncio
async def test_a_text_notice_card_with_card_action_type_0_is_refused_with_42045(
    client: WeComClient, fake: FakeWeCom
) -> None:
    card = {"card_type": "text_notice", "main_title": {"title": "已记录"}, "card_action": {"type": 0}}
    with pytest.raises(WeComPermanent) as caught:
        await client.send_template_card("zhangsan", card)
    assert caught.value.errcode == 42045
    assert fake.sent == [] and fake.schema_errors


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change",
    [
        {"card_type": "text_card"},
        {"task_id": None},
        {"task_id": "有中文"},
        {"button_list": []},
        {"button_list": [{"text": str(n), "key": f"k{n}"} for n in range(7)]},
        {"button_list": [{"text": "a", "key": "same"}, {"text": "b", "key": "same"}]},
        {"button_list": [{"text": "", "key": "k"}]},
        {"main_title": None},
    ],
)
async def test_a_button_card_of_the_wrong_shape_is_refused(
    client: WeComClient, fake: FakeWeCom, change: dict[str, object]
) -> None:
    card = {key: value for key, value in {**CARD, **change}.items() if value is not None}
    with pytest.raises(WeComPermanent):
        await client.send_template_card("zhangsan", card)
    assert fake.sent == []


@pytest.mark.asyncio
async def test_a_card_task_id_cannot_be_used_twice(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_template_card("zhangsan", CARD)
    with pytest.raises(WeComPermanent):
        await client.send_template_card("lisi", CARD)


@pytest.mark.asyncio
async def test_template_card_send_returns_response_code(client: WeComClient, fake: FakeWeCom) -> None:
    result = await client.send_template_card("zhangsan", CARD)
    assert result.response_code
    sent = await fake.wait_for_async(lambda m: m["msgtype"] == "template_card")
    assert sent["template_card"] == CARD


@pytest.mark.asyncio
async def test_update_template_card_spends_response_code_once(client: WeComClient, fake: FakeWeCom) -> None:
    result = await client.send_template_card("zhangsan", CARD)
    assert result.response_code is not None
    done = {**CARD, "task_id": "task-3-done", "button_list": [{"text": "已反馈", "key": "done"}]}
    await client.update_template_card(["zhangsan"], result.response_code, done)
    (update,) = fake.card_updates
    assert (update["userids"], update["agentid"], update["template_card"]) == (["zhangsan"], fake.agent_id, done)
    with pytest.raises(WeComPermanent):
        await client.update_template_card(["zhangsan"], result.response_code, done)


@pytest.mark.asyncio
async def test_update_template_card_can_grey_out_buttons(client: WeComClient, fake: FakeWeCom) -> None:
    fake.register_response_code("rc-from-callback")
    await client.update_template_card(["zhangsan"], "rc-from-callback", replace_name="已处理")
    assert fake.card_updates[0]["button"] == {"replace_name": "已处理"}


@pytest.mark.asyncio
async def test_update_to_a_card_of_the_wrong_shape_is_refused_and_keeps_the_code(
    client: WeComClient, fake: FakeWeCom
) -> None:
    fake.register_response_code("rc-1")
    wrong = {"card_type": "text_notice", "main_title": {"title": "已记录"}, "card_action": {"type": 0}}
    with pytest.raises(WeComPermanent) as caught:
        await client.update_template_card(["zhangsan"], "rc-1", wrong)
    assert caught.value.errcode == 42045 and fake.card_updates == []
    await client.update_template_card(["zhangsan"], "rc-1", replace_name="已记录")
    assert fake.card_updates[0]["button"] == {"replace_name": "已记录"}


@pytest.mark.asyncio
async def test_app_upload_then_send_file(client: WeComClient, fake: FakeWeCom) -> None:
    media_id = await client.upload_media("file", "督办台账.xlsx", b"PK\x03\x04 spreadsheet bytes")
    (upload,) = fake.uploads
    assert upload == {
        "kind": "app",
        "file_name": "督办台账.xlsx",
        "content": b"PK\x03\x04 spreadsheet bytes",
        "media_id": media_id,
    }
    await client.send_file("zhangsan", media_id)
    assert fake.sent[0]["file"] == {"media_id": media_id}


@pytest.mark.asyncio
async def test_upload_of_unknown_kind_is_refused_locally(client: WeComClient, fake: FakeWeCom) -> None:
    with pytest.raises(ValueError):
        await client.upload_media("spreadsheet", "a.xlsx", b"123456")
    assert fake.requests == []


# ---------------------------------------------------------------- group robot


@pytest.mark.asyncio
async def test_robot_markdown_is_posted_under_its_key(robot: RobotClient, fake: FakeWeCom) -> None:
    await robot.send_markdown("## 本周督办\n> 3 项逾期")
    assert fake.robot_messages["robot-key-1"] == [
        {"msgtype": "markdown", "markdown": {"content": "## 本周督办\n> 3 项逾期"}}
    ]


@pytest.mark.asyncio
async def test_robot_text_is_posted(robot: RobotClient, fake: FakeWeCom) -> None:
    await robot.send_text("提醒")
    assert fake.robot_messages["robot-key-1"] == [{"msgtype": "text", "text": {"content": "提醒"}}]


@pytest.mark.asyncio
async def test_robot_markdown_of_exactly_4096_bytes_is_accepted(robot: RobotClient, fake: FakeWeCom) -> None:
    content = "督" * 1365 + "a"  # 4095 + 1 bytes
    assert len(content.encode()) == 4096
    await robot.send_markdown(content)
    assert len(fake.robot_messages["robot-key-1"]) == 1


@pytest.mark.asyncio
async def test_robot_markdown_over_4096_bytes_is_refused_locally(robot: RobotClient, fake: FakeWeCom) -> None:
    with pytest.raises(ValueError):
        await robot.send_markdown("督" * 1366)  # 4098 bytes
    assert fake.requests == []


@pytest.mark.asyncio
async def test_robot_upload_then_send_file(robot: RobotClient, fake: FakeWeCom) -> None:
    media_id = await robot.upload_media("周报.pdf", b"%PDF-1.7 report")
    assert fake.uploads[0]["kind"] == "robot"
    assert fake.uploads[0]["file_name"] == "周报.pdf"
    await robot.send_file(media_id)
    assert fake.robot_messages["robot-key-1"] == [{"msgtype": "file", "file": {"media_id": media_id}}]


@pytest.mark.asyncio
async def test_robot_beyond_20_per_minute_is_rate_limited(robot: RobotClient, fake: FakeWeCom) -> None:
    fake.set_robot_limit(20)
    for n in range(20):
        await robot.send_text(f"第{n}条")
    with pytest.raises(WeComRateLimited) as raised:
        await robot.send_text("第21条")
    assert (raised.value.errcode, raised.value.retry_after) == (45009, 60.0)
    assert len(fake.robot_messages["robot-key-1"]) == 20


@pytest.mark.asyncio
async def test_robot_limit_window_reopens_after_a_minute(robot: RobotClient, fake: FakeWeCom, clock: Clock) -> None:
    fake.set_robot_limit(1)
    await robot.send_text("a")
    with pytest.raises(WeComRateLimited):
        await robot.send_text("b")
    clock.now += 60
    await robot.send_text("b")
    assert len(fake.robot_messages["robot-key-1"]) == 2


@pytest.mark.asyncio
async def test_robot_busy_is_not_retried_by_the_client(robot: RobotClient, fake: FakeWeCom) -> None:
    fake.fail_next(ROBOT_SEND, -1)
    with pytest.raises(WeComRetryable):
        await robot.send_text("x")
    assert errcodes(fake, ROBOT_SEND) == [-1]


# ---------------------------------------------------------------- split_markdown


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def test_split_markdown_keeps_short_text_whole() -> None:
    assert split_markdown("## 标题\n\n正文") == ["## 标题\n\n正文"]


def test_split_markdown_of_empty_text_is_empty() -> None:
    assert split_markdown("") == []


def test_split_markdown_cuts_at_paragraph_boundaries() -> None:
    paragraphs = [f"### 第{n}项\n" + "进展正常。" * 90 for n in range(6)]  # ~1360 bytes each
    chunks = split_markdown("\n\n".join(paragraphs))
    assert len(chunks) > 1
    assert all(utf8_len(chunk) <= 4096 for chunk in chunks)
    assert "\n\n".join(chunks) == "\n\n".join(paragraphs)
    assert all(chunk.startswith("### 第") for chunk in chunks)


def test_split_markdown_falls_back_to_lines_in_a_long_paragraph() -> None:
    lines = [f"- 第{n}项：按期推进中" for n in range(400)]
    chunks = split_markdown("\n".join(lines))
    assert len(chunks) > 1
    assert all(utf8_len(chunk) <= 4096 for chunk in chunks)
    assert "\n".join(chunks) == "\n".join(lines)


def test_split_markdown_hard_splits_a_long_line_on_character_boundaries() -> None:
    line = "督办" * 2000  # 12000 bytes, no break anywhere
    chunks = split_markdown(line)
    assert "".join(chunks) == line
    assert [utf8_len(chunk) for chunk in chunks] == [4095, 4095, 3810]


def test_split_markdown_never_cuts_a_four_byte_character() -> None:
    chunks = split_markdown("a" + "😀" * 10, limit_bytes=8)
    assert chunks == ["a😀", "😀😀", "😀😀", "😀😀", "😀😀", "😀"]


@given(st.text(alphabet=st.sampled_from(["a", "督", "😀", " ", "\n"]), max_size=200), st.integers(4, 40))
def test_split_markdown_respects_limit_and_loses_no_content(text: str, limit: int) -> None:
    chunks = split_markdown(text, limit_bytes=limit)
    assert all(0 < utf8_len(chunk) <= limit for chunk in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


@pytest.mark.asyncio
async def test_every_url_starts_at_a_private_domain_api_base(http: httpx.AsyncClient) -> None:
    """政务微信: WeCom under a private domain and path; tokens, messages, cards, media and robots all go there."""
    from bot.wecom.client import download_media

    with FakeWeCom(prefix="/gov/qyapi") as private:
        base = f"{private.url}/gov/qyapi"
        client = WeComClient(
            http, api_base=base, corp_id=private.corp_id, secret=private.secret, agent_id=private.agent_id
        )
        sent = await client.send_template_card("zhangsan", CARD)
        assert sent.response_code is not None
        await client.update_template_card(["zhangsan"], sent.response_code, replace_name="已处理")
        await client.send_file("zhangsan", await client.upload_media("file", "清单.xlsx", b"PK\x03\x04 list"))
        media_id = private.user_media("方案.pdf", b"%PDF-1.7 plan")
        assert await download_media(client, media_id, max_bytes=1000) == ("方案.pdf", b"%PDF-1.7 plan")
        robot = RobotClient(http, api_base=base, key="k1")
        await robot.send_file(await robot.upload_media("清单.xlsx", b"PK\x03\x04 list"))
        assert [m["msgtype"] for m in private.sent] == ["template_card", "file"]
        assert private.card_updates and private.robot_messages["k1"]
