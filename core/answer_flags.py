"""Flags on a unit's answer that a 督查室 reads for: 空泛 (says nothing) and 雷同 (copied from last round).

Neither flag punishes anything; the office sees them beside the answer and in
the 通报's 口径说明, and decides.

- 空泛: the note has no figure, no date and no concrete fact: after removing
  the stock phrases of the genre (按计划推进, 稳步推进, 进展顺利 …) and
  punctuation, fewer than :data:`MIN_FACT_CHARS` characters are left, and it
  has no digit.
- 雷同: the note is (nearly) the same as the same unit's note on the same task
  in the previous round: :func:`similarity` is difflib's ``SequenceMatcher``
  ratio (Ratcliff/Obershelp: twice the matched characters over the total) on
  the two notes with spaces and punctuation removed, at or above
  :data:`COPY_THRESHOLD`.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

MIN_FACT_CHARS = 6
COPY_THRESHOLD = 0.9

_STOCK_PHRASES = re.compile(
    "|".join(
        (
            "按计划推进",
            "按照计划推进",
            "按序时推进",
            "正在推进",
            "正常推进",
            "有序推进",
            "稳步推进",
            "扎实推进",
            "积极推进",
            "持续推进",
            "加快推进",
            "全力推进",
            "进展顺利",
            "进展良好",
            "推进顺利",
            "正在进行中",
            "正在进行",
            "进行中",
            "已完成",
            "正在落实",
            "抓紧落实",
            "认真落实",
            "工作",
            "目前",
            "相关",
            "各项",
            "有关",
            "中",
        )
    )
)
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)
# A figure or a month ("三月") makes a note concrete.
_CONCRETE = re.compile(r"\d|[一二三四五六七八九十]+月")


def _normalised(note: str) -> str:
    return _NOISE.sub("", note)


def is_vague(note: str) -> bool:
    """True when the note states no figure, date or concrete fact (空泛)."""
    text = _normalised(note)
    if _CONCRETE.search(text):
        return False
    return len(_STOCK_PHRASES.sub("", text)) < MIN_FACT_CHARS


def similarity(a: str, b: str) -> float:
    """difflib's ratio of the two notes without spaces and punctuation (1.0 = identical)."""
    left, right = _normalised(a), _normalised(b)
    if not left or not right:
        return 0.0
    return SequenceMatcher(None, left, right, autojunk=False).ratio()


def is_copy(note: str, previous: str | None) -> bool:
    """True when ``note`` repeats ``previous`` (the same unit, task, last round) word for word or nearly (雷同)."""
    return previous is not None and similarity(note, previous) >= COPY_THRESHOLD
