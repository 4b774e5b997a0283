"""Figures for a task's targets, as liaisons type them in chat.

Two forms are read:

- named, anywhere in a report's note: ``老旧小区 220 危房 150 说明…`` or
  ``老旧小区220、危房150``: a word that is part of exactly one target's metric,
  then a number (with a unit or 万 if the person likes);
- in order, as the answer to the bot's question: ``220 150`` for the task's
  targets in the order the bot listed them.

Each figure is checked with :func:`core.targets.parse_value` (a number, in
range, in a unit that matches).  The note itself is kept as typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.targets import MEASURES, Target, ValueRefused, parse_value

_UNIT = "(?:[万亿千]?(?:" + "|".join(map(re.escape, MEASURES)) + ")|[万亿千])?"
_FIGURE = re.compile(r"-?\d+(?:\.\d+)?\s*" + _UNIT)
_NAMED = re.compile(r"(?P<key>[\u4e00-\u9fffA-Za-z]{2,16}?)\s*[:：=]?\s*(?P<figure>" + _FIGURE.pattern + ")")
SKIP_WORDS = ("跳过", "不填", "skip")


@dataclass
class Figures:
    """Figures read from a text: target id → value in the target's unit; problems in Chinese."""

    values: dict[int, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _target_for(key: str, targets: dict[int, Target]) -> tuple[int, int] | None:
    """The one target whose metric contains the word's longest possible ending (glued text: 进展顺利老旧小区220)."""
    for length in range(len(key), 1, -1):
        tail = key[-length:]
        found = [target_id for target_id, target in targets.items() if tail in target.metric]
        if len(found) == 1:
            return found[0], length
        if len(found) > 1:
            return None
    return None


def named_figures(text: str, targets: dict[int, Target]) -> Figures:
    """Figures named in a report's note (the note itself is kept as typed)."""
    figures = Figures()
    for match in _NAMED.finditer(text):
        found = _target_for(match["key"], targets)
        if found is None or found[0] in figures.values:
            continue
        target_id = found[0]
        try:
            figures.values[target_id] = parse_value(match["figure"], targets[target_id])
        except ValueRefused as exc:
            figures.problems.append(str(exc))
            continue
    return figures


def answered_figures(text: str, targets: dict[int, Target]) -> Figures:
    """Figures given as the answer to the bot's question: named, or bare numbers in the listed order."""
    named = named_figures(text, targets)
    if named.values or named.problems:
        return named
    figures = Figures()
    bare = _FIGURE.findall(text)
    for (target_id, target), written in zip(targets.items(), bare, strict=False):
        try:
            figures.values[target_id] = parse_value(written, target)
        except ValueRefused as exc:
            figures.problems.append(str(exc))
    if len(bare) > len(targets):
        figures.problems.append(f"数值多于目标个数({len(targets)} 个)")
    return figures
