"""Unfinished /report drafts: dropped, with the files staged for them, once nobody has touched them for a while.

A liaison who starts ``/report``, attaches a file and never confirms leaves a
``conversation_state`` row and a file in the staging folder.  Nothing is
recorded until the report is confirmed, so dropping the draft loses nothing
that was reported; it keeps the staging folder from growing without end.
Staged files that no draft holds (a crash between download and recording)
are swept by their age on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ConversationState

log = logging.getLogger("duban.drafts")


@dataclass(frozen=True)
class DraftSweep:
    """What one sweep dropped: how many drafts, and the files to delete once that is committed."""

    drafts: int
    files: list[Path]


def _staged_paths(state: ConversationState) -> list[Path]:
    data: dict[str, Any] = state.data or {}
    return [Path(f["staged_path"]) for f in data.get("files", []) if f.get("staged_path")]


def sweep_drafts(session: Session, staging_dir: Path, now: datetime, ttl: timedelta) -> DraftSweep:
    """Drop drafts untouched since ``now - ttl``; name their files and the staged files no draft holds that are as old.

    The files are only named, not deleted: the caller deletes them after the
    transaction commits, so a failed commit leaves no draft without its file.
    """
    cutoff = now - ttl
    files: list[Path] = []
    stale = list(session.scalars(select(ConversationState).where(ConversationState.updated_at < cutoff)))
    for state in stale:
        files += [path for path in _staged_paths(state) if path.is_file()]
        session.delete(state)
    session.flush()
    held = {path.resolve() for state in session.scalars(select(ConversationState)) for path in _staged_paths(state)}
    if staging_dir.is_dir():
        for path in staging_dir.iterdir():
            if not path.is_file() or path.resolve() in held or path in files:
                continue
            # An orphan younger than the cutoff may be a download whose turn is still running.
            if datetime.fromtimestamp(path.stat().st_mtime, now.tzinfo) < cutoff:
                files.append(path)
    if stale or files:
        log.info("stale report drafts dropped", extra={"drafts": len(stale), "files": len(files)})
    return DraftSweep(drafts=len(stale), files=files)
