"""Uploaded plans waiting for the office's confirmation, with the corrections made so far.

Nothing is written to the plan before the office confirms: the dashboard keeps
the uploaded file and its correction set in a folder of its own under the data
directory (``import-staging/<id>/``), named by a random id and bound to the
browser session that uploaded it.  Another session cannot see or use it, and
it is deleted on confirm, on discard, or when it is older than the time to
live.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from core.config import Settings
from core.plan_corrections import Corrections

STAGING_TTL = timedelta(hours=2)
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_META = "meta.json"
_SOURCE = "source"


def import_staging_folder(settings: Settings) -> Path:
    return settings.path(settings.service.data_dir) / "import-staging"


@dataclass
class StagedImport:
    """One uploaded file and its corrections."""

    id: str
    folder: Path
    filename: str
    owner: str
    created_at: datetime
    corrections: Corrections

    def data(self) -> bytes:
        return (self.folder / _SOURCE).read_bytes()


class ImportStaging:
    """The staging folders under one root; every method takes the time from the caller's clock."""

    def __init__(self, root: Path, ttl: timedelta = STAGING_TTL) -> None:
        self.root = root
        self.ttl = ttl

    def create(self, data: bytes, filename: str, owner: str, now: datetime) -> StagedImport:
        self.expire(now)
        stage_id = secrets.token_urlsafe(18)
        folder = self.root / stage_id
        folder.mkdir(parents=True, mode=0o700)
        (folder / _SOURCE).write_bytes(data)
        staged = StagedImport(stage_id, folder, Path(filename).name[:200] or "plan", owner, now, Corrections())
        self.save(staged)
        return staged

    def load(self, stage_id: str, owner: str, now: datetime) -> StagedImport | None:
        """The staged import, if it exists, belongs to ``owner`` and has not expired."""
        if not _ID.match(stage_id):
            return None
        folder = self.root / stage_id
        try:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        created = datetime.fromisoformat(meta["created_at"])
        if now - created > self.ttl:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        if not secrets.compare_digest(str(meta["owner"]), owner):
            return None
        return StagedImport(
            stage_id, folder, meta["filename"], meta["owner"], created, Corrections.from_dict(meta["corrections"])
        )

    def save(self, staged: StagedImport) -> None:
        meta = {
            "owner": staged.owner,
            "created_at": staged.created_at.isoformat(),
            "filename": staged.filename,
            "corrections": staged.corrections.as_dict(),
        }
        temporary = staged.folder / f"{_META}.tmp"
        temporary.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        temporary.replace(staged.folder / _META)  # a reader never sees half a file

    def discard(self, staged: StagedImport) -> None:
        shutil.rmtree(staged.folder, ignore_errors=True)

    def expire(self, now: datetime) -> int:
        """Delete every staged import older than the time to live; returns how many."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for folder in self.root.iterdir():
            try:
                created = datetime.fromisoformat(json.loads((folder / _META).read_text(encoding="utf-8"))["created_at"])
            except (OSError, ValueError, KeyError):
                created = datetime.fromtimestamp(folder.stat().st_mtime, now.tzinfo)
            if now - created > self.ttl:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed
