"""Decrypted WeCom callback XML → a plain, platform-neutral dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from bot.wecom.crypto import CallbackRejected, parse_xml

__all__ = ["WeComInbound", "parse_callback"]

_KINDS = {"text", "event", "image", "file"}


@dataclass(frozen=True)
class WeComInbound:
    """One member message or event, as delivered to the app's callback URL."""

    kind: str  # "text" | "event" | "image" | "file" | "other"
    from_user: str  # FromUserName: the member's userid
    to_corp: str  # ToUserName: the CorpID
    agent_id: int | None
    create_time: int
    msg_id: str | None  # MsgId, for messages
    content: str | None  # text content
    event: str | None  # Event, e.g. "template_card_event", "enter_agent"
    event_key: str | None  # EventKey: the button key pressed
    task_id: str | None  # TaskId of the card
    response_code: str | None  # ResponseCode, spendable once on update_template_card
    media_id: str | None
    file_name: str | None
    dedup_key: str  # stable across WeCom's retries of the same callback


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(value: str | None, field: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise CallbackRejected(f"{field} is not an integer") from None


def parse_callback(xml_text: str) -> WeComInbound:
    """Parse the inner plaintext XML of a callback (as returned by ``decrypt_callback``).

    Raises CallbackRejected when the XML is malformed or lacks FromUserName/MsgType.
    ``dedup_key`` is the MsgId for messages and ``from:create_time:event:event_key``
    for events (which carry no MsgId): WeCom retries a callback that was not answered
    within 5 s, and the retry carries the same values.
    """
    root = parse_xml(xml_text)
    if root.tag != "xml":
        raise CallbackRejected("callback root element is not <xml>")

    def field(name: str) -> str | None:
        return _text(root.findtext(name))

    from_user = field("FromUserName")
    msg_type = field("MsgType")
    if from_user is None or msg_type is None:
        raise CallbackRejected("callback lacks FromUserName or MsgType")
    create_time = _int(root.findtext("CreateTime"), "CreateTime") or 0
    msg_id = field("MsgId")
    event = field("Event") if msg_type == "event" else None
    event_key = field("EventKey") if msg_type == "event" else None

    if msg_id is not None and msg_type != "event":
        dedup_key = msg_id
    elif msg_type == "event":
        # TaskId too: two cards' buttons with one key pressed in the same second are two events.
        dedup_key = f"{from_user}:{create_time}:{event or ''}:{event_key or ''}:{field('TaskId') or ''}"
    else:  # a message without MsgId should not happen; fall back to something stable
        dedup_key = f"{from_user}:{create_time}:{msg_type}:{field('MediaId') or field('Content') or ''}"

    return WeComInbound(
        kind=msg_type if msg_type in _KINDS else "other",
        from_user=from_user,
        to_corp=field("ToUserName") or "",
        agent_id=_int(root.findtext("AgentID"), "AgentID"),
        create_time=create_time,
        msg_id=msg_id,
        # Content is kept verbatim (no strip): leading spaces can matter in a reply.
        content=root.findtext("Content") if msg_type == "text" else None,
        event=event,
        event_key=event_key,
        task_id=field("TaskId"),
        response_code=field("ResponseCode"),
        media_id=field("MediaId"),
        file_name=field("FileName"),
        dedup_key=dedup_key,
    )
