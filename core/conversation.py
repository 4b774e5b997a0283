"""The conversations, written once for every platform.

An adapter (Telegram, WeCom, the sandbox) turns what a person sent into an
:class:`Incoming` and calls :meth:`Conversation.handle`.  The conversation
decides what it means, records it, and queues every answer in the outbox in
the same transaction; it knows nothing of any platform's API.

The multi-step report (/report) is a small state machine whose states are
declared in :data:`REPORT_STATES`; its state lives in the database, so a
restart does not lose a half-finished report.  Buttons carry the state's
version, so a press on an old menu is refused rather than misread.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from core.binding import add_office_chat, redeem_code, unbind
from core.checkpoints import CheckpointError, add_adhoc_checkpoint, live_checkpoints, parse_task_scope
from core.clock import Clock
from core.config import PersonRole, Settings
from core.digest import SCREEN_ITEMS, SCREEN_UNITS, build_view, dashboard_link, overdue_file
from core.escalation import catch_up_on_binding
from core.inbox import mark_handled
from core.milestones import MilestoneRefused, add_milestones, parse_milestones
from core.notices import days_late, task_view
from core.office_actions import OfficeRefusal, decide, resolve_unit, urge, who_view
from core.outbox import Button, Message, enqueue, message_about
from core.pace import pace_of
from core.progress import record_values
from core.reporting import (
    Placement,
    StagedFile,
    StatusCode,
    find_task_for_unit,
    open_obligations,
    parse_status,
    pending_document,
    record_report,
    split_status,
    staging,
    target_obligation,
)
from core.runtime import current_plan
from core.target_answers import SKIP_WORDS, answered_figures, named_figures
from core.targets import Target as ParsedTarget
from core.targets import format_number
from core.task_targets import task_target_values
from core.tasks import parse_task_ref, task_label
from messages import Messages
from storage.models import (
    Assignment,
    Attachment,
    AuditLog,
    Binding,
    Checkpoint,
    ConversationState,
    Identity,
    InboundUpdate,
    Obligation,
    OutboxMessage,
    Plan,
    StatusReport,
    Task,
    Unit,
)
from storage.queries import (
    OPEN_STATES,
    active_bindings,
    checkpoint_state_counts,
    find_identity,
    find_task,
    identities_with_role,
    newest_plan,
    person_identities,
    sender,
    unit_obligations,
)

REPORTER_ROLES = (PersonRole.LIAISON.value, PersonRole.HEAD.value)
PAGE_SIZE = 8
TASKS_PER_PAGE = 12  # /tasks: a page is one phone screen, and under WeCom's 2,048 bytes
# Messages that name tasks to report on, so a status typed without a reply can answer them.
REMINDER_KINDS = ("reminder", "escalation", "urge")
REMINDERS_LOOKED_AT = 20

# The /report conversation: each state and what it waits for.
REPORT_STATES: dict[str, str] = {
    "report.task": "a task button (or a page button)",
    "report.status": "a status button, or a status word typed",
    "report.note": "the progress note as text; files may come too",
    "report.file": "the document a document checkpoint needs",
    "report.confirm": "confirm or cancel; a file adds an attachment, text replaces the note",
    "report.values": "figures for the recorded report's targets (跳过 skips; text without figures ends it)",
    "report.milestones": "the refined plan's milestones, one per line (跳过 skips; text without a date ends it)",
}
# States that follow a recorded report: they take what concerns them and let anything else through.
FOLLOW_UP_STATES = ("report.values", "report.milestones")

COMMANDS: dict[str, tuple[str, ...]] = {
    "start": ("start", "绑定"),
    "help": ("help", "帮助"),
    "whoami": ("whoami", "我是谁"),
    "unbind": ("unbind", "解绑", "解除绑定"),
    "tasks": ("tasks", "任务", "我的任务"),
    "report": ("report", "报告", "报送"),
    "cancel": ("cancel", "取消"),
    "overdue": ("overdue", "逾期"),
    "urge": ("urge", "催办"),
    "accept": ("accept", "通过"),
    "return": ("return", "退回"),
    "who": ("who", "绑定情况"),
    "round": ("round", "新增督查"),
    "checkpoints": ("checkpoints", "督查轮次"),
    "digest": ("digest", "日报", "督办日报"),
    "export": ("export", "导出", "导出通报"),
    "officegroup": ("officegroup", "设为办公群"),
}
OFFICE_COMMANDS = {
    "overdue",
    "urge",
    "accept",
    "return",
    "who",
    "round",
    "checkpoints",
    "digest",
    "export",
    "officegroup",
}
_ALIASES = {alias: name for name, aliases in COMMANDS.items() for alias in aliases}
# Chinese command words may be typed glued to their argument: "报告22 按计划推进 …"
_GLUED = ("绑定", "报告", "报送", "催办", "通过", "退回", "导出")

# Statements every turn runs, built once (building one costs more than running it on SQLite).
_STATE = select(ConversationState).where(
    ConversationState.platform == bindparam("platform"),
    ConversationState.chat_id == bindparam("chat_id"),
    ConversationState.user_id == bindparam("user_id"),
)
_STATES = cast(Table, ConversationState.__table__)
_INSERT_STATE = insert(_STATES).returning(_STATES.c.id)
# SET from the parameters it is run with: state, version, data, updated_at.
_UPDATE_STATE = update(_STATES).where(_STATES.c.id == bindparam("state_id"))
_ASSIGNED_TO_UNIT = (
    select(Assignment.unit_id)
    .where(
        Assignment.task_id == bindparam("task_id"),
        Assignment.unit_id == bindparam("unit_id"),
        Assignment.active.is_(True),
    )
    .limit(1)
)
_ASSIGNED_UNIT = (
    select(Assignment.unit_id)
    .where(
        Assignment.task_id == bindparam("task_id"),
        Assignment.unit_id.in_(bindparam("unit_ids", expanding=True)),
        Assignment.active.is_(True),
    )
    .limit(1)
)


class OfficeRequest(Protocol):
    """Answers /digest and /export: queues its answers and returns their ids, or returns a refusal text."""

    def __call__(
        self, session: Session, what: str, plan: Plan, incoming: Incoming, args: list[str], now: datetime
    ) -> list[int] | str: ...


@dataclass(frozen=True)
class IncomingFile:
    """A file a person sent; ``staged`` is set when the adapter downloaded it."""

    file_id: str
    file_name: str
    size: int
    mime_type: str = ""
    file_unique_id: str = ""
    staged: StagedFile | None = None


@dataclass(frozen=True)
class Incoming:
    """A message or button press, as any platform delivers it."""

    platform: str
    user_id: str
    chat_id: str
    update_key: str
    message_id: str | None = None
    text: str = ""
    reply_to: str | None = None
    callback: str | None = None
    button_message_id: str | None = None
    files: tuple[IncomingFile, ...] = ()
    display_name: str = ""
    username: str = ""
    edited: bool = False
    private: bool = True  # a one-to-one chat with the bot (not a group)


@dataclass
class Handled:
    """What handling queued, and a short toast for a button press."""

    queued: list[int] = field(default_factory=list)
    toast: str | None = None
    duplicate: bool = False


@dataclass
class _Turn:
    """One incoming message being handled: the session, the sender's identity and what is queued."""

    session: Session
    incoming: Incoming
    now: datetime
    plan: Plan | None
    identity: Identity | None = None
    bindings: list[Binding] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    toast: str | None = None
    files_used: bool = False
    # staged files of drafts this turn dropped: deleted once the turn has committed
    discarded: list[Path] = field(default_factory=list)
    # files of the report recorded: moved into place once the turn has committed
    placements: list[Placement] = field(default_factory=list)
    # answers already looked up in this turn (each would otherwise be a query again)
    known_state: ConversationState | None = None
    state_looked_up: bool = False
    task_units: dict[int, Unit | None] = field(default_factory=dict)

    @property
    def reporter_units(self) -> list[Unit]:
        return [b.unit for b in self.bindings if b.role in REPORTER_ROLES]

    @property
    def is_office(self) -> bool:
        return any(b.role == PersonRole.OFFICE.value for b in self.bindings)


def file_refusal(settings: Settings, file: IncomingFile) -> tuple[str, str] | None:
    """Why a file cannot be accepted (error code, detail), or None: size cap and type list."""
    if file.size > settings.uploads.max_bytes:
        return "file_too_large", file.file_name
    suffix = Path(file.file_name).suffix.lower()
    if suffix not in settings.uploads.allowed_types:
        return "file_type", file.file_name
    return None


class Conversation:
    """The platform-neutral conversation core."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
        messages: Messages,
        *,
        on_office_request: OfficeRequest | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.m = messages
        # /digest and /export are answered by the reports module; it registers here.
        self.on_office_request = on_office_request
        # (platform, "handled" | "duplicate") -> count, for the metrics endpoint
        self.handled: Counter[tuple[str, str]] = Counter()

    # --- entry points -------------------------------------------------------

    def accepts_files_from(self, platform: str, user_id: str) -> bool:
        """Whether downloading this person's files is worth it (they are bound to something)."""
        with self.sessions() as session:
            identity = find_identity(session, platform, user_id)
            return identity is not None and bool(active_bindings(session, identity.person_id))

    def staging_dir(self) -> Path:
        folder = self.settings.path(self.settings.uploads.dir) / "staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def stage(self, file_name: str) -> AbstractContextManager[Path]:
        """Where to write a file being received (see :func:`core.reporting.staging`)."""
        return staging(self.settings.path(self.settings.uploads.dir) / "staging", file_name)

    def handle(self, incoming: Incoming) -> Handled:
        """Handle one incoming update exactly once; every answer goes to the outbox."""
        (outcome,) = self.handle_many([incoming])
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None  # a lone update is never left behind another
        return outcome

    def handle_many(self, incomings: Sequence[Incoming]) -> list[Handled | Exception | None]:
        """Handle updates exactly once, in one transaction with a savepoint each; what became of each, in order.

        An update whose handling raises is rolled back alone, and the exception
        is its outcome; that sender's later updates in the call are then left
        unhandled (None), since the order of one person's messages matters.
        Files move into place, and dropped drafts' files go, once the
        transaction has committed.  Raises when the transaction itself fails
        (it could not begin, or commit): then none of the updates is handled.
        """
        outcomes: list[Handled | Exception | None] = [None] * len(incomings)
        turns: list[_Turn | None] = [None] * len(incomings)
        failed: set[tuple[str, str]] = set()
        with self.sessions() as session, session.begin():
            for position, original in enumerate(incomings):
                sender_key = (original.platform, original.user_id)
                if sender_key in failed:
                    continue
                # IMEs type ideographic spaces between words; read them as spaces.
                incoming = replace(original, text=original.text.replace("\u3000", " ").strip())
                # Each update starts as in a session of its own: nothing loaded or remembered by the
                # one before (which may have been rolled back) is taken for what the database holds.
                session.expunge_all()
                session.info.clear()
                try:
                    with session.begin_nested():
                        turns[position] = self._turn(session, incoming)
                    outcomes[position] = Handled(duplicate=True) if turns[position] is None else None
                except IntegrityError as exc:
                    # Two deliveries of one update raced; the other one handled it.
                    outcomes[position] = Handled(duplicate=True) if self._seen(session, incoming) else exc
                except Exception as exc:  # this update only: its savepoint is rolled back, the others stand
                    outcomes[position] = exc
                if isinstance(outcomes[position], Exception):
                    failed.add(sender_key)
        # Committed: the reports' files go into place, no draft refers to the dropped ones.
        for position, incoming in enumerate(incomings):
            outcomes[position] = self._committed(incoming, turns[position], outcomes[position])
        return outcomes

    def _turn(self, session: Session, incoming: Incoming) -> _Turn | None:
        """Claim and handle one update in the caller's transaction; None when it was handled before."""
        now = self.clock.now()
        if not mark_handled(session, incoming.platform, incoming.update_key, now):
            return None
        turn = _Turn(session, incoming, now, None)
        self._dispatch(turn)
        return turn

    def _committed(
        self, incoming: Incoming, turn: _Turn | None, outcome: Handled | Exception | None
    ) -> Handled | Exception | None:
        """The file work of one update once its transaction has committed; its final outcome."""
        if turn is None:
            if isinstance(outcome, IntegrityError) or (isinstance(outcome, Handled) and outcome.duplicate):
                self.discard_files(incoming)
            if isinstance(outcome, Handled):
                self.handled[(incoming.platform, "duplicate")] += 1
            return outcome
        try:
            if not turn.files_used:
                self.discard_files(incoming)
            self._place_files(turn)
            for path in turn.discarded:
                path.unlink(missing_ok=True)
        except Exception as exc:  # recorded, but this update's files could not be settled: said as before
            return exc
        self.handled[(incoming.platform, "handled")] += 1
        return Handled(queued=turn.queued, toast=turn.toast)

    # --- plumbing ----------------------------------------------------------------

    @staticmethod
    def _seen(session: Session, incoming: Incoming) -> bool:
        """Whether the update is stored (asked in the batch's own transaction: on SQLite it holds the lock)."""
        return (
            session.scalar(
                select(InboundUpdate.id).where(
                    InboundUpdate.platform == incoming.platform,
                    InboundUpdate.update_key == incoming.update_key[:200],
                )
            )
            is not None
        )

    @staticmethod
    def discard_files(incoming: Incoming) -> None:
        """Delete the files staged for an update that will not keep them."""
        for file in incoming.files:
            if file.staged is not None:
                file.staged.staged_path.unlink(missing_ok=True)

    def _place_files(self, turn: _Turn) -> None:
        """Move a recorded report's files into place; one that cannot be is taken off the report, and said."""
        lost: list[Path] = []
        cause: OSError | None = None
        for placement in turn.placements:
            try:
                placement.place()
            except OSError as exc:  # full or read-only: the report stands, without this file
                lost.append(placement.stored)
                cause = exc
                placement.staged.unlink(missing_ok=True)
        if not lost:
            return
        incoming = turn.incoming
        with self.sessions() as session, session.begin():
            attachments = list(
                session.scalars(select(Attachment).where(Attachment.stored_path.in_([str(p) for p in lost])))
            )
            names = [a.file_name for a in attachments]
            for attachment in attachments:
                session.delete(attachment)
            session.add(
                AuditLog(
                    at=turn.now,
                    actor=f"{incoming.platform}:{incoming.user_id}",
                    action="attachment.not_stored",
                    subject=", ".join(names),
                    detail={"error": str(cause), "reports": sorted({a.report_id for a in attachments})},
                )
            )
            enqueue(
                session,
                platform=incoming.platform,
                chat_id=incoming.chat_id,
                kind="reply",
                dedup_key=f"reply:{incoming.platform}:{incoming.update_key}:files-not-stored",
                message=Message(text=self.m.render("error", code="file_not_kept", detail="、".join(names), limit="")),
                now=turn.now,
                person_id=turn.identity.person_id if turn.identity else None,
            )

    def _reply(
        self,
        turn: _Turn,
        text: str,
        *,
        buttons: list[list[Button]] | None = None,
        edit: bool = False,
        label: str | None = None,
        close: str | None = None,
        document: dict[str, str] | None = None,
    ) -> None:
        """Queue an answer; ``edit`` replaces the pressed menu, ``close`` takes the buttons off another message."""
        incoming = turn.incoming
        message = Message(
            text=text,
            buttons=buttons or [],
            document=document,
            reply_to=None if edit or close or incoming.callback else incoming.message_id,
            edit_of=close or (incoming.button_message_id if edit else None),
            label=label,
            close=close is not None,
        )
        queued = enqueue(
            turn.session,
            platform=incoming.platform,
            chat_id=incoming.chat_id,
            kind="reply",
            dedup_key=f"reply:{incoming.platform}:{incoming.update_key}:{len(turn.queued)}",
            message=message,
            now=turn.now,
            person_id=turn.identity.person_id if turn.identity else None,
        )
        if queued is not None:
            turn.queued.append(queued)

    def _error(self, turn: _Turn, code: str, detail: str = "", **extra: Any) -> None:
        self._reply(turn, self.m.render("error", code=code, detail=detail, limit=extra.pop("limit", ""), **extra))

    def _task_view(self, task: Task) -> dict[str, Any]:
        return task_view(task, self.m.language)

    # --- routing -----------------------------------------------------------------

    def _dispatch(self, turn: _Turn) -> None:
        incoming = turn.incoming
        who = sender(turn.session, incoming.platform, incoming.user_id, incoming.chat_id)
        turn.identity, turn.bindings, plan = who.identity, who.bindings, who.plan
        if who.identity is not None:  # asked with the identity: whether a draft report is under way
            turn.known_state, turn.state_looked_up = who.state, True
        if (
            turn.identity is not None
            and turn.identity.chat_id != incoming.chat_id
            and not incoming.callback
            and incoming.chat_id == incoming.user_id
        ):
            turn.identity.chat_id = incoming.chat_id
        # A province deployment holds many counties: the person's own county's plan is the one meant.
        turn.plan = plan if turn.bindings else current_plan(turn.session, self.settings)
        command, args = self._parse_command(incoming.text)

        if command == "start" and args:
            if not incoming.private:
                # Bound here, the group would get the person's reminders and sign-in codes.
                self._reply(turn, self.m.render("bind_in_group"))
                return
            self._bind(turn, args)  # the whole rest: a code typed on a phone may have spaces in it
            return
        if turn.identity is None or not turn.bindings:
            if command == "start":
                self._reply(turn, self.m.render("bind_usage"))
            else:
                self._reply(turn, self.m.render("stranger"))
            return
        if incoming.edited:
            self._error(turn, "edited")
            return
        for file in incoming.files:
            refusal = file_refusal(self.settings, file)
            if refusal is not None:
                code, detail = refusal
                self._error(
                    turn,
                    code,
                    detail,
                    limit=self.settings.uploads.max_bytes // (1024 * 1024),
                    allowed=self.m.label("sep", "list").join(self.settings.uploads.allowed_types),
                )
                return
        if incoming.callback:
            self._button(turn, incoming.callback)
            return
        if command is not None:
            self._command(turn, command, args)
            return
        if incoming.text.startswith("/"):
            self._error(turn, "unknown_command", incoming.text.split()[0])
            return
        state = self._state(turn)
        if state is not None and state.state == "report.values" and self._continue_values(turn, state):
            return
        if state is not None and state.state == "report.milestones" and self._continue_milestones(turn, state):
            return
        if state is not None and state.state in REPORT_STATES and state.state not in FOLLOW_UP_STATES:
            self._continue_report(turn, state)
            return
        if incoming.reply_to and self._reply_to_reminder(turn):
            return
        if not incoming.reply_to and incoming.text and self._answer_to_open_reminder(turn):
            return
        if incoming.files:
            self._error(turn, "file_without_context")
            return
        self._error(turn, "unrecognised")

    @staticmethod
    def _parse_command(text: str) -> tuple[str | None, str]:
        stripped = text.strip()
        if not stripped:
            return None, ""
        if stripped.startswith("/"):
            head, _, rest = stripped[1:].partition(" ")
            name = head.split("@", 1)[0].lower()
            return (_ALIASES.get(name) if name in _ALIASES else None), rest.strip()
        head, _, rest = stripped.partition(" ")
        if head in _ALIASES:
            return _ALIASES[head], rest.strip()
        for word in _GLUED:
            if stripped.startswith(word) and len(stripped) > len(word) and stripped[len(word)].isalnum():
                return _ALIASES[word], stripped[len(word) :].strip()
        return None, ""

    def _command(self, turn: _Turn, command: str, args: str) -> None:
        if command in OFFICE_COMMANDS and not turn.is_office:
            self._error(turn, "not_office")
            return
        handler = getattr(self, f"_cmd_{command}")
        handler(turn, args)

    # --- binding -------------------------------------------------------------------

    def _bind(self, turn: _Turn, code: str) -> None:
        incoming = turn.incoming
        result = redeem_code(
            turn.session,
            code,
            platform=incoming.platform,
            user_id=incoming.user_id,
            chat_id=incoming.chat_id,
            display_name=incoming.display_name,
            username=incoming.username,
            now=turn.now,
        )
        if result.refusal is not None:
            self._reply(turn, self.m.render("bind_refused", reason=self.m.label("refusal", result.refusal.value)))
            return
        assert result.binding is not None and result.identity is not None
        turn.identity = result.identity
        turn.bindings = active_bindings(turn.session, result.identity.person_id)
        turn.plan = newest_plan(turn.session, result.binding.unit.jurisdiction_id)
        binding = result.binding
        self._reply(
            turn,
            self.m.render(
                "bind_ok",
                unit=binding.unit.name,
                role=binding.role,
                role_label=self.m.label("role", binding.role),
                replaced=[
                    f"{b.unit.name}{self.m.label('sep', 'unit_role')}{self.m.label('role', b.role)}"
                    for b in result.replaced or []
                    if b.unit_id != binding.unit_id
                ],
            ),
        )
        if binding.role in REPORTER_ROLES:  # reminders already sent before they bound: what is owed now
            turn.queued += catch_up_on_binding(turn.session, self.m, binding, result.identity, turn.now)

    def _cmd_officegroup(self, turn: _Turn, _args: str) -> None:
        """Sent in a group by office staff: the group becomes an office group chat (it gets the digest)."""
        if turn.incoming.private or turn.plan is None or turn.identity is None:
            self._error(turn, "group_only")
            return
        incoming = turn.incoming
        added = add_office_chat(
            turn.session,
            platform=incoming.platform,
            chat_id=incoming.chat_id,
            jurisdiction_id=turn.plan.jurisdiction_id,
            person_id=turn.identity.person_id,
            now=turn.now,
        )
        self._reply(turn, self.m.render("office_group_added", already=not added))

    def _cmd_start(self, turn: _Turn, args: str) -> None:
        self._cmd_help(turn, args)

    def _cmd_help(self, turn: _Turn, _args: str) -> None:
        self._reply(
            turn,
            self.m.render(
                "help",
                units=sorted({b.unit.name for b in turn.bindings}),
                reporter=bool(turn.reporter_units),
                office=turn.is_office,
            ),
        )

    def _cmd_whoami(self, turn: _Turn, _args: str) -> None:
        rows = [
            {"unit": b.unit.name, "role": self.m.label("role", b.role), "since": b.created_at} for b in turn.bindings
        ]
        self._reply(turn, self.m.render("whoami", bindings=rows))

    def _cmd_unbind(self, turn: _Turn, _args: str) -> None:
        assert turn.identity is not None
        revoked = unbind(turn.session, turn.identity, now=turn.now)
        self._clear_state(turn)
        self._reply(
            turn,
            self.m.render(
                "unbound",
                units=[
                    f"{b.unit.name}{self.m.label('sep', 'unit_role')}{self.m.label('role', b.role)}" for b in revoked
                ],
            ),
        )

    # --- liaison: tasks ------------------------------------------------------------------

    def _cmd_tasks(self, turn: _Turn, args: str) -> None:
        if args.strip() and turn.is_office and turn.plan is not None:
            try:  # the office asks about any unit, named as people type it
                unit = resolve_unit(turn.session, turn.plan, args)
            except OfficeRefusal as refusal:
                self._error(turn, refusal.code, refusal.detail, **refusal.extra)
                return
            self._show_tasks(turn, unit, page=1)
            return
        units = turn.reporter_units
        if not units:
            self._error(turn, "not_reporter")
            return
        for unit in units:
            self._show_tasks(turn, unit, page=1)

    def _show_tasks(self, turn: _Turn, unit: Unit, *, page: int, edit: bool = False) -> None:
        """One page of a unit's tasks; a unit with many has « » buttons (a page fits one screen)."""
        text, pages = self.render_tasks(turn.session, unit, turn.now, page=page)
        page = min(max(page, 1), pages)
        nav = []
        if page > 1:
            nav.append(Button(self.m.label("button", "prev"), f"tk|{unit.id}|{page - 1}"))
        if page < pages:
            nav.append(Button(self.m.label("button", "next"), f"tk|{unit.id}|{page + 1}"))
        self._reply(turn, text, buttons=[nav] if nav else None, edit=edit)

    def render_tasks(self, session: Session, unit: Unit, now: datetime, *, page: int = 1) -> tuple[str, int]:
        """A page of the unit's tasks, lead and responsible apart, each with its state; and the page count."""
        obligations = unit_obligations(session, unit.id)
        current: dict[int, Obligation] = {}
        for candidate in obligations:  # earliest due first
            chosen = current.get(candidate.task_id)
            if chosen is None or (chosen.state not in OPEN_STATES and candidate.state in OPEN_STATES):
                current[candidate.task_id] = candidate
        assignments = session.execute(
            select(Assignment, Task)
            .join(Task, Task.id == Assignment.task_id)
            .where(Assignment.unit_id == unit.id, Assignment.active.is_(True), Task.active.is_(True))
            .order_by(Task.annex.desc(), Task.number)
        ).all()
        groups: dict[str, list[dict[str, Any]]] = {"lead": [], "responsible": []}
        owed = 0
        for assignment, task in assignments:
            obligation = current.get(task.id)
            view = self._task_view(task)
            state = obligation.state if obligation else "none"
            late_days = 0
            if obligation is not None and state in OPEN_STATES:
                late_days = days_late(obligation.checkpoint.due_at, now)
            if state in OPEN_STATES:
                owed += 1
            view.update(
                state_label=self.m.label("state", state),
                checkpoint=obligation.checkpoint.title if obligation else None,
                due=obligation.checkpoint.due_at if obligation else None,
                late_days=late_days,
            )
            groups[assignment.role].append(view)
        pages = max(1, math.ceil(len(assignments) / TASKS_PER_PAGE))
        page = min(max(page, 1), pages)
        first, last = (page - 1) * TASKS_PER_PAGE, page * TASKS_PER_PAGE
        lead = len(groups["lead"])
        text = self.m.render(
            "tasks",
            unit=unit.name,
            now=now,
            groups=[
                {
                    "title": self.m.label("group", "lead"),
                    "tasks": groups["lead"][first:last],
                    "count": lead,
                },
                {
                    "title": self.m.label("group", "responsible"),
                    "tasks": groups["responsible"][max(0, first - lead) : max(0, last - lead)],
                    "count": len(groups["responsible"]),
                },
            ],
            total=len(assignments),
            owed=owed,
            page=page,
            pages=pages,
        )
        return text, pages

    # --- liaison: reporting ----------------------------------------------------------------

    def _state(self, turn: _Turn) -> ConversationState | None:
        if not turn.state_looked_up:
            incoming = turn.incoming
            turn.known_state = turn.session.scalar(
                _STATE, {"platform": incoming.platform, "chat_id": incoming.chat_id, "user_id": incoming.user_id}
            )
            turn.state_looked_up = True
        return turn.known_state

    def _set_state(self, turn: _Turn, name: str, data: dict[str, Any]) -> ConversationState:
        """Write the person's draft in this chat: its step, a new version (stale buttons), its data."""
        assert name in REPORT_STATES, name
        state = self._state(turn)
        # A file the new draft no longer holds (a /report started over) would be orphaned.
        kept = {f["staged_path"] for f in data.get("files", [])}
        for dropped in state.data.get("files", []) if state is not None and state.data else []:
            if dropped["staged_path"] not in kept:
                turn.discarded.append(Path(dropped["staged_path"]))
        version = (state.version or 0) + 1 if state is not None else 1
        values: dict[str, Any] = {"state": name, "version": version, "data": dict(data), "updated_at": turn.now}
        # Direct statements, not a unit-of-work flush (half of all one-line reports ask for figures next);
        # the loaded object is then told what its row holds.
        if state is None:
            incoming = turn.incoming
            keys = {"platform": incoming.platform, "chat_id": incoming.chat_id, "user_id": incoming.user_id}
            state_id = turn.session.execute(_INSERT_STATE, {**keys, **values}).scalar_one()
            state = ConversationState(id=state_id, **keys, **values)
            make_transient_to_detached(state)  # as if loaded: what it holds is what its row holds
            turn.session.add(state)
            turn.known_state = state
        else:
            turn.session.execute(_UPDATE_STATE, {"state_id": state.id, **values})
            for column, value in values.items():
                set_committed_value(state, column, value)
        return state

    def _clear_state(self, turn: _Turn) -> bool:
        state = self._state(turn)
        if state is None:
            return False
        for staged in state.data.get("files", []):
            turn.discarded.append(Path(staged["staged_path"]))
        turn.session.delete(state)
        turn.session.flush()
        turn.known_state = None
        return True

    def _cmd_cancel(self, turn: _Turn, _args: str) -> None:
        if self._clear_state(turn):
            self._reply(turn, self.m.render("cancelled"))
        else:
            self._reply(turn, self.m.render("nothing_to_cancel"))

    def _unit_for_task(self, turn: _Turn, task: Task) -> Unit | None:
        """Which of the person's units is assigned this task (None: not theirs)."""
        if task.id not in turn.task_units:
            units = {u.id: u for u in turn.reporter_units}
            if len(units) == 1:  # the usual case: no IN list to expand
                unit_id = turn.session.scalar(_ASSIGNED_TO_UNIT, {"task_id": task.id, "unit_id": next(iter(units))})
            else:
                unit_id = (
                    turn.session.scalar(_ASSIGNED_UNIT, {"task_id": task.id, "unit_ids": list(units)})
                    if units
                    else None
                )
            turn.task_units[task.id] = units.get(unit_id) if unit_id is not None else None
        return turn.task_units[task.id]

    def _resolve_task(self, turn: _Turn, ref_text: str) -> Task | None:
        """A task the person may report on, or None after replying why not."""
        ref = parse_task_ref(ref_text)
        own = {u.id: u for u in turn.reporter_units}
        task: Task | None = None
        if ref and turn.plan and len(own) == 1:  # the usual case: whether the unit has it, asked with the task
            unit = next(iter(own.values()))
            task, assigned = find_task_for_unit(turn.session, turn.plan.id, ref[0].value, ref[1], unit.id)
            if task is not None:
                turn.task_units[task.id] = unit if assigned else None
        elif ref and turn.plan:
            task = find_task(turn.session, turn.plan.id, ref[0].value, ref[1])
        if task is None:
            self._error(turn, "unknown_task", ref_text)
            return None
        if self._unit_for_task(turn, task) is None:
            units = self.m.label("sep", "list").join(u.name for u in turn.reporter_units)
            self._error(turn, "not_your_task", task_label(task.annex, task.number, self.m.language), units=units)
            return None
        return task

    def _cmd_report(self, turn: _Turn, args: str) -> None:
        if not turn.reporter_units:
            self._error(turn, "not_reporter")
            return
        if not args:
            self._show_task_menu(turn, data={"via": "menu"}, page=1)
            return
        head, _, rest = args.partition(" ")
        task = self._resolve_task(turn, head)
        if task is None:
            return
        status, note = split_status(rest)
        data = {"via": "line", "task_id": task.id, "note": note, "status": status.value if status else None}
        data["origin_message_id"] = turn.incoming.message_id
        self._stage_files(turn, data)  # a document sent with "/report …" as its caption
        self._advance(turn, data)

    def _show_task_menu(
        self, turn: _Turn, *, data: dict[str, Any], page: int, edit: bool = False, prompt: str = ""
    ) -> None:
        candidates = data.get("task_ids")
        if candidates is None:
            task_ids = []
            for unit in turn.reporter_units:
                task_ids += [
                    task_id
                    for (task_id,) in turn.session.execute(
                        select(Assignment.task_id)
                        .join(Task, Task.id == Assignment.task_id)
                        .where(Assignment.unit_id == unit.id, Assignment.active.is_(True), Task.active.is_(True))
                        .order_by(Task.annex.desc(), Task.number)
                    )
                ]
            candidates = list(dict.fromkeys(task_ids))
        if not candidates:
            self._reply(
                turn,
                self.m.render(
                    "tasks",
                    unit=self.m.label("sep", "list").join(u.name for u in turn.reporter_units),
                    now=turn.now,
                    groups=[],
                    total=0,
                    owed=0,
                ),
            )
            return
        pages = max(1, math.ceil(len(candidates) / PAGE_SIZE))
        page = min(max(page, 1), pages)
        data = {**data, "task_ids": candidates, "page": page}
        state = self._set_state(turn, "report.task", data)
        shown = candidates[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        tasks = {t.id: t for t in turn.session.scalars(select(Task).where(Task.id.in_(shown)))}
        v = state.version
        buttons = [
            [Button(f"{self._task_view(tasks[i])['label']} {self._task_view(tasks[i])['title']}"[:40], f"{v}|t|{i}")]
            for i in shown
        ]
        nav = []
        if page > 1:
            nav.append(Button(self.m.label("button", "prev"), f"{v}|p|{page - 1}"))
        if page < pages:
            nav.append(Button(self.m.label("button", "next"), f"{v}|p|{page + 1}"))
        nav.append(Button(self.m.label("button", "cancel"), f"{v}|x|"))
        buttons.append(nav)
        self._reply(turn, self.m.render("pick_task", page=page, pages=pages, prompt=prompt), buttons=buttons, edit=edit)

    def _advance(self, turn: _Turn, data: dict[str, Any], *, edit: bool = False) -> None:
        """Ask for whatever the draft report still lacks; record it when nothing is missing."""
        task = turn.session.get(Task, data["task_id"])
        assert task is not None
        unit = self._unit_for_task(turn, task)
        if unit is None:
            self._clear_state(turn)
            self._error(turn, "not_your_task", task_label(task.annex, task.number, self.m.language), units="")
            return
        view = self._task_view(task)
        rounds = self._open_rounds(turn, task, unit)
        if "checkpoint_id" not in data:
            # The round is fixed when the report starts, so the round named is the round recorded;
            # a file sent with it is the document a document round asks for, if one is owed.
            documents = [o for o in rounds if o.checkpoint.satisfied_by == "document"]
            data["checkpoint_id"] = self._default_round(turn, documents if data.get("files") and documents else rounds)
        if not data.get("status"):
            state = self._set_state(turn, "report.status", data)
            v = state.version
            statuses = self.m.labels("status")
            buttons = [[Button(statuses[code.value], f"{v}|s|{code.value}")] for code in StatusCode]
            buttons += self._round_buttons(rounds, data, v)
            buttons.append([Button(self.m.label("button", "cancel"), f"{v}|x|")])
            checkpoint = self._target_checkpoint(turn, task, unit, data)
            self._reply(
                turn,
                self.m.render(
                    "pick_status",
                    task=view,
                    checkpoint=checkpoint.title if checkpoint else None,
                    due=checkpoint.due_at if checkpoint else None,
                    note=(data.get("note") or "").strip(),
                    others=[o.checkpoint.title for o in rounds if o.checkpoint_id != data.get("checkpoint_id")],
                ),
                buttons=buttons,
                edit=edit,
            )
            return
        files = data.get("files", [])
        note = (data.get("note") or "").strip()
        limit = self.settings.limits.note_max_chars
        if len(note) > limit:
            data["note"] = ""
            self._set_state(turn, "report.note", data)
            self._error(turn, "note_too_long", str(len(note)), limit=limit)
            return
        if not note and not files:
            self._set_state(turn, "report.note", data)
            chosen = self._target_checkpoint(turn, task, unit, data)
            needs_file = chosen is not None and chosen.satisfied_by == "document"
            self._reply(
                turn,
                self.m.render(
                    "ask_note",
                    task=view,
                    status=self.m.label("status", data["status"]),
                    limit=limit,
                    need_file=needs_file,
                ),
            )
            return
        if not files and not data.get("checkpoint_id"):
            # Until the refined plan is in, a report on a lead task is that plan: ask for the file.
            pending = pending_document(turn.session, task.id, unit.id)
            if pending is not None:
                data["checkpoint_id"] = pending.checkpoint_id
        checkpoint = self._target_checkpoint(turn, task, unit, data)
        if checkpoint is not None and checkpoint.satisfied_by == "document" and not files:
            state = self._set_state(turn, "report.file", data)
            self._reply(
                turn,
                self.m.render(
                    "ask_file",
                    task=view,
                    checkpoint=checkpoint.title,
                    max_mb=self.settings.uploads.max_bytes // (1 << 20),
                ),
                buttons=self._round_buttons(rounds, data, state.version),
            )
            return
        if data.get("via") == "menu" and not data.get("confirmed"):
            state = self._set_state(turn, "report.confirm", data)
            v = state.version
            buttons = [
                [
                    Button(self.m.label("button", "confirm"), f"{v}|ok|"),
                    Button(self.m.label("button", "cancel"), f"{v}|x|"),
                ]
            ]
            self._reply(
                turn,
                self.m.render(
                    "confirm",
                    task=view,
                    status=self.m.label("status", data["status"]),
                    note=note,
                    files=[f["file_name"] for f in files],
                    checkpoint=checkpoint.title if checkpoint else None,
                    due=checkpoint.due_at if checkpoint else None,
                ),
                buttons=buttons,
            )
            return
        self._record(turn, task, unit, data)

    @staticmethod
    def _open_rounds(turn: _Turn, task: Task, unit: Unit) -> list[Obligation]:
        """The rounds the unit owes for the task now: those past their deadline and the next one due."""
        open_ = [o for o in open_obligations(turn.session, task.id, unit.id) if o.state in ("owed", "returned")]
        past = [o for o in open_ if o.checkpoint.due_at <= turn.now]
        upcoming = [o for o in open_ if o.checkpoint.due_at > turn.now]
        return past + upcoming[:1]

    @staticmethod
    def _default_round(turn: _Turn, rounds: list[Obligation]) -> int | None:
        """Of the rounds owed, the one closest to its deadline (None: nothing owed, the report is an update)."""
        if not rounds:
            return None
        return min(rounds, key=lambda o: (abs(o.checkpoint.due_at - turn.now), o.checkpoint.due_at)).checkpoint_id

    def _owes_round(self, turn: _Turn, data: dict[str, Any], checkpoint_id: str) -> bool:
        task = turn.session.get(Task, data.get("task_id") or 0)
        unit = self._unit_for_task(turn, task) if task is not None else None
        if task is None or unit is None or not checkpoint_id.isdigit():
            return False
        return any(o.checkpoint_id == int(checkpoint_id) for o in self._open_rounds(turn, task, unit))

    def _round_buttons(self, rounds: list[Obligation], data: dict[str, Any], version: int) -> list[list[Button]]:
        """When the unit owes several rounds for the task: one button per other round, to report to it instead."""
        if len(rounds) < 2:
            return []
        word = self.m.label("button", "switch_round")
        return [
            [
                Button(
                    f"{word}{o.checkpoint.title}({self.m.month_day(o.checkpoint.due_at)})"[:40],
                    f"{version}|r|{o.checkpoint_id}",
                )
            ]
            for o in rounds
            if o.checkpoint_id != data.get("checkpoint_id")
        ]

    def _target_checkpoint(self, turn: _Turn, task: Task, unit: Unit, data: dict[str, Any]) -> Checkpoint | None:
        has_file = bool(data.get("files"))
        obligation = target_obligation(
            turn.session, task.id, unit.id, has_file=has_file, checkpoint_id=data.get("checkpoint_id")
        )
        if obligation is None and not has_file:
            pending = pending_document(turn.session, task.id, unit.id)
            if pending is not None:
                return pending.checkpoint
        return obligation.checkpoint if obligation else None

    def _record(self, turn: _Turn, task: Task, unit: Unit, data: dict[str, Any]) -> None:
        assert turn.identity is not None
        files = [StagedFile(**{**f, "staged_path": Path(f["staged_path"])}) for f in data.get("files", [])]
        recorded = record_report(
            turn.session,
            task=task,
            unit=unit,
            person_id=turn.identity.person_id,
            status=StatusCode(data["status"]),
            note=(data.get("note") or "").strip(),
            files=files,
            platform=turn.incoming.platform,
            platform_message_id=data.get("origin_message_id") or turn.incoming.message_id,
            via=data.get("via", "line"),
            now=turn.now,
            uploads_dir=self.settings.path(self.settings.uploads.dir),
            checkpoint_id=data.get("checkpoint_id"),
        )
        state = self._state(turn)
        if state is not None:
            turn.session.delete(state)
            turn.session.flush()  # before a follow-up question sets this person's next state below
            turn.known_state = None
        # Figures belong to progress reports; a refined plan's upload is not asked for them.
        is_document = recorded.checkpoint is not None and recorded.checkpoint.satisfied_by == "document"
        targets = {} if is_document else task_target_values(turn.session, task.id)
        figures = named_figures(recorded.report.note, targets)
        record_values(turn.session, recorded.report, figures.values, reported_at=turn.now)
        missing = [target_id for target_id in targets if target_id not in figures.values]
        if missing:
            self._set_state(turn, "report.values", {"report_id": recorded.report.id, "target_ids": missing})
        # A lead unit that has just sent its refined plan is asked for the plan's milestones.
        ask_milestones = is_document and recorded.obligation is not None and recorded.obligation.role == "lead"
        if ask_milestones:
            self._set_state(turn, "report.milestones", {"task_id": task.id, "unit_id": unit.id})
        turn.files_used = True
        turn.placements += recorded.placements
        checkpoint = recorded.checkpoint
        label = self.m.render("recorded_label", status=self.m.label("status", recorded.report.status))
        receipt_replaces = turn.incoming.button_message_id if turn.incoming.callback else None
        for pressed in data.get("menus", []):
            if pressed != receipt_replaces:
                # the reminder and menus pressed on the way show the answer, and no live buttons
                self._reply(turn, label, label=label, close=pressed)
        self._reply(
            turn,
            edit=bool(turn.incoming.callback),  # a button press: the card or menu becomes the receipt
            label=label,
            text=self.m.render(
                "recorded",
                at=turn.now,
                task=self._task_view(task),
                unit=unit.name,
                status=self.m.label("status", recorded.report.status),
                note=recorded.report.note,
                files=[a.file_name for a in recorded.attachments],
                checkpoint=checkpoint.title if checkpoint else None,
                due=checkpoint.due_at if checkpoint else None,
                on_time=recorded.report.on_time,
                report_id=recorded.report.id,
                figures=self._figure_lines(targets, figures.values, turn),
                ask_figures=[self._target_line(targets[target_id]) for target_id in missing],
                figure_problems=figures.problems,
                ask_milestones=ask_milestones,
            ),
        )

    def _continue_milestones(self, turn: _Turn, state: ConversationState) -> bool:
        """The milestones of the refined plan just sent; False when the text is not about them."""
        text = turn.incoming.text.strip()
        if text in SKIP_WORDS:
            self._clear_state(turn)
            self._reply(turn, self.m.render("milestones_saved", milestones=[], skipped=True, problem=""))
            return True
        if not re.search(r"\d|月|季度|年底|年内|半年", text):
            self._clear_state(turn)
            return False
        task = turn.session.get(Task, state.data["task_id"])
        unit = turn.session.get(Unit, state.data["unit_id"])
        if task is None or unit is None or turn.plan is None:
            self._clear_state(turn)
            return False
        try:
            drafts = parse_milestones(text, turn.plan.year)
        except MilestoneRefused as exc:
            self._reply(turn, self.m.render("milestones_saved", milestones=[], skipped=False, problem=str(exc)))
            return True
        saved = add_milestones(
            turn.session,
            self.settings,
            turn.plan,
            task,
            unit,
            drafts,
            now=turn.now,
            source="chat",
            actor=self._actor(turn),
        )
        self._clear_state(turn)
        self._reply(
            turn,
            self.m.render(
                "milestones_saved",
                task=self._task_view(task),
                milestones=[
                    {"due_on": m.due_on, "what": m.what, "supervised": m.checkpoint_id is not None} for m in saved
                ],
                skipped=False,
                problem="",
            ),
        )
        return True

    @staticmethod
    def _target_line(target: ParsedTarget) -> dict[str, Any]:
        return {"metric": target.metric, "value": format_number(target.value), "unit": target.unit}

    def _figure_lines(
        self, targets: dict[int, ParsedTarget], values: dict[int, float], turn: _Turn
    ) -> list[dict[str, Any]]:
        """Each figure given, with its share done and pace over the plan's year (milestones are for the 通报)."""
        today = turn.now.astimezone(self.settings.tz).date()
        year = turn.plan.year if turn.plan is not None else today.year
        lines = []
        for target_id, value in values.items():
            target = targets[target_id]
            pace = pace_of(
                target.kind,
                target.value,
                value,
                today,
                year=year,
                thresholds=self.settings.report.pace.thresholds(),
            )
            lines.append(
                self._target_line(target)
                | {
                    "reported": format_number(value),
                    "done": round(pace.done * 100),
                    "expected": round(pace.expected * 100),
                    "pace": self.m.label("pace", pace.pace.name.lower()),
                }
            )
        return lines

    def _continue_values(self, turn: _Turn, state: ConversationState) -> bool:
        """Figures for the report just recorded; False when the text is not about them (handled as usual)."""
        text = turn.incoming.text.strip()
        if text in SKIP_WORDS:
            self._clear_state(turn)
            self._reply(turn, self.m.render("figures_recorded", figures=[], skipped=True, problems=[], ask=[]))
            return True
        if not re.search(r"\d", text):
            self._clear_state(turn)
            return False
        report = turn.session.get(StatusReport, state.data["report_id"])
        targets = task_target_values(turn.session, report.task_id) if report is not None else {}
        asked = {target_id: targets[target_id] for target_id in state.data["target_ids"] if target_id in targets}
        figures = answered_figures(text, asked)
        if report is None or figures.problems or not figures.values:
            self._reply(
                turn,
                self.m.render(
                    "figures_recorded",
                    figures=[],
                    skipped=False,
                    problems=figures.problems,
                    ask=[self._target_line(target) for target in asked.values()],
                ),
            )
            return True
        record_values(turn.session, report, figures.values, reported_at=turn.now)
        self._clear_state(turn)
        self._reply(
            turn,
            self.m.render(
                "figures_recorded",
                figures=self._figure_lines(asked, figures.values, turn),
                skipped=False,
                problems=[],
                ask=[],
            ),
        )
        return True

    def _stage_files(self, turn: _Turn, data: dict[str, Any]) -> None:
        for file in turn.incoming.files:
            if file.staged is not None:
                data.setdefault("files", []).append(
                    {
                        "file_name": file.staged.file_name,
                        "size": file.staged.size,
                        "mime_type": file.staged.mime_type,
                        "file_id": file.staged.file_id,
                        "file_unique_id": file.staged.file_unique_id,
                        "staged_path": str(file.staged.staged_path),
                        "sha256": file.staged.sha256,
                        "platform": file.staged.platform,
                    }
                )
                turn.files_used = True

    def _continue_report(self, turn: _Turn, state: ConversationState) -> None:
        data = dict(state.data)
        self._stage_files(turn, data)
        text = turn.incoming.text.strip()
        if state.state == "report.task":
            if text in ("下一页", "上一页", "next", "prev"):
                step = 1 if text in ("下一页", "next") else -1
                self._show_task_menu(turn, data=data, page=data.get("page", 1) + step)
                return
            if text:
                task = self._resolve_task(turn, text.split()[0])
                if task is not None:
                    data["task_id"] = task.id
                    status, note = split_status(text.partition(" ")[2])
                    data.update(status=status.value if status else None, note=note or data.get("note"))
                    self._advance(turn, data)
            else:
                self._show_task_menu(turn, data=data, page=data.get("page", 1))
            return
        if state.state == "report.status":
            if text:
                status, note = split_status(text)
                if status is None:
                    # Not a status word: what was typed is the note, kept for when a status is picked.
                    data["note"] = "\n".join(part for part in (data.get("note"), text) if part)
                    self._error(turn, "no_status", text.split()[0])
                    self._advance(turn, data)
                    return
                data["status"] = status.value
                if note:
                    data["note"] = note
            self._advance(turn, data)
            return
        if state.state == "report.confirm" and text in ("确认", "确认提交", "提交", "confirm", "ok"):
            data["confirmed"] = True  # typed where the platform shows no buttons
            self._advance(turn, data)
            return
        if state.state in ("report.note", "report.confirm", "report.file"):
            if text:
                data["note"] = text
            self._advance(turn, data)
            return

    def _button(self, turn: _Turn, raw: str) -> None:
        parts = raw.split("|", 2)
        if parts[0] == "rt" and len(parts) == 3:
            self._start_from_reminder_button(turn, parts[1], parts[2])
            return
        if parts[0] == "tk" and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            unit = next((u for u in turn.reporter_units if u.id == int(parts[1])), None)
            if unit is None and turn.is_office and turn.plan is not None:  # the office pages any unit's list
                unit = turn.session.get(Unit, int(parts[1]))
                unit = unit if unit is not None and unit.jurisdiction_id == turn.plan.jurisdiction_id else None
            if unit is not None:
                self._show_tasks(turn, unit, page=int(parts[2]), edit=True)
                return
        state = self._state(turn)
        if len(parts) != 3 or state is None or parts[0] != str(state.version):
            turn.toast = self.m.render("error", code="stale_button")
            self._error(turn, "stale_button")
            return
        _, action, arg = parts
        data = dict(state.data)
        _remember_menu(turn, data)
        if action == "x":
            self._clear_state(turn)
            self._reply(turn, self.m.render("cancelled"), edit=True, label=self.m.label("button", "cancelled"))
        elif action == "p" and state.state == "report.task":
            self._show_task_menu(turn, data=data, page=int(arg or 1), edit=True)
        elif action == "t" and state.state == "report.task" and arg.isdigit() and int(arg) in data.get("task_ids", []):
            data["task_id"] = int(arg)
            self._advance(turn, data, edit=True)
        elif action == "s" and state.state == "report.status" and parse_status(arg) is not None:
            data["status"] = arg
            self._advance(turn, data, edit=True)
        elif action == "ok" and state.state == "report.confirm":
            data["confirmed"] = True
            self._advance(turn, data)
        elif (
            action == "r"
            and state.state in ("report.status", "report.file", "report.confirm")
            and self._owes_round(turn, data, arg)
        ):
            data["checkpoint_id"] = int(arg)  # the liaison picked another round this unit owes
            self._advance(turn, data, edit=True)
        else:
            turn.toast = self.m.render("error", code="stale_button")
            self._error(turn, "stale_button")

    def _start_from_reminder_button(self, turn: _Turn, task_id: str, checkpoint_id: str) -> None:
        task = turn.session.get(Task, int(task_id)) if task_id.isdigit() else None
        if task is None or self._unit_for_task(turn, task) is None:
            self._error(turn, "stale_button")
            return
        data: dict[str, Any] = {"via": "reply", "task_id": task.id}
        _remember_menu(turn, data)
        if checkpoint_id.isdigit():
            data["checkpoint_id"] = int(checkpoint_id)
        self._advance(turn, data)

    def _open_reminded_tasks(self, turn: _Turn) -> list[tuple[Task, int | None]]:
        """The tasks this chat was reminded or urged about that the person's units still owe, newest first.

        Each comes with the round it was reminded for (None when the message named several).
        """
        incoming = turn.incoming
        unit_ids = {u.id for u in turn.reporter_units}
        rows = turn.session.execute(
            select(OutboxMessage.task_ids, OutboxMessage.checkpoint_id, OutboxMessage.unit_id)
            .where(
                OutboxMessage.platform == incoming.platform,
                OutboxMessage.chat_id == incoming.chat_id,
                OutboxMessage.kind.in_(REMINDER_KINDS),
                OutboxMessage.task_ids.is_not(None),
            )
            .order_by(OutboxMessage.id.desc())
            .limit(REMINDERS_LOOKED_AT)
        ).all()
        reminded: dict[tuple[int, int], int | None] = {}
        for task_ids, checkpoint_id, unit_id in rows:
            if unit_id in unit_ids:
                for task_id in task_ids or []:
                    reminded.setdefault((unit_id, task_id), checkpoint_id)
        if not reminded:
            return []
        open_pairs = set(
            turn.session.execute(
                select(Obligation.unit_id, Obligation.task_id).where(
                    Obligation.unit_id.in_({u for u, _ in reminded}),
                    Obligation.task_id.in_({t for _, t in reminded}),
                    Obligation.active.is_(True),
                    Obligation.state.in_(OPEN_STATES),
                )
            ).all()
        )
        wanted = [(task_id, cp) for (unit_id, task_id), cp in reminded.items() if (unit_id, task_id) in open_pairs]
        tasks = {t.id: t for t in turn.session.scalars(select(Task).where(Task.id.in_([t for t, _ in wanted])))}
        chosen: dict[int, tuple[Task, int | None]] = {}
        for task_id, checkpoint_id in wanted:
            if task_id in tasks and tasks[task_id].active:
                chosen.setdefault(task_id, (tasks[task_id], checkpoint_id))
        return list(chosen.values())

    def _answer_to_open_reminder(self, turn: _Turn) -> bool:
        """A status typed without a reply (WeCom has no replies): it answers the person's open reminder.

        With exactly one task reminded and still owed, it applies to that task; with several,
        the person picks the task from buttons; a task number first ("45 按计划推进 …") names it.
        """
        text = turn.incoming.text.strip()
        head, _, rest = text.partition(" ")
        ref = parse_task_ref(head) if head else None
        status, note = split_status(rest if ref is not None else text)
        if status is None:
            return False
        open_tasks = self._open_reminded_tasks(turn)
        if not open_tasks:
            return False
        data: dict[str, Any] = {
            "via": "reply",
            "origin_message_id": turn.incoming.message_id,
            "status": status.value,
            "note": note,
        }
        self._stage_files(turn, data)
        named = [(t, cp) for t, cp in open_tasks if ref is not None and (t.annex, t.number) == (ref[0].value, ref[1])]
        if ref is not None and not named:
            return False  # a task not reminded: the usual answer explains
        if named or len(open_tasks) == 1:
            task, checkpoint_id = (named or open_tasks)[0]
            data["task_id"] = task.id
            if checkpoint_id is not None:
                data["checkpoint_id"] = checkpoint_id
            self._advance(turn, data)
            return True
        data["task_ids"] = [t.id for t, _ in sorted(open_tasks, key=lambda p: (p[0].annex != "county", p[0].number))]
        self._show_task_menu(turn, data=data, page=1, prompt=self.m.render("pick_which"))
        return True

    def _reply_to_reminder(self, turn: _Turn) -> bool:
        """A reply to a reminder or urge: record it against that message's tasks."""
        incoming = turn.incoming
        assert incoming.reply_to is not None
        original = message_about(turn.session, incoming.platform, incoming.chat_id, incoming.reply_to)
        if original is None or not original.task_ids or original.unit_id is None:
            return False
        unit = turn.session.get(Unit, original.unit_id)
        assert unit is not None
        if unit.id not in {u.id for u in turn.reporter_units}:
            self._error(turn, "not_your_unit", unit.name)
            return True
        tasks = list(turn.session.scalars(select(Task).where(Task.id.in_(original.task_ids), Task.active.is_(True))))
        by_ref = {(t.annex, t.number): t for t in tasks}
        text = incoming.text.strip()
        head, _, rest = text.partition(" ")
        ref = parse_task_ref(head) if head else None
        data: dict[str, Any] = {"via": "reply", "origin_message_id": incoming.message_id}
        if original.checkpoint_id:
            data["checkpoint_id"] = original.checkpoint_id
        task: Task | None = None
        if ref is not None and (ref[0].value, ref[1]) in by_ref:
            task = by_ref[(ref[0].value, ref[1])]
            text = rest
        elif len(tasks) == 1:
            task = tasks[0]
        status, note = split_status(text)
        data.update(status=status.value if status else None, note=note)
        self._stage_files(turn, data)
        if task is None:
            data["task_ids"] = [t.id for t in sorted(tasks, key=lambda t: (t.annex != "county", t.number))]
            prompt = self.m.render("pick_which")
            self._show_task_menu(turn, data=data, page=1, prompt=prompt)
            return True
        data["task_id"] = task.id
        self._advance(turn, data)
        return True

    # --- office -------------------------------------------------------------------------------

    def _office_unit_ids(self, turn: _Turn) -> list[int]:
        assert turn.plan is not None
        return list(turn.session.scalars(select(Unit.id).where(Unit.jurisdiction_id == turn.plan.jurisdiction_id)))

    def _cmd_overdue(self, turn: _Turn, args: str) -> None:
        """One screen (totals, change, the worst units) and the full list as a file; or one unit or task."""
        assert turn.plan is not None
        scope, scope_name, unit_id, task_id = "all", "", None, None
        if args:
            ref = parse_task_ref(args.split()[0])
            task = find_task(turn.session, turn.plan.id, ref[0].value, ref[1]) if ref else None
            if task is not None:
                scope, task_id = "task", task.id
                scope_name = task_label(task.annex, task.number, self.m.language)
            else:
                try:
                    unit = resolve_unit(turn.session, turn.plan, args)
                except OfficeRefusal as refusal:
                    self._error(turn, refusal.code, refusal.detail, **refusal.extra)
                    return
                scope, scope_name, unit_id = "unit", unit.name, unit.id
        view = build_view(turn.session, self.m, turn.plan, turn.now, unit_id=unit_id, task_id=task_id)
        if scope == "unit" and view.units:
            listed: list[Any] = view.units[0].items
        else:
            listed = [(block, item) for block in view.units for item in block.items]
        shown = listed[:SCREEN_ITEMS]
        document = None
        if view.units and (scope == "all" or len(listed) > len(shown)):
            folder = self.settings.path(self.settings.service.data_dir) / "exports"
            path = overdue_file(view, folder, self.m, scope=scope_name)
            document = {"path": str(path), "file_name": path.name}
        text = self.m.render(
            "overdue",
            view=view,
            scope=scope,
            scope_name=scope_name,
            shown=shown,
            hidden=len(listed) - len(shown),
            worst=[(b, self.m.label("role", b.rung) if b.rung else None) for b in view.units[:SCREEN_UNITS]],
            more=max(0, len(view.units) - SCREEN_UNITS),
            file_name=document["file_name"] if document else None,
            link=dashboard_link(self.settings),
        )
        self._reply(turn, text, document=document)

    def _cmd_urge(self, turn: _Turn, args: str) -> None:
        assert turn.plan is not None
        try:
            result = urge(
                turn.session,
                self.m,
                turn.plan,
                args,
                now=turn.now,
                actor=self._actor(turn),
                key=f"{turn.incoming.platform}:{turn.incoming.update_key}",
            )
        except OfficeRefusal as refusal:
            self._error(turn, refusal.code, refusal.detail, **refusal.extra)
            return
        self._reply(
            turn, self.m.render("urge_done", sent=result.sent, unreachable=result.unreachable, nothing=result.nothing)
        )

    @staticmethod
    def _actor(turn: _Turn) -> str:
        return f"{turn.incoming.platform}:{turn.incoming.user_id}"

    def _cmd_accept(self, turn: _Turn, args: str) -> None:
        self._review(turn, args, "accepted", self.m.label("usage", "accept"))

    def _cmd_return(self, turn: _Turn, args: str) -> None:
        self._review(turn, args, "returned", self.m.label("usage", "return"))

    def _review(self, turn: _Turn, args: str, decision: str, usage: str) -> None:
        assert turn.identity is not None and turn.plan is not None
        parts = args.split(maxsplit=2)
        if len(parts) < 2:
            self._error(turn, "usage", usage)
            return
        reason = parts[2] if len(parts) > 2 else ""
        confirmed, reason = _confirmation(reason)
        try:
            result = decide(
                turn.session,
                self.m,
                turn.plan,
                parts[0],
                parts[1],
                decision,
                reason,
                now=turn.now,
                actor=self._actor(turn),
                person_id=turn.identity.person_id,
                key=f"{turn.incoming.platform}:{turn.incoming.update_key}",
                confirmed=confirmed,
            )
        except OfficeRefusal as refusal:
            self._error(turn, refusal.code, refusal.detail if refusal.code != "usage" else usage, **refusal.extra)
            return
        self._reply(
            turn,
            self.m.render(
                "review_done",
                decision=result.decision,
                task=self._task_view(result.task),
                unit=result.unit.name,
                checkpoint=result.checkpoint_title,
                reason=result.reason,
                notified=result.notified,
            ),
        )

    def _cmd_who(self, turn: _Turn, _args: str) -> None:
        assert turn.plan is not None
        self._reply(turn, self.m.render("who", **who_view(turn.session, self.settings, self.m, turn.plan)))

    def _cmd_checkpoints(self, turn: _Turn, _args: str) -> None:
        assert turn.plan is not None
        rows = []
        for checkpoint in live_checkpoints(turn.session, turn.plan.id):
            counts = checkpoint_state_counts(turn.session, checkpoint.id)
            rows.append(
                {
                    "key": checkpoint.key,
                    "title": checkpoint.title,
                    "due": checkpoint.due_at,
                    "satisfied": self.m.label("satisfied", checkpoint.satisfied_by),
                    "answered": counts.get("answered", 0) + counts.get("accepted", 0),
                    "total": sum(counts.values()),
                }
            )
        self._reply(turn, self.m.render("checkpoints", checkpoints=rows))

    def _cmd_round(self, turn: _Turn, args: str) -> None:
        usage = self.m.label("usage", "round")
        assert turn.plan is not None and turn.identity is not None
        parts = args.split(maxsplit=3)
        if len(parts) < 4:
            self._error(turn, "usage", usage)
            return
        key, due_text, scope_text, title = parts
        try:
            due_at = parse_local_datetime(due_text, self.settings)
            scope = parse_task_scope(scope_text)
            checkpoint = add_adhoc_checkpoint(
                turn.session,
                turn.plan,
                key=key,
                title=title,
                due_at=due_at,
                now=turn.now,
                tasks=scope,
                actor=f"{turn.incoming.platform}:{turn.incoming.user_id}",
            )
        except CheckpointError as exc:
            self._error(turn, "checkpoint", exc.explain(self.m))
            return
        obligations = turn.session.execute(
            select(func.count(), func.count(func.distinct(Obligation.unit_id))).where(
                Obligation.checkpoint_id == checkpoint.id, Obligation.active.is_(True)
            )
        ).one()
        self._reply(
            turn,
            self.m.render(
                "round_added",
                title=checkpoint.title,
                key=checkpoint.key,
                due=checkpoint.due_at,
                units=obligations[1],
                obligations=obligations[0],
            ),
        )

    def _cmd_digest(self, turn: _Turn, args: str) -> None:
        self._office_request(turn, "digest", args)

    def _cmd_export(self, turn: _Turn, args: str) -> None:
        self._office_request(turn, "export", args)

    def _office_request(self, turn: _Turn, what: str, args: str) -> None:
        assert turn.identity is not None and turn.plan is not None
        if self.on_office_request is None:
            self._error(turn, "unknown_command", f"/{what}")
            return
        answer = self.on_office_request(turn.session, what, turn.plan, turn.incoming, args.split(), turn.now)
        if isinstance(answer, str):  # a refusal or usage line
            self._error(turn, "checkpoint", answer)
        else:
            turn.queued.extend(answer)


_CONFIRM_WORDS = ("确认退回", "确认", "confirm")


def _confirmation(reason: str) -> tuple[bool, str]:
    """ "确认退回 附件不全" → (True, "附件不全"): the office confirms undoing an acceptance."""
    for word in _CONFIRM_WORDS:
        if reason.lower().startswith(word):
            return True, re.sub(r"^[\s:,;:,;]+", "", reason[len(word) :])
    return False, reason


def _remember_menu(turn: _Turn, data: dict[str, Any]) -> None:
    """Note the message whose button was pressed, so the receipt can take the buttons off it."""
    pressed = turn.incoming.button_message_id
    if pressed and pressed not in data.get("menus", []):
        data["menus"] = [*data.get("menus", []), pressed]


def parse_local_datetime(text: str, settings: Settings, *, default_hour: int = 18, default_minute: int = 0) -> datetime:
    """``2024-07-10`` (by default the end of the working day, 18:00) or ``2024-07-10T17:30``, local time."""
    cleaned = text.strip().replace("/", "-")
    match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2}))?", cleaned)
    if not match:
        raise CheckpointError("bad_date", text)
    year, month, day = (int(g) for g in match.groups()[:3])
    hour = int(match.group(4)) if match.group(4) else default_hour
    minute = int(match.group(5)) if match.group(5) else (0 if match.group(4) else default_minute)
    try:
        return datetime(year, month, day, hour, minute, tzinfo=settings.tz)
    except ValueError as exc:
        raise CheckpointError("bad_date", text) from exc


def identities_for_person(session: Session, person_id: int) -> list[Identity]:
    return person_identities(session, person_id)


def office_identities(session: Session, plan: Plan) -> list[Identity]:
    return [identity for _, identity in identities_with_role(session, plan.jurisdiction_id, PersonRole.OFFICE.value)]
