"""The dashboard's 发件箱 page: what went out, what waits, what is stuck or given up, and sending it again.

The office reads it in plain words: who a message is for (the person's name
and unit, or the office group), what it is (催办提醒, 回复, 每日汇总 …) and
where it stands (待发送, 重试中(第3次, 下次 14:05), 已过期未送达 …), never
``reply``/``reminder``/``sent`` or chat ids.  A platform failing for longer
than ``[outbox] alert_after`` is named at the top.  A message that is being
retried, failed, or expired has a 重新发送 button: it is queued again with a
fresh day to be delivered in (see :func:`core.outbox.resend`), and the resend
is recorded in the audit log.  The form carries the session's CSRF token like
every dashboard form.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from core.outbox import RESENDABLE, resend, resendable
from jobs.sender import outbox_depth, platform_health
from storage.models import Binding, Identity, OutboxMessage, Person, Unit

if TYPE_CHECKING:
    from bot.dashboard import Dashboard

PAGE = "/office/outbox"

PLATFORM_NAMES = {"telegram": "Telegram", "wecom": "企业微信", "wecom_robot": "企业微信群机器人", "sandbox": "本机体验"}
KIND_NAMES = {
    "reminder": "催办提醒",
    "escalation": "升级提醒",
    "reply": "回复",
    "digest": "每日汇总",
    "urge": "催办",
    "review": "审核结果",
    "notification": "通报",
    "export": "导出文件",
    "login": "登录验证码",
}


def _reason(error: str | None, otherwise: str) -> str:
    """The platform's answer in a few plain words; ``otherwise`` when it says nothing more specific."""
    text = (error or "").lower()
    if "blocked" in text or "forbidden" in text:
        return "对方已屏蔽机器人"
    if any(word in text for word in ("chat not found", "invaliduser", "81013", "deactivated", "kicked")):
        return "账号已不存在或不在应用可见范围"
    if "retry after" in text or "flood" in text or "429" in text:
        return "平台限流"
    if "document not readable" in text:
        return "附件文件无法读取"
    if text == "not delivered before it stopped mattering":  # expired in the queue before a first try
        return "未能在时效内发出"
    return otherwise


class OutboxPages:
    """发件箱: counts per platform, the stuck and given-up messages with 重新发送, what waits, what went."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.service = dashboard.service
        self.settings = dashboard.settings

    async def page(self, request: Request) -> Response:
        if (refused := await self.dashboard._guard(request)) is not None:
            return refused
        data = await self.service.threads.run(self._page)
        return await self.dashboard.ui.page(request, "office_outbox.html.j2", **data, **self.dashboard._flash(request))

    async def do_resend(self, request: Request) -> Response:
        form, refused = await self.dashboard._guard_form(request)
        if refused is not None:
            return refused
        info = await self.dashboard.ui.session(request)
        raw = str(form.get("id") or "").strip().lstrip("#")
        if not raw.isdigit():
            return self.dashboard._back(PAGE, "请选择要重新发送的消息。", "warn")
        done = await self.service.threads.run(self._resend, int(raw), self.dashboard._actor(info))
        if not done:
            return self.dashboard._back(PAGE, f"第 {raw} 条消息不能重新发送:它已送达、正在发送,或不存在。", "warn")
        self.service.sender.wake()
        return self.dashboard._back(PAGE, f"第 {raw} 条消息已重新排队,将在一天内尽快送达。")

    def _resend(self, outbox_id: int, actor: str) -> bool:
        with self.service.runtime.transaction() as session:
            row = session.get(OutboxMessage, outbox_id)
            # the audit log says which message to whom, as the page does: "#12 催办提醒 王联络(县发改局)"
            subject = (
                f"#{outbox_id} {KIND_NAMES.get(row.kind, '消息')} {self._names(session, [row])[row.id]}"
                if row
                else None
            )
            return (
                resend(session, outbox_id, now=self.service.runtime.clock.now(), actor=actor, subject=subject)
                is not None
            )

    # --- the page ------------------------------------------------------------

    def _page(self) -> dict[str, Any]:
        now = self.service.runtime.clock.now()
        platforms = [t.platform for t in self.service.transports]
        alert_after = self.settings.outbox.alert_after
        with self.service.runtime.transaction() as session:
            trouble = list(
                session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.state.in_((*RESENDABLE, "unreachable"))
                        | ((OutboxMessage.state == "queued") & (OutboxMessage.attempts > 0))
                    )
                    .order_by(OutboxMessage.id.desc())
                    .limit(100)
                )
            )
            waiting = list(
                session.scalars(
                    select(OutboxMessage)
                    .where(
                        (OutboxMessage.state == "sending")
                        | ((OutboxMessage.state == "queued") & (OutboxMessage.attempts == 0))
                    )
                    .order_by(OutboxMessage.id)
                    .limit(100)
                )
            )
            recent = list(
                session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.state == "sent")
                    .order_by(OutboxMessage.id.desc())
                    .limit(30)
                )
            )
            names = self._names(session, trouble + waiting + recent)
            depth = outbox_depth(session, now)
            retrying = dict(
                session.execute(
                    select(OutboxMessage.platform, func.count())
                    .where(OutboxMessage.state == "queued", OutboxMessage.attempts > 0)
                    .group_by(OutboxMessage.platform)
                ).all()
            )
            streaks = platform_health(session, self.service.sender.clock.now(), platforms + list(depth))
            unreachable = session.scalars(select(Identity).where(Identity.reachable.is_(False))).all()
            people = {
                p.id: p.display_name
                for p in session.scalars(select(Person).where(Person.id.in_({i.person_id for i in unreachable})))
            }

            def row(message: OutboxMessage) -> dict[str, Any]:
                return {
                    "id": message.id,
                    "platform": PLATFORM_NAMES.get(message.platform, message.platform),
                    "who": names.get(message.id, "(未知接收人)"),
                    "what": KIND_NAMES.get(message.kind, "消息") + ("(补发)" if message.late else ""),
                    "state": self._state(message),
                    "resendable": resendable(message),
                    "created": message.created_at,
                    "sent": message.sent_at,
                    # a sign-in code waiting to go out is not shown to other office staff
                    "text": "[不显示]"
                    if message.payload.get("sensitive")
                    else (message.payload.get("text") or "")[:80],
                }

            counts = []
            # the platforms with messages, and any failing now (one without either has nothing to say)
            for platform in sorted(set(depth) | {p for p, streak in streaks.items() if streak.failing_since}):
                states = depth.get(platform, {})
                streak = streaks.get(platform)
                counts.append(
                    {
                        "platform": PLATFORM_NAMES.get(platform, platform),
                        "sent": states.get("sent", 0),
                        "waiting": states.get("queued", 0) + states.get("sending", 0) - retrying.get(platform, 0),
                        "retrying": retrying.get(platform, 0),
                        "expired": states.get("expired", 0),
                        "failed": states.get("failed", 0) + states.get("unreachable", 0),
                        "failing_minutes": int(streak.failing_seconds // 60)
                        if streak is not None and streak.failing_for_longer_than(alert_after)
                        else None,
                        "failing_reason": _reason(streak.last_error if streak else None, "平台或网络不可用"),
                    }
                )
            return {
                "counts": counts,
                "trouble": [row(m) for m in trouble],
                "waiting": [row(m) for m in waiting],
                "recent": [row(m) for m in recent],
                "unreachable": [
                    {
                        "who": people.get(i.person_id) or i.username or "(未留姓名)",
                        "platform": PLATFORM_NAMES.get(i.platform, i.platform),
                        "reason": _reason(i.unreachable_reason, "平台拒绝"),
                        "at": i.unreachable_at,
                    }
                    for i in unreachable
                ],
            }

    def _state(self, message: OutboxMessage) -> str:
        """The row's state in the office's words."""
        if message.state == "sent":
            return "已送达"
        if message.state == "sending":
            return "发送中"
        if message.state == "queued":
            if message.attempts == 0:
                return "待发送"
            return f"重试中(第{message.attempts}次未成功,下次 {self._time(message.next_attempt_at)})"
        if message.state == "expired":
            return f"已过期未送达({_reason(message.last_error, '平台或网络一直不可用')})"
        if message.state == "unreachable":
            return f"无法送达({_reason(message.last_error, '对方账号不可用')})"
        return f"发送失败({_reason(message.last_error, '平台拒绝')})"

    def _time(self, moment: datetime | None) -> str:
        return self.dashboard.m.local(moment, "%H:%M") if moment is not None else ""

    def _names(self, session: Any, rows: list[OutboxMessage]) -> dict[int, str]:
        """Each row's recipient as the office knows them: 姓名(单位), or the office group / group robot."""
        person_ids = {r.person_id for r in rows if r.person_id is not None}
        people = dict(session.execute(select(Person.id, Person.display_name).where(Person.id.in_(person_ids))).all())
        units: dict[int, list[str]] = defaultdict(list)
        for person_id, unit_name in session.execute(
            select(Binding.person_id, Unit.name)
            .join(Unit, Unit.id == Binding.unit_id)
            .where(Binding.person_id.in_(person_ids), Binding.revoked_at.is_(None))
            .order_by(Binding.id)
        ):
            if unit_name not in units[person_id]:
                units[person_id].append(unit_name)
        row_units = dict(
            session.execute(select(Unit.id, Unit.name).where(Unit.id.in_({r.unit_id for r in rows if r.unit_id}))).all()
        )
        names: dict[int, str] = {}
        for r in rows:
            if r.person_id is None:
                names[r.id] = f"群机器人“{r.chat_id}”" if r.platform == "wecom_robot" else "督查室工作群"
                continue
            name = people.get(r.person_id) or "(未留姓名)"
            unit = row_units.get(r.unit_id) if r.unit_id else None
            where = unit or "、".join(units.get(r.person_id, []))
            names[r.id] = f"{name}({where})" if where else name
        return names
