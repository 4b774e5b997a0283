"""Recording what units answer, and the office's review of it.

A status report is appended, never overwritten: who, when, status, note,
attachments, the platform message id, and whether it was on time for the
checkpoint it answers.  Which checkpoint a report answers: the one it replied
to, else the earliest still-open obligation of that unit for that task (a
document checkpoint only counts a report that carries a file), else the latest
answered-but-unreviewed one (an update).  A report when nothing is owed is
kept as extra progress.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import cast

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session, contains_eager, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from core.tasks import task_label
from storage.models import Assignment, Attachment, AuditLog, Checkpoint, Obligation, Review, StatusReport, Task, Unit


class StatusCode(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BEHIND = "behind"
    DONE = "done"
    NEEDS_COORDINATION = "needs_coordination"


# What people type for each status, in either language.
_STATUS_WORDS: dict[StatusCode, tuple[str, ...]] = {
    StatusCode.ON_TRACK: (
        "按计划推进",
        "按计划",
        "正常推进",
        "正常",
        "推进中",
        "进展顺利",
        "顺利推进",
        "稳步推进",
        "有序推进",
        "进展正常",
        "正在推进",
        "on_track",
        "ontrack",
        "on-track",
    ),
    StatusCode.AT_RISK: ("存在风险", "有风险", "风险", "at_risk", "atrisk", "at-risk", "risk"),
    StatusCode.BEHIND: (
        "进度滞后",
        "滞后",
        "落后",
        "进度缓慢",
        "推进缓慢",
        "延期",
        "延误",
        "behind",
        "late",
    ),
    StatusCode.DONE: ("已完成", "完成", "已办结", "办结", "全部完成", "已经完成", "done", "completed"),
    StatusCode.NEEDS_COORDINATION: (
        "需协调",
        "需要协调",
        "协调",
        "请求协调",
        "需要支持",
        "needs_coordination",
        "coordination",
        "help",
    ),
}


_SEPARATORS = " :,;。.\n\t\u3000：，；、"


def parse_status(word: str) -> StatusCode | None:
    lowered = word.strip().lower()
    for code, words in _STATUS_WORDS.items():
        if lowered in words:
            return code
    return None


def split_status(text: str) -> tuple[StatusCode | None, str]:
    """Read a leading status word off a note: "按计划推进 已引进3家" → (on_track, "已引进3家")."""
    stripped = text.strip()
    for code, words in _STATUS_WORDS.items():
        for word in sorted(words, key=len, reverse=True):
            if stripped.lower().startswith(word):
                rest = stripped[len(word) :]
                if not rest or rest[0] in _SEPARATORS or not word.isascii():
                    return code, rest.lstrip(_SEPARATORS)
    return None, stripped


@dataclass
class StagedFile:
    """A file received from a platform and saved under the uploads folder, not yet recorded."""

    file_name: str
    size: int
    mime_type: str
    file_id: str
    file_unique_id: str
    staged_path: Path
    sha256: str
    platform: str

    @staticmethod
    def digest(path: Path) -> str:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        return hasher.hexdigest()


class FileNotStored(Exception):
    """The uploads folder could not take a file (full, read-only …); nothing of it was left behind."""

    def __init__(self, file_name: str, cause: OSError) -> None:
        super().__init__(f"{file_name}: {cause.strerror or cause}")
        self.file_name = file_name
        self.cause = cause


@contextlib.contextmanager
def staging(folder: Path, file_name: str) -> Iterator[Path]:
    """A fresh path in the staging ``folder`` for a file being received.

    Any OSError while the block writes it (disk full, read-only folder) removes
    the partial file and becomes :class:`FileNotStored`.
    """
    target = folder / f"{uuid.uuid4().hex}{Path(file_name).suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield target
    except OSError as exc:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        raise FileNotStored(file_name, exc) from exc


@dataclass(frozen=True)
class Placement:
    """A staged file and where it is kept once its report has committed."""

    staged: Path
    stored: Path

    def place(self) -> None:
        """Move the file into place: a rename on the same file system, else a copy (the partial copy removed)."""
        self.stored.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.staged, self.stored)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            try:
                shutil.copyfile(self.staged, self.stored)
            except OSError:
                with contextlib.suppress(OSError):
                    self.stored.unlink(missing_ok=True)
                raise
            self.staged.unlink(missing_ok=True)


@dataclass
class Recorded:
    report: StatusReport
    obligation: Obligation | None
    checkpoint: Checkpoint | None
    attachments: list[Attachment] = field(default_factory=list)
    #: the files to move into place once the transaction has committed
    placements: list[Placement] = field(default_factory=list)


def _remembered_obligations(session: Session) -> dict[tuple[int, int], list[Obligation]]:
    """(task, unit) → live obligations, remembered in the session (see :func:`open_obligations`)."""
    memo: dict[tuple[int, int], list[Obligation]] = session.info.setdefault("open_obligations", {})
    return memo


def open_obligations(session: Session, task_id: int, unit_id: int) -> list[Obligation]:
    """The unit's live obligations for a task, earliest due first.

    Remembered for the rest of the session's unit of work: one report asks
    several questions of the same list, and its objects change in place.
    """
    memo = _remembered_obligations(session)
    if (task_id, unit_id) not in memo:
        memo[(task_id, unit_id)] = _load_open_obligations(session, task_id, unit_id)
    return memo[(task_id, unit_id)]


# Built once: every report runs it (building a statement costs more than running it on SQLite).
# The live checkpoints as a list: SQLite then looks the obligations up by their (checkpoint, task,
# unit) key; with the condition on the joined checkpoint it read every obligation of the unit.
_LIVE_CHECKPOINTS = select(Checkpoint.id).where(Checkpoint.cancelled_at.is_(None))
_OPEN_OBLIGATIONS = (
    select(Obligation)
    .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
    .options(contains_eager(Obligation.checkpoint))
    .where(
        Obligation.task_id == bindparam("task_id"),
        Obligation.unit_id == bindparam("unit_id"),
        Obligation.active.is_(True),
        Obligation.checkpoint_id.in_(_LIVE_CHECKPOINTS),
    )
    .order_by(Checkpoint.due_at, Checkpoint.id)
)
_REPORTS = cast(Table, StatusReport.__table__)
_INSERT_REPORT = insert(_REPORTS).returning(_REPORTS.c.id)
_OBLIGATIONS = cast(Table, Obligation.__table__)
# SET from the parameters it is run with: state, answered_at, last_report_id, updated_at.
_ANSWER_OBLIGATION = update(_OBLIGATIONS).where(_OBLIGATIONS.c.id == bindparam("obligation_id"))


def _load_open_obligations(session: Session, task_id: int, unit_id: int) -> list[Obligation]:
    return list(session.scalars(_OPEN_OBLIGATIONS, {"task_id": task_id, "unit_id": unit_id}))


# A task by its number, whether the unit is assigned it, and the unit's live obligations for it (the
# rows of _OPEN_OBLIGATIONS, outer-joined: a task the unit owes nothing for is still one row).
_TASK_FOR_UNIT = (
    select(
        Task,
        select(Assignment.unit_id)
        .where(Assignment.task_id == Task.id, Assignment.unit_id == bindparam("unit_id"), Assignment.active.is_(True))
        .limit(1)
        .correlate(Task)
        .scalar_subquery(),
        Obligation,
    )
    .outerjoin(
        Obligation,
        and_(
            Obligation.task_id == Task.id,
            Obligation.unit_id == bindparam("unit_id"),
            Obligation.active.is_(True),
            Obligation.checkpoint_id.in_(_LIVE_CHECKPOINTS),
        ),
    )
    .outerjoin(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
    .options(contains_eager(Obligation.checkpoint))
    .where(
        Task.plan_id == bindparam("plan_id"),
        Task.annex == bindparam("annex"),
        Task.number == bindparam("number"),
        Task.active.is_(True),
    )
    .order_by(Checkpoint.due_at, Checkpoint.id)
)


def find_task_for_unit(
    session: Session, plan_id: int, annex: str, number: int, unit_id: int
) -> tuple[Task | None, bool]:
    """A plan's live task by its number, and whether the unit is assigned it; one query.

    The unit's live obligations for the task come with it and are remembered
    for :func:`open_obligations` (a report on the task asks for them next).
    """
    rows = session.execute(
        _TASK_FOR_UNIT, {"plan_id": plan_id, "annex": annex, "number": number, "unit_id": unit_id}
    ).all()
    if not rows:
        return None, False
    task, assigned, _ = rows[0]
    _remembered_obligations(session)[(task.id, unit_id)] = [o for _, _, o in rows if o is not None]
    return task, assigned is not None


def target_obligation(
    session: Session, task_id: int, unit_id: int, *, has_file: bool, checkpoint_id: int | None = None
) -> Obligation | None:
    """Which obligation a report about this task answers (see the module docstring)."""
    obligations = open_obligations(session, task_id, unit_id)
    if checkpoint_id is not None:
        chosen = [o for o in obligations if o.checkpoint_id == checkpoint_id and o.state != "accepted"]
        if chosen:
            return chosen[0]
    for obligation in obligations:
        if obligation.state in ("owed", "returned") and (has_file or obligation.checkpoint.satisfied_by == "status"):
            return obligation
    answered = [o for o in obligations if o.state == "answered"]
    if answered and (has_file or answered[-1].checkpoint.satisfied_by == "status"):
        return answered[-1]
    return None


def pending_document(session: Session, task_id: int, unit_id: int) -> Obligation | None:
    """The earliest open obligation if it can only be met with a file (the refined plan)."""
    for obligation in open_obligations(session, task_id, unit_id):
        if obligation.state in ("owed", "returned"):
            return obligation if obligation.checkpoint.satisfied_by == "document" else None
    return None


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^\w.\-一-鿿()（）]+", "_", name).strip("._") or "file"
    return cleaned[-120:]


def record_report(
    session: Session,
    *,
    task: Task,
    unit: Unit,
    person_id: int | None,
    status: StatusCode,
    note: str,
    files: list[StagedFile],
    platform: str,
    platform_message_id: str | None,
    via: str,
    now: datetime,
    uploads_dir: Path,
    checkpoint_id: int | None = None,
) -> Recorded:
    """Append a status report and its attachments, and update the obligation it answers.

    No file is touched here: the attachments name where their files will be
    kept, and the caller moves them there (:attr:`Recorded.placements`) once the
    transaction has committed, so a slow or failing disk never holds it, and a
    transaction that does not commit leaves the draft its staged files.
    """
    obligation = target_obligation(session, task.id, unit.id, has_file=bool(files), checkpoint_id=checkpoint_id)
    checkpoint = obligation.checkpoint if obligation else None
    on_time = (now <= checkpoint.due_at) if checkpoint else None
    columns = {
        "task_id": task.id,
        "unit_id": unit.id,
        "obligation_id": obligation.id if obligation else None,
        "checkpoint_id": checkpoint.id if checkpoint else None,
        "person_id": person_id,
        "status": status.value,
        "note": note,
        "on_time": on_time,
        "platform": platform,
        "platform_message_id": platform_message_id,
        "via": via,
        "reported_at": now,
    }
    # A direct insert (no unit-of-work flush); the row then joins the session as a loaded object.
    report = StatusReport(id=session.execute(_INSERT_REPORT, columns).scalar_one(), **columns)
    make_transient_to_detached(report)
    session.add(report)
    attachments = []
    placements: list[Placement] = []
    for staged in files:
        folder = uploads_dir / str(unit.jurisdiction_id) / str(unit.id)
        final = folder / f"{report.id}-{_safe_name(staged.file_name)}"
        copies = 1
        while final in {p.stored for p in placements}:  # two files of one name in one report: both kept
            copies += 1
            final = folder / f"{report.id}-{copies}-{_safe_name(staged.file_name)}"
        placements.append(Placement(staged.staged_path, final))
        attachment = Attachment(
            report_id=report.id,
            platform=staged.platform,
            file_id=staged.file_id,
            file_unique_id=staged.file_unique_id,
            file_name=staged.file_name,
            mime_type=staged.mime_type,
            size=staged.size,
            stored_path=str(final),
            sha256=staged.sha256,
            created_at=now,
        )
        session.add(attachment)
        attachments.append(attachment)
    if obligation is not None:
        # Timeliness is the first submission's: a resubmission after a return does not move it.
        answered_at = obligation.answered_at
        if obligation.state in ("owed", "returned") and answered_at is None:
            answered_at = now
        values = {"state": "answered", "answered_at": answered_at, "last_report_id": report.id, "updated_at": now}
        session.execute(_ANSWER_OBLIGATION, {"obligation_id": obligation.id, **values})
        for name, value in values.items():  # the loaded object says what the row now holds
            set_committed_value(obligation, name, value)
    if attachments:
        session.flush()
    return Recorded(
        report=report, obligation=obligation, checkpoint=checkpoint, attachments=attachments, placements=placements
    )


class ReviewError(ValueError):
    """A review that does not apply: nothing answered to accept, nothing to return."""


def latest_reviewable(session: Session, task_id: int, unit_id: int, decision: str) -> Obligation | None:
    """The obligation an accept/return refers to: the latest answered (or, to return, accepted) one."""
    states = ("answered",) if decision == "accepted" else ("answered", "accepted")
    candidates = [o for o in open_obligations(session, task_id, unit_id) if o.state in states]
    return candidates[-1] if candidates else None


def review(
    session: Session,
    obligation: Obligation,
    *,
    decision: str,
    reason: str,
    person_id: int | None,
    now: datetime,
    actor: str,
) -> Review:
    """Accept an answer, or return it (it is owed again and the unit is told why)."""
    if decision not in ("accepted", "returned"):
        raise ReviewError(decision)
    row = Review(
        obligation_id=obligation.id,
        report_id=obligation.last_report_id,
        decision=decision,
        reason=reason,
        person_id=person_id,
        at=now,
    )
    session.add(row)
    obligation.state = decision
    obligation.updated_at = now
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action=f"review.{decision}",
            subject=f"{task_label(obligation.task.annex, obligation.task.number)} {obligation.unit.name}",
            detail={"checkpoint": obligation.checkpoint.key, "reason": reason},
        )
    )
    session.flush()
    return row
