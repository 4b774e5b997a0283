"""The database schema: the supervision cycle's record of what is owed, said and sent.

Conventions: every time is stored as UTC and read back timezone-aware
(:class:`UTCDateTime`); history tables (status reports, reviews, audit log,
outbox) are append-only in spirit — rows are added, state columns move
forward, nothing recorded is deleted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


# --- plan ------------------------------------------------------------------


class Jurisdiction(Base):
    """A county (or city) whose plan is supervised; it owns units and plans."""

    __tablename__ = "jurisdiction"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Plan(Base):
    """One imported notice: a year's tasks for one jurisdiction."""

    __tablename__ = "plan"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    year: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text, default="")
    issued_on: Mapped[str | None] = mapped_column(String(10))
    source_name: Mapped[str] = mapped_column(String(300), default="")
    source_sha256: Mapped[str] = mapped_column(String(64), default="")
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)

    jurisdiction: Mapped[Jurisdiction] = relationship()
    tasks: Mapped[list[Task]] = relationship(back_populates="plan", order_by="(Task.annex, Task.number)")


class Task(Base):
    """A numbered task of an annex; matched across re-imports by (annex, number)."""

    __tablename__ = "task"
    __table_args__ = (UniqueConstraint("plan_id", "annex", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"), index=True)
    annex: Mapped[str] = mapped_column(String(10))
    number: Mapped[int] = mapped_column(Integer)
    section: Mapped[str] = mapped_column(String(200), default="")
    subsection: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    source_line: Mapped[int] = mapped_column(Integer, default=0)
    # The task's own deadline, as a date and in the document's words (2023年底前, 6月底前, 到2025年).
    deadline: Mapped[date | None] = mapped_column(Date)
    deadline_text: Mapped[str] = mapped_column(String(100), default="", server_default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    plan: Mapped[Plan] = relationship(back_populates="tasks")
    assignments: Mapped[list[Assignment]] = relationship(back_populates="task")

    @property
    def key(self) -> str:
        return f"{self.annex}-{self.number}"


class Unit(Base):
    """A responsible body (department, town, enterprise …) under its canonical name."""

    __tablename__ = "unit"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    aliases: Mapped[list[UnitAlias]] = relationship(back_populates="unit", cascade="all, delete-orphan")
    assignments: Mapped[list[Assignment]] = relationship(back_populates="unit")


class UnitAlias(Base):
    """Another spelling of a unit's name, from the document or the configuration."""

    __tablename__ = "unit_alias"
    __table_args__ = (UniqueConstraint("unit_id", "alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    alias: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20), default="config")

    unit: Mapped[Unit] = relationship(back_populates="aliases")


class UnitGroupMember(Base):
    """Membership of a unit in a group phrase (各镇人民政府 …): from the configuration or defined by the office."""

    __tablename__ = "unit_group_member"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "phrase", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    phrase: Mapped[str] = mapped_column(String(100))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    # "config" (config.toml) or "office" (defined on the dashboard or with --group; wins over the config)
    source: Mapped[str] = mapped_column(String(20), default="config", server_default="config")


class TaskGroup(Base):
    """A group phrase a task names (各镇人民政府 …), kept whether or not the group's members are defined.

    Its units are assigned (``Assignment.via_group``) once the jurisdiction defines the group.
    """

    __tablename__ = "task_group"
    __table_args__ = (UniqueConstraint("task_id", "phrase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"), index=True)
    phrase: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    task: Mapped[Task] = relationship()


class Assignment(Base):
    """A unit's part (lead or responsible) in a task; kept inactive when a re-import drops it."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("task_id", "unit_id"), Index("ix_assignment_unit_active", "unit_id", "active"))

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    role: Mapped[str] = mapped_column(String(20))
    via_group: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # What the document says this unit does in the task (区经发局（负责招商引资）).
    note: Mapped[str | None] = mapped_column(String(200))

    task: Mapped[Task] = relationship(back_populates="assignments")
    unit: Mapped[Unit] = relationship(back_populates="assignments")


class Target(Base):
    """A number a task commits to (硬账): read from the task's text at import, or set by the office.

    Rows read from the document (``source = "document"``) follow re-imports;
    the office's corrections and additions (``source = "office"``) are never
    overwritten: a corrected row keeps the ``phrase`` it was read from, so a
    re-import knows not to read it again.  A target the office removed stays,
    inactive, for the same reason.
    """

    __tablename__ = "target"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))
    phrase: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(10), default="document")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    task: Mapped[Task] = relationship()


class TargetValue(Base):
    """A value a unit reported for a target with one status report (cumulative, in the target's unit)."""

    __tablename__ = "target_value"
    __table_args__ = (Index("ix_target_value_target_unit", "target_id", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("target.id"))
    report_id: Mapped[int] = mapped_column(ForeignKey("status_report.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    value: Mapped[float] = mapped_column(Float)
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)


class Milestone(Base):
    """A dated step of a task's refined plan (节点), e.g. 6月底前 完成可研批复; supervised as its own deadline."""

    __tablename__ = "milestone"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    due_on: Mapped[date] = mapped_column(Date)
    what: Mapped[str] = mapped_column(Text)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoint.id"))
    source: Mapped[str] = mapped_column(String(20), default="chat")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    task: Mapped[Task] = relationship()
    unit: Mapped[Unit] = relationship()


# --- people ----------------------------------------------------------------


class Person(Base):
    """Somebody who talks to the bot, on any platform."""

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    identities: Mapped[list[Identity]] = relationship(back_populates="person")
    bindings: Mapped[list[Binding]] = relationship(back_populates="person")


class Identity(Base):
    """A person's account on one platform and the chat the bot reaches them in."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(100))
    chat_id: Mapped[str] = mapped_column(String(100))
    username: Mapped[str] = mapped_column(String(200), default="")
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    unreachable_reason: Mapped[str | None] = mapped_column(Text)
    unreachable_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    person: Mapped[Person] = relationship(back_populates="identities")


class BindingCode(Base):
    """A one-time code that binds whoever presents it to a unit in a role; stored hashed."""

    __tablename__ = "binding_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    used_by_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_by: Mapped[str] = mapped_column(String(100), default="")

    unit: Mapped[Unit] = relationship()


class Binding(Base):
    """A person's standing as liaison, head, office or leader of a unit."""

    __tablename__ = "binding"
    __table_args__ = (Index("ix_binding_unit_role", "unit_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    role: Mapped[str] = mapped_column(String(20))
    code_id: Mapped[int | None] = mapped_column(ForeignKey("binding_code.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    person: Mapped[Person] = relationship(back_populates="bindings")
    unit: Mapped[Unit] = relationship()


# --- obligations and answers -------------------------------------------------


class Checkpoint(Base):
    """A reporting obligation: who owes what, about which tasks, by when."""

    __tablename__ = "checkpoint"
    __table_args__ = (UniqueConstraint("plan_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    key: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column()
    owed_by: Mapped[str] = mapped_column(String(30))
    task_scope: Mapped[Any] = mapped_column(JSON)
    satisfied_by: Mapped[str] = mapped_column(String(20))
    ladder: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(20), default="config")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column()

    plan: Mapped[Plan] = relationship()


class Obligation(Base):
    """What one unit owes one checkpoint about one task, and where it stands."""

    __tablename__ = "obligation"
    __table_args__ = (
        UniqueConstraint("checkpoint_id", "task_id", "unit_id"),
        Index("ix_obligation_checkpoint_state", "checkpoint_id", "state"),
        Index("ix_obligation_unit_state", "unit_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoint.id"))
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    role: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="owed")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    answered_at: Mapped[datetime | None] = mapped_column()
    last_report_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkpoint: Mapped[Checkpoint] = relationship()
    task: Mapped[Task] = relationship()
    unit: Mapped[Unit] = relationship()


class StatusReport(Base):
    """One answer from a unit about a task: never changed, never deleted."""

    __tablename__ = "status_report"
    __table_args__ = (Index("ix_status_report_task_unit", "task_id", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    obligation_id: Mapped[int | None] = mapped_column(ForeignKey("obligation.id"), index=True)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoint.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    status: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(Text, default="")
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    platform: Mapped[str] = mapped_column(String(20), default="")
    platform_message_id: Mapped[str | None] = mapped_column(String(100))
    via: Mapped[str] = mapped_column(String(20), default="")
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)

    attachments: Mapped[list[Attachment]] = relationship(back_populates="report")
    task: Mapped[Task] = relationship()
    unit: Mapped[Unit] = relationship()
    person: Mapped[Person | None] = relationship()


class Attachment(Base):
    """A file sent with a report (the refined plan is one), kept on disk under uploads."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("status_report.id"), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    file_id: Mapped[str] = mapped_column(String(300))
    file_unique_id: Mapped[str] = mapped_column(String(300), default="")
    file_name: Mapped[str] = mapped_column(String(300))
    mime_type: Mapped[str] = mapped_column(String(100), default="")
    size: Mapped[int] = mapped_column(BigInteger)
    stored_path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    report: Mapped[StatusReport | None] = relationship(back_populates="attachments")


class Review(Base):
    """The office's decision on a submission: accepted, or returned with a reason."""

    __tablename__ = "review"

    id: Mapped[int] = mapped_column(primary_key=True)
    obligation_id: Mapped[int] = mapped_column(ForeignKey("obligation.id"), index=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("status_report.id"))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# --- messages ----------------------------------------------------------------


class OutboxMessage(Base):
    """An outgoing message: written first, delivered later, never sent twice by design."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_next", "state", "next_attempt_at"),
        # The sender claims the oldest queued rows: walked in id order, a claim reads a few rows, not
        # every queued one sorted (3 ms a claim with 3,000 queued, on SQLite).
        Index("ix_outbox_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    kind: Mapped[str] = mapped_column(String(30))
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    platform_message_id: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None] = mapped_column()
    # when the platform answered the latest attempt (real time): per-chat windows count from it
    answered_at: Mapped[datetime | None] = mapped_column()
    # what the message is about, so that a reply to it can be understood
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoint.id"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    task_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    rung: Mapped[str | None] = mapped_column(String(40))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    # the moment the message stops mattering (a reminder's next rung, a reply's day): it is not
    # sent after it but marked ``expired``; NULL keeps trying (see core.outbox.enqueue)
    matters_until: Mapped[datetime | None] = mapped_column()


Index("ix_outbox_platform_message", OutboxMessage.platform, OutboxMessage.chat_id, OutboxMessage.platform_message_id)
Index("ix_outbox_chat_answered", OutboxMessage.platform, OutboxMessage.chat_id, OutboxMessage.answered_at)


class AuditLog(Base):
    """Who did what to the record, and when (imports, bindings, reviews, urges …)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# --- conversation and scheduling state ---------------------------------------------


class InboundUpdate(Base):
    """The durable inbox: every update a platform delivered, stored before it is acknowledged.

    ``state`` is ``pending`` until the conversation has handled it (in the same
    transaction that records what it meant), then ``handled``; ``failed`` when
    handling hit a permanent error (the sender was told, the dashboard shows it).
    A platform that delivers the same update again finds the row and nothing
    happens twice.  ``payload`` is the raw update (a Telegram update, WeCom's
    decrypted XML, a sandbox post); it is cleared once handled.
    """

    __tablename__ = "inbound_update"
    __table_args__ = (
        UniqueConstraint("platform", "update_key"),
        Index("ix_inbound_update_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    update_key: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(10), default="handled")  # pending | handled | failed
    user_id: Mapped[str | None] = mapped_column(String(100), default=None)
    chat_id: Mapped[str | None] = mapped_column(String(100), default=None)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    #: Whether the sender was already told that handling is delayed (said once per update).
    notified: Mapped[bool] = mapped_column(default=False)
    handled_at: Mapped[datetime | None] = mapped_column(default=None)


class ConversationState(Base):
    """Where a person is in a multi-step conversation (the /report menu), kept across restarts."""

    __tablename__ = "conversation_state"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(30))
    version: Mapped[int] = mapped_column(Integer, default=1)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RungRun(Base):
    """A rung of a checkpoint's ladder that the scheduler has dealt with, per role.

    ``outcome`` is ``sent`` when its reminders were queued, ``skipped`` when a
    later rung for the same role superseded it during downtime.
    """

    __tablename__ = "rung_run"
    __table_args__ = (UniqueConstraint("checkpoint_id", "rung_key", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoint.id"))
    rung_key: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(20))
    fires_at: Mapped[datetime] = mapped_column()
    processed_at: Mapped[datetime] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(20))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    messages: Mapped[int] = mapped_column(Integer, default=0)


class DigestRun(Base):
    """One overdue digest as sent: its figures, so the next one can say what changed."""

    __tablename__ = "digest_run"
    __table_args__ = (Index("ix_digest_run_plan_at", "plan_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    at: Mapped[datetime] = mapped_column()
    scheduled: Mapped[bool] = mapped_column(Boolean, default=True)
    # {"units": {unit_id: [obligation ids overdue]}, "total": n}
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)


class SandboxMessage(Base):
    """A line of a local sandbox chat: what the person typed, and what the bot sent (the sandbox's own "platform")."""

    __tablename__ = "sandbox_message"
    __table_args__ = (Index("ix_sandbox_message_chat", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(3))  # "in" from the person, "out" from the bot
    text: Mapped[str] = mapped_column(Text, default="")
    buttons: Mapped[list[Any] | None] = mapped_column(JSON)
    reply_to: Mapped[int | None] = mapped_column(Integer)
    files: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column()


class WebSession(Base):
    """A signed-in dashboard session; the cookie holds the token, the database only its hash."""

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    signed_in: Mapped[bool] = mapped_column(Boolean, default=False)
    how: Mapped[str] = mapped_column(String(20), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class LoginCode(Base):
    """A one-time dashboard sign-in code the bot sent to an office-role person."""

    __tablename__ = "login_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    session_id: Mapped[int] = mapped_column(ForeignKey("web_session.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Kept only while the code is live, so that asking again re-sends the same code; cleared once used.
    code: Mapped[str | None] = mapped_column(String(12))


class SignInLimit(Base):
    """Sign-in bookkeeping for one key ("session:<hash>", "address:<ip>", "person:<id>"...).

    ``sent`` counts sign-in codes sent in the hour from ``window_start``;
    ``failures`` counts wrong guesses in a row, and past the limit the key is
    locked until ``locked_until`` (each further lockout twice as long).
    """

    __tablename__ = "sign_in_limit"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column()
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()


class OfficeChat(Base):
    """A group chat the office added (``/officegroup`` sent in it): it receives the office's digest."""

    __tablename__ = "office_chat"
    __table_args__ = (UniqueConstraint("platform", "chat_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(100))
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    added_by_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateSlot(Base):
    """The next moment a platform may be sent to, shared by every process (PostgreSQL deployments).

    Each send moves ``next_at`` on by one interval in one atomic UPDATE, so
    several processes together keep to the platform's overall rate; a 429
    pushes it past ``retry_after`` for all of them.
    """

    __tablename__ = "rate_slot"

    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    next_at: Mapped[datetime] = mapped_column()


class PlatformStatus(Base):
    """A platform's current failure streak, shared by every process (health check and metrics).

    ``failing_since`` is the first transient failure after the latest success
    (NULL while sends go through); a success clears it.
    """

    __tablename__ = "platform_status"

    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    failing_since: Mapped[datetime | None] = mapped_column()
    last_failure_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
