"""What an import would bring in, shown before anything is written.

:func:`build_preview` parses a document the way the import would (with the
office's stored definitions and this import's corrections) and describes it
for the office to check: tasks per annex and section, units found (new or
already known) with likely duplicates, groups still to define and the tasks
depending on each, every line not understood, and what a re-import would
change.  The command line and the dashboard only render it;
:meth:`ImportPreview.as_dict` is the ``duban import --json`` schema.

Likely duplicates ("县交通运输局 ~ 县交通局") are found on a unit's *core*: its
name without the jurisdiction's place prefix (嘉鱼县 / 嘉鱼 / 县 / 区 / 市).
Two cores are flagged when

- they are equal (嘉鱼供电公司 ~ 县供电公司): ``same-core``;
- the shorter is an abbreviation of the longer: at least 3 characters, a
  subsequence of it, with the same first character and the same last one (the
  body's kind: 局, 办, 公司 …), which is how Chinese office names are shortened
  (交通局 ⊂ 交通运输局, 政务数据局 ⊂ 政务服务和大数据管理局): ``abbreviation``;
- or difflib's ratio of the two cores is at least 0.8: ``similar``.

The rules are deliberately narrow: 县财政局 and 县民政局 (ratio 0.67 on their
cores) are not flagged.  Each pair is a suggestion for the office to merge or
not; nothing is merged without it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.plan_corrections import Corrections
from core.plan_import import ImportDiff, ParseFunction, Shrink, group_phrases, prepare_import, task_key
from core.plan_parser import Annex, ParsedPlan, Severity
from core.targets import extract_targets
from core.tasks import task_label
from core.units import UnitDirectory
from storage.models import Unit, UnitAlias

PREVIEW_SCHEMA = 1
UNPARSED = "unparsed"  # a line left aside (prose, an item naming no unit): shown, never an error
SIMILAR_RATIO = 0.8
_PLACE_LEVELS = ("省", "市", "县", "区", "旗", "镇", "乡")


@dataclass(frozen=True)
class SectionCount:
    annex: str
    section: str
    tasks: int


@dataclass(frozen=True)
class TaskPreview:
    key: str  # county-5
    label: str  # 县5
    text: str
    section: str
    line: int
    span: tuple[int, int]  # first and last document line the task came from
    source: str  # the original lines, as written
    lead: list[str]
    responsible: list[str]
    groups: list[tuple[str, str]]  # (role, phrase)
    targets: list[str] = field(default_factory=list)  # the numbers read as targets: 改造城镇老旧小区 434个


@dataclass(frozen=True)
class UnitFound:
    name: str
    known: bool  # already a unit (or an alias of one) of this jurisdiction
    lead: int  # tasks it leads in the document
    responsible: int


@dataclass(frozen=True)
class SimilarPair:
    a: str
    b: str
    rule: str  # same-core | abbreviation | similar
    score: float


@dataclass(frozen=True)
class GroupFound:
    phrase: str
    defined: bool
    members: list[str]
    tasks: list[str]  # keys of the tasks naming it


@dataclass(frozen=True)
class LineNotUnderstood:
    line: int
    severity: str
    reason: str
    text: str


@dataclass
class ImportPreview:
    """Everything the office checks before an import; built by :func:`build_preview`."""

    source_name: str
    jurisdiction: str
    title: str
    year: int | None
    first_import: bool
    tasks: list[TaskPreview]
    sections: list[SectionCount]
    units: list[UnitFound]
    similar: list[SimilarPair]
    aliases: dict[str, str]  # alias written in the document -> unit
    groups: list[GroupFound]
    problems: list[LineNotUnderstood]
    diff: ImportDiff
    shrink: Shrink
    corrections: Corrections
    parsed: ParsedPlan = field(repr=False)

    @property
    def errors(self) -> list[LineNotUnderstood]:
        return [p for p in self.problems if p.severity == Severity.ERROR.value]

    @property
    def groups_to_define(self) -> list[GroupFound]:
        return [g for g in self.groups if not g.defined]

    @property
    def assignments(self) -> int:
        return sum(len(t.lead) + len(t.responsible) for t in self.tasks)

    def counts(self) -> dict[str, int]:
        return {annex.value: sum(1 for t in self.tasks if t.key.startswith(f"{annex.value}-")) for annex in Annex}

    def blocked_by(self, allow_shrink: bool) -> str | None:
        """Why this preview cannot be imported as it is: ``errors``, ``shrink`` or ``None``."""
        if self.errors:
            return "errors"
        if self.shrink.too_much and not allow_shrink:
            return "shrink"
        return None

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON form (``schema`` is bumped on any incompatible change)."""
        diff = self.diff
        return {
            "schema": PREVIEW_SCHEMA,
            "source": self.source_name,
            "jurisdiction": self.jurisdiction,
            "title": self.title,
            "year": self.year,
            "first_import": self.first_import,
            "counts": self.counts(),
            "assignments": self.assignments,
            "sections": [vars(s) for s in self.sections],
            "tasks": [
                {
                    "key": t.key,
                    "label": t.label,
                    "text": t.text,
                    "section": t.section,
                    "line": t.line,
                    "span": list(t.span),
                    "lead": t.lead,
                    "responsible": t.responsible,
                    "groups": [{"role": role, "phrase": phrase} for role, phrase in t.groups],
                    "targets": t.targets,
                }
                for t in self.tasks
            ],
            "units": [vars(u) for u in self.units],
            "similar": [vars(p) for p in self.similar],
            "aliases": [{"alias": alias, "unit": unit} for alias, unit in self.aliases.items()],
            "groups": [vars(g) for g in self.groups],
            "problems": [vars(p) for p in self.problems],
            "diff": {
                "new_tasks": diff.new_tasks,
                "restored_tasks": diff.restored_tasks,
                "removed_tasks": diff.removed_tasks,
                "changed_text": [{"task": t, "old": o, "new": n} for t, o, n in diff.changed_text],
                "added": [vars(c) for c in diff.added],
                "removed": [vars(c) for c in diff.removed],
                "role_changed": [vars(c) for c in diff.role_changed],
                "new_units": diff.new_units,
            },
            "shrink": {
                "active_tasks": self.shrink.active,
                "removed_tasks": self.shrink.removed,
                "share": round(self.shrink.share, 4),
                "limit": self.shrink.limit,
                "too_much": self.shrink.too_much,
            },
            "corrections": self.corrections.as_dict(),
        }


def build_preview(
    session: Session,
    settings: Settings,
    parse: ParseFunction,
    *,
    source_name: str,
    jurisdiction_name: str,
    now: datetime,
    corrections: Corrections | None = None,
    directory: UnitDirectory | None = None,
) -> ImportPreview:
    """Describe what importing the document would do; writes nothing.

    ``directory`` holds the notice's own unit tables, as for :func:`core.plan_import.import_parsed`.
    """
    prepared = prepare_import(
        session,
        settings,
        parse,
        jurisdiction_name=jurisdiction_name,
        now=now,
        corrections=corrections,
        directory=directory,
    )
    parsed = prepared.parsed
    jurisdiction = prepared.jurisdiction
    known: set[str] = set()
    if jurisdiction is not None:
        known = set(session.scalars(select(Unit.name).where(Unit.jurisdiction_id == jurisdiction.id)))
        known |= set(
            session.scalars(
                select(UnitAlias.alias)
                .join(Unit, Unit.id == UnitAlias.unit_id)
                .where(Unit.jurisdiction_id == jurisdiction.id)
            )
        )
    defined = prepared.directory.groups
    tasks = _task_previews(parsed)
    groups: dict[str, list[str]] = {}
    for task in parsed.tasks:
        for _, phrase in group_phrases(task):
            groups.setdefault(phrase, []).append(task_key(task.annex.value, task.number))
    lead = Counter(u for t in parsed.tasks for u in t.lead)
    responsible = Counter(u for t in parsed.tasks for u in t.responsible)
    found = list(dict.fromkeys(u for t in parsed.tasks for u, _ in t.units()))
    units = [UnitFound(name, name in known, lead[name], responsible[name]) for name in found]
    aliases = {alias: unit for t in parsed.tasks for unit, alias in t.aliases.items()}
    return ImportPreview(
        source_name=source_name,
        jurisdiction=jurisdiction_name,
        title=parsed.title,
        year=parsed.year or now.year,
        first_import=prepared.plan is None,
        tasks=tasks,
        sections=_sections(parsed),
        units=units,
        similar=likely_duplicates(
            [u.name for u in units if not u.known], sorted(known | set(found)), jurisdiction_name
        ),
        aliases=aliases,
        groups=[
            GroupFound(
                phrase, phrase in defined, [prepared.directory.canonical(m) for m in defined.get(phrase, [])], keys
            )
            for phrase, keys in groups.items()
        ],
        problems=sorted(
            [LineNotUnderstood(p.line, p.severity.value, p.reason, p.excerpt) for p in parsed.problems]
            + [
                LineNotUnderstood(p.line, UNPARSED, p.reason, p.excerpt)
                for p in parsed.unparsed
                if (p.line, p.reason) not in {(e.line, e.reason) for e in parsed.errors}  # listed once, as the error
            ],
            key=lambda p: p.line,
        ),
        diff=prepared.diff,
        shrink=prepared.shrink,
        corrections=prepared.corrections,
        parsed=parsed,
    )


def _sections(parsed: ParsedPlan) -> list[SectionCount]:
    counts: Counter[tuple[str, str]] = Counter()
    for task in parsed.tasks:
        counts[(task.annex.value, task.section or task.subsection)] += 1
    return [SectionCount(annex, section, n) for (annex, section), n in counts.items()]


def _task_previews(parsed: ParsedPlan) -> list[TaskPreview]:
    return [
        TaskPreview(
            key=task_key(task.annex.value, task.number),
            label=task_label(task.annex, task.number),
            text=task.text,
            section=task.subsection or task.section,
            line=task.line,
            span=task.span,
            source=task.source_text or task.text,
            lead=list(task.lead),
            responsible=list(task.responsible),
            groups=[(role.value, phrase) for role, phrase in group_phrases(task)],
            targets=[target.label for target in extract_targets(task.text)],
        )
        for task in parsed.tasks
    ]


def place_prefixes(jurisdiction: str) -> list[str]:
    """What a unit name may start with to say where it is: 嘉鱼县, 嘉鱼, 县 … (longest first)."""
    stem = jurisdiction[:-1] if jurisdiction.endswith(_PLACE_LEVELS) and len(jurisdiction) > 2 else jurisdiction
    return sorted({jurisdiction, stem, *_PLACE_LEVELS} - {""}, key=len, reverse=True)


def unit_core(name: str, prefixes: list[str]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix) and len(name) - len(prefix) >= 2:
            return name[len(prefix) :]
    return name


def _abbreviates(short: str, long: str) -> bool:
    if len(short) < 3 or len(short) >= len(long) or short[0] != long[0] or short[-1] != long[-1]:
        return False
    remaining = iter(long)
    return all(char in remaining for char in short)


def likely_duplicates(new: list[str], candidates: list[str], jurisdiction: str) -> list[SimilarPair]:
    """Pairs (a new unit, another unit) that probably name the same body; see the module docstring."""
    prefixes = place_prefixes(jurisdiction)
    pairs: list[SimilarPair] = []
    seen: set[frozenset[str]] = set()
    for name in new:
        core = unit_core(name, prefixes)
        for other in candidates:
            key = frozenset((name, other))
            if other == name or key in seen:
                continue
            other_core = unit_core(other, prefixes)
            ratio = SequenceMatcher(None, core, other_core).ratio()
            short, long = sorted((core, other_core), key=len)
            if core == other_core:
                rule = "same-core"
            elif _abbreviates(short, long):
                rule = "abbreviation"
            elif ratio >= SIMILAR_RATIO:
                rule = "similar"
            else:
                continue
            seen.add(key)
            pairs.append(SimilarPair(name, other, rule, round(ratio, 3)))
    return pairs
