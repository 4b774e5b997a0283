"""Offsets and durations written the way an office writes them: ``-7d``, ``+1d``, ``-3h``, ``90s``.

A value is a sign and one or more number-unit pairs (``d`` days, ``h`` hours,
``m`` minutes, ``s`` seconds), e.g. ``1d12h``.  An offset made of whole days
only is *day-granular*: a reminder seven days before a deadline goes out at
the morning send time of that day, not at the deadline's clock time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_WHOLE = re.compile(r"^[+-]?(?:\d+(?:\.\d+)?[dhms])+$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Offset:
    """A signed duration and whether it counts in whole days."""

    delta: timedelta
    day_granular: bool
    text: str

    @property
    def days(self) -> int:
        return self.delta.days if self.delta >= timedelta(0) else -((-self.delta).days)

    def __str__(self) -> str:
        return self.text


def parse_offset(text: str) -> Offset:
    """Parse ``-7d``, ``+1d``, ``0d``, ``-3h``, ``-30s``, ``1d12h``; ValueError when malformed."""
    raw = str(text).strip().replace(" ", "")
    if not _WHOLE.match(raw):
        raise ValueError(f"无法识别的时间偏移 {text!r}(示例:-7d、+1d、-3h、-30s)")
    sign = -1 if raw.startswith("-") else 1
    parts = _PART.findall(raw)
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    day_granular = all(unit == "d" and float(number).is_integer() for number, unit in parts)
    normalised = raw if raw[0] in "+-" else f"+{raw}"
    return Offset(timedelta(seconds=sign * seconds), day_granular, normalised)


def parse_duration(text: str) -> timedelta:
    """Parse a non-negative duration such as ``1m``, ``7d``, ``1.5s``."""
    offset = parse_offset(text)
    if offset.delta < timedelta(0):
        raise ValueError(f"时长不能为负: {text!r}")
    return offset.delta


def format_duration(delta: timedelta) -> str:
    """The inverse of :func:`parse_duration` for whole seconds: ``1d2h``, ``30s``, ``0s``."""
    seconds = int(abs(delta.total_seconds()))
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    text = "".join(parts) or "0s"
    return f"-{text}" if delta < timedelta(0) else text
