"""How people write and read task references: ``22`` / ``县22`` for county task 22, ``市3`` for city task 3."""

from __future__ import annotations

import re

from core.plan_parser import Annex

_REF = re.compile(r"^(?:(县|市|county-?|city-?|c|m)\s*)?(\d{1,4})$", re.IGNORECASE)
_PREFIX = {
    "县": Annex.COUNTY,
    "county": Annex.COUNTY,
    "c": Annex.COUNTY,
    "市": Annex.CITY,
    "city": Annex.CITY,
    "m": Annex.CITY,
}
_FULL_WIDTH_DIGITS = {0xFF10 + d: 0x30 + d for d in range(10)}
_LABEL = {"zh": {Annex.COUNTY: "县", Annex.CITY: "市"}, "en": {Annex.COUNTY: "C", Annex.CITY: "M"}}


def parse_task_ref(text: str) -> tuple[Annex, int] | None:
    """``22`` → (county, 22); ``市3``/``city-3`` → (city, 3); None when it is not a task reference."""
    match = _REF.match(text.strip().translate(_FULL_WIDTH_DIGITS))
    if not match:
        return None
    prefix = (match.group(1) or "县").lower().rstrip("-")
    return _PREFIX[prefix], int(match.group(2))


def task_label(annex: str | Annex, number: int, language: str = "zh") -> str:
    """The short label people use: 县22, 市3 (C22, M3 in English)."""
    return f"{_LABEL.get(language, _LABEL['zh'])[Annex(annex)]}{number}"
