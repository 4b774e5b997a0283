"""Unit names as the documents spell them, and what they mean.

Notices spell one unit several ways (县交通运输局 / 县交通局), break names with
spaces, write bare town names (陆溪镇) beside full ones (陆溪镇人民政府), put an
alias in brackets (县发改局(县营商办)) and use group phrases (各镇人民政府,
县政府各部门 …) that stand for lists of units.  :class:`UnitDirectory` turns any
of these into canonical unit names, using the office's alias and group tables
from the configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class UnitKind(StrEnum):
    """What sort of body a unit is; used for display and group defaults."""

    DEPARTMENT = "department"
    TOWN = "town"
    ENTERPRISE = "enterprise"
    OTHER = "other"


_SPACES = re.compile(r"\s+")
_BRACKET_ALIAS = re.compile(r"^(?P<name>[^()（）]+)[(（](?P<alias>[^()（）]+)[)）]$")
_BARE_TOWN = re.compile(r"^.{1,8}[镇乡]$")
_GROUP_MARKERS = (
    "各镇",
    "各乡",
    "各部门",
    "各单位",
    "各相关单位",
    "各金融机构",
    "成员单位",
    "各有关单位",
    "有关部门",
    "相关部门",
    "有关单位",
    "相关单位",
    "各地",
)
_ENTERPRISE_SUFFIXES = ("公司", "集团", "银行")
_DEPARTMENT_SUFFIXES = ("局", "办", "委", "部", "中心", "院", "室", "社", "会", "所", "处", "队", "站", "联")


def clean_name(raw: str) -> str:
    """Strip whitespace inside and around a name, and stray punctuation at its ends."""
    name = _SPACES.sub("", raw)
    return name.strip("、,，;；。.:：")


def is_group_phrase(name: str) -> bool:
    """True when a name reads as a group of units rather than one unit."""
    if name.startswith(("相关", "有关", "其他")) and not name.endswith(("公司", "集团")):
        return True
    return "各" in name or any(marker in name for marker in _GROUP_MARKERS)


def infer_kind(name: str) -> UnitKind:
    """Guess a unit's kind from its name; the configuration can override it."""
    if name.endswith(("镇人民政府", "乡人民政府")):
        return UnitKind.TOWN
    if name.endswith(_ENTERPRISE_SUFFIXES):
        return UnitKind.ENTERPRISE
    if name.endswith(_DEPARTMENT_SUFFIXES):
        return UnitKind.DEPARTMENT
    return UnitKind.OTHER


@dataclass(frozen=True)
class ResolvedName:
    """One name from a document, resolved.

    ``units`` holds canonical unit names (several for a group phrase).
    ``alias`` is a bracketed alias the document attached to the unit.
    ``group`` is the group phrase when the name was one; ``unresolved_group``
    is set when the phrase has no expansion in the configuration.
    """

    raw: str
    units: tuple[str, ...]
    alias: str | None = None
    group: str | None = None
    unresolved_group: bool = False


@dataclass
class UnitDirectory:
    """Alias and group tables, and the rules that canonicalise a unit name."""

    aliases: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    kinds: dict[str, UnitKind] = field(default_factory=dict)
    # "county-36" -> {phrase: units}: what a phrase means in one task only
    task_groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def canonical(self, raw: str) -> str:
        """The canonical spelling of one unit name (not a group phrase)."""
        name = clean_name(raw)
        if _BARE_TOWN.match(name):
            name = f"{name}人民政府"
        seen: set[str] = set()
        # Aliases may chain (A = B, B = C); follow them but never loop.
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = clean_name(self.aliases[name])
        return name

    def kind_of(self, name: str) -> UnitKind:
        """The configured kind of a unit, else the kind its name suggests."""
        return self.kinds.get(name, infer_kind(name))

    def resolve(self, raw: str, task_key: str | None = None) -> ResolvedName:
        """Resolve one list item of a document: a unit, an aliased unit or a group.

        ``task_key`` ("county-36") selects a task-specific meaning of a group
        phrase when the configuration has one.
        """
        name = clean_name(raw)
        overrides = self.task_groups.get(task_key or "", {})
        group_key = self._group_key(name, overrides)
        if group_key is not None:
            listed = overrides.get(group_key, self.groups.get(group_key, []))
            members = tuple(dict.fromkeys(self.canonical(m) for m in listed))
            return ResolvedName(raw=raw, units=members, group=group_key)
        if is_group_phrase(name):
            return ResolvedName(raw=raw, units=(), group=name, unresolved_group=True)
        match = _BRACKET_ALIAS.match(name)
        if match:
            unit = self.canonical(match["name"])
            return ResolvedName(raw=raw, units=(unit,), alias=clean_name(match["alias"]))
        return ResolvedName(raw=raw, units=(self.canonical(name),))

    def _group_key(self, name: str, overrides: dict[str, list[str]]) -> str | None:
        for candidate in (name, self.aliases.get(name)):
            if candidate is not None and (candidate in overrides or candidate in self.groups):
                return candidate
        return None
