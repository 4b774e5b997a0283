"""Quantitative targets (硬账) read from a task's text, and progress values checked against them.

A task of this genre usually carries numbers: ``地区生产总值增长6.5%``,
``城镇新增就业5300人``, ``改造城镇老旧小区434个,农村危房改造开工399户``,
``建设高标准农田14.33万亩``.  :func:`extract_targets` finds each one with its
metric phrase, value, unit of measure as written and kind:

- ``amount``: a count or amount to reach (``434个``, ``14.33万亩``, ``100亿元``);
- ``growth``: a growth rate (``增长6.5%``, ``提高2%``);
- ``level``: a share or level to reach or hold (``达到95%以上``, ``稳定在65家以上``,
  ``42.9万亩…不减少``);
- ``ceiling``: a level not to exceed (``控制在…以内``, ``下降3%``).

Numbers that are not targets are left alone: years and dates (``2024年``,
``6月底前``), names and codes (``G351``, ``5G``, ``“5011”``), durations
(``15分钟``), ordinals (``第二轮``).  Qualitative tasks
(``与经济增长基本同步``) have none.

:func:`parse_value` reads what a unit reports against a target (``220``,
``2.1万``, ``21000亩``, ``3.5%``) into the target's own unit, or says in
Chinese why it cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class TargetKind(StrEnum):
    """What sort of number a target is; decides how progress is measured."""

    AMOUNT = "amount"
    GROWTH = "growth"
    LEVEL = "level"
    CEILING = "ceiling"


KIND_LABELS = {
    TargetKind.AMOUNT: "总量",
    TargetKind.GROWTH: "增速",
    TargetKind.LEVEL: "水平",
    TargetKind.CEILING: "上限",
}

_MULTIPLIERS = {"万": 10_000.0, "亿": 100_000_000.0, "千": 1_000.0, "百": 100.0}
# Measure words of the genre, longest first so 人次 wins over 人 and 公里 over 里.
MEASURES = sorted(
    [
        "微克/立方米",
        "个百分点",
        "人次",
        "公里",
        "千米",
        "平方米",
        "平方公里",
        "立方米",
        "千瓦",
        "兆瓦",
        "万千瓦",
        "吨",
        "斤",
        "亩",
        "元",
        "个",
        "家",
        "人",
        "户",
        "套",
        "张",
        "间",
        "座",
        "所",
        "条",
        "项",
        "栋",
        "件",
        "名",
        "台",
        "辆",
        "处",
        "宗",
        "头",
        "床",
        "艘",
        "只",
        "株",
        "棵",
        "支",
        "批",
        "场",
        "次",
        "部",
        "类",
        "片",
        "基",
        "口",
        "孔",
        "米",
        "辆次",
        "标准箱",
        "%",
    ],
    key=len,
    reverse=True,
)
_NUMBER = re.compile(
    r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>(?:[万亿千百](?=[^\d]))?(?:" + "|".join(map(re.escape, MEASURES)) + "))"
)
# A digit run glued to a letter or inside a code is a name (G351, 5G), not a quantity.
_CODE_NEIGHBOUR = re.compile(r"[A-Za-z\-·]")
_CLAUSE = re.compile(r"[,，;；。!！?？\n]")
_QUOTED = re.compile(r"[“\"「『][^”\"」』]*[”\"」』]")
_FILLER = re.compile(r"^(?:力争|确保|全年|全县|全市|全区|累计|计划|争取|年内|努力|其中|实现|全面|持续|在城区|大力)+")
_HELD = re.compile(r"(?:不减少|不降低|不下降)$")  # 耕地42.9万亩、永久基本农田38.4万亩不减少
_TAIL_WORDS = re.compile(r"^(?:以上|左右|以内|以下|及以上|不减少|不降低|不下降)")
_GROWTH_BEFORE = re.compile(r"(?:增长|提高|提升|增加|增幅)(?:达到)?$")
_LEVEL_BEFORE = re.compile(r"(?:达到|保持在|稳定在|不低于|提高至|提高到|提升至|提升到|高于|保持)$")
_CEILING_BEFORE = re.compile(
    r"(?:控制在|不超过|不高于|(?<!不)低于|(?<!不)下降|(?<!不)降低|(?<!不)减少|压减|压降)(?:到|至)?$"
)
_REACH_WORDS = re.compile(r"(?:达到|保持在|稳定在|不低于)$")
_KIND_WORDS = re.compile(
    r"(?:增长|提高至|提高到|提升至|提升到|提高|提升|增加|增幅|达到|保持在|稳定在|不低于|控制在|不超过|不高于|下降|降低|压减|压降)$"
)


@dataclass(frozen=True)
class Target:
    """One number a task commits to.

    ``value`` is in ``unit`` as written (14.33 with ``万亩``); ``base_value``
    and ``base_unit`` are the same amount without the multiplier (143300 ``亩``),
    so reports in either form compare.
    """

    metric: str
    value: float
    unit: str
    kind: TargetKind
    phrase: str

    @property
    def scale(self) -> float:
        return _scale_of(self.unit)

    @property
    def base_unit(self) -> str:
        return _base_of(self.unit)

    @property
    def base_value(self) -> float:
        return self.value * self.scale

    @property
    def label(self) -> str:
        """How the target reads in a message: ``改造城镇老旧小区 434个``."""
        return f"{self.metric} {format_number(self.value)}{self.unit}"


def _scale_of(unit: str) -> float:
    if len(unit) > 1 and unit[0] in _MULTIPLIERS and unit[1:] in MEASURES:
        return _MULTIPLIERS[unit[0]]
    return 1.0


def _base_of(unit: str) -> str:
    return unit[1:] if _scale_of(unit) != 1.0 else unit


def format_number(value: float) -> str:
    """``434`` for whole numbers, ``14.33`` otherwise; no trailing zeros."""
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _masked(text: str) -> str:
    """The text with quoted names (“5011”, “21161”) blanked, same length, so offsets still hold."""
    return _QUOTED.sub(lambda m: m.group(0)[0] + "□" * (len(m.group(0)) - 2) + m.group(0)[-1], text)


def _is_quantity(clause: str, start: int, end: int) -> bool:
    before = clause[start - 1] if start else ""
    after = clause[end] if end < len(clause) else ""
    if before and (_CODE_NEIGHBOUR.match(before) or before.isdigit()):
        return False
    return not (after and _CODE_NEIGHBOUR.match(after))


def _kind(before: str, unit: str, tail: str, clause_tail: str) -> TargetKind:
    percent = unit in ("%", "个百分点")
    if tail.startswith(("以内", "以下")) or _CEILING_BEFORE.search(before):
        return TargetKind.CEILING
    if percent and re.search(r"(?:提高至|提高到|提升至|提升到)$", before):
        return TargetKind.LEVEL
    if percent and _GROWTH_BEFORE.search(before):
        return TargetKind.GROWTH
    if _HELD.search(clause_tail.rstrip()):
        return TargetKind.LEVEL
    if percent or re.search(r"(?:保持在|稳定在|不低于|保持)$", before):
        return TargetKind.LEVEL
    return TargetKind.AMOUNT


_VERBS = (
    "新建改建|改造提升|改造建设|科学编制|新建|改建|改造|打造|建设|建成运营|建成|创建|争创|新增|引进|招引|完成|"
    "实施|培育|认定|推进|拓展|建立|发放|吸引|编制|培养|组建|聚力"
)


def _metric(before: str, after: str, kind: TargetKind) -> str:
    before = _FILLER.sub("", before.strip("、 ")).strip()
    # 增长6.5% reads as 地区生产总值 + kind; a count "to reach" (达到1件) likewise.
    before = (_KIND_WORDS if kind is not TargetKind.AMOUNT else _REACH_WORDS).sub("", before)
    before = before.rstrip("的 ")
    after = after.strip("、 ")
    if "的" in after:
        after = after.rsplit("的", 1)[1]
    if not after:
        return before
    # A number followed by its noun (打造3条…街道): keep the verb before it, then the noun.
    if "、" in before or len(before) > 8:
        verb = re.search(f"(?:{_VERBS})$", before) or re.search(_VERBS, before)
        before = verb.group(0) if verb else ""
    return (before + after).strip()


def extract_targets(text: str) -> list[Target]:
    """Every quantitative target in a task's text, in the order written."""
    targets: list[Target] = []
    masked = _masked(text)
    position = 0
    for piece in _CLAUSE.split(masked):
        clause = text[position : position + len(piece)]
        position += len(piece) + 1
        matches = [m for m in _NUMBER.finditer(piece) if _is_quantity(piece, m.start(), m.end())]
        previous_end = 0
        for index, match in enumerate(matches):
            next_start = matches[index + 1].start() if index + 1 < len(matches) else len(piece)
            before = clause[previous_end : match.start()]
            rest = clause[match.end() : next_start]
            tail = _TAIL_WORDS.match(rest)
            tail_text = tail.group(0) if tail else ""
            after = rest[len(tail_text) :]
            # A 、 right after a target starts the next one (绿色工厂3家、省级绿色工厂50家).
            after_own = after.split("、", 1)[0] if index + 1 < len(matches) else after
            unit = match["unit"]
            value = float(match["value"])
            kind = _kind(before.rstrip(), unit, tail_text, clause[match.end() :].lstrip("、"))
            metric = _metric(before, _TAIL_WORDS.sub("", after_own) if after_own else "", kind)
            if not metric:
                metric = clause[: match.start()].strip() or clause
            targets.append(
                Target(
                    metric=metric[:40],
                    value=value,
                    unit=unit,
                    kind=kind,
                    phrase=clause[match.start() : match.end() + len(tail_text)],
                )
            )
            # The noun after a number is that target's (27个片区137个…): the next one starts after it.
            previous_end = match.end() + len(tail_text) + len(after_own)
            if clause[previous_end:next_start].startswith("、"):
                previous_end += 1
    return targets


class ValueRefused(ValueError):
    """A reported value that cannot be read against its target; the message is Chinese."""


_REPORTED = re.compile(r"^(?P<value>-?\d+(?:\.\d+)?)\s*(?P<unit>\S*)$")


def parse_value(text: str, target: Target) -> float:
    """A reported value in the target's own unit: ``2.1万`` or ``21000亩`` for a ``万亩`` target is 2.1.

    For a growth rate the value is the cumulative growth so far, in percent.
    Raises :class:`ValueRefused` naming what is wrong.
    """
    written = text.strip().replace(",", "").replace("，", "")
    match = _REPORTED.match(written)
    if match is None:
        raise ValueRefused(f"“{text}”不是数字,请填写{target.metric}的数值(单位:{target.unit})")
    value = float(match["value"])
    unit = match["unit"]
    if unit in ("", target.unit):
        reported = value
    elif unit in _MULTIPLIERS:  # 2.1万 for a 万亩 target
        reported = value * _MULTIPLIERS[unit] / target.scale
    elif _base_of(unit) == target.base_unit or unit == target.base_unit:
        reported = value * _scale_of(unit) / target.scale
    else:
        raise ValueRefused(f"单位“{unit}”与目标单位“{target.unit}”不一致:{target.label}")
    if reported < 0 and target.kind is not TargetKind.GROWTH:
        raise ValueRefused(f"数值不能为负:{text}")
    ceiling = max(abs(target.value) * 100, 1000.0) if target.unit != "%" else 1000.0
    if abs(reported) > ceiling:
        raise ValueRefused(f"数值 {text} 超出合理范围(目标 {format_number(target.value)}{target.unit})")
    return reported
