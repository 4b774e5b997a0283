"""Mutated notices of the corpus never crash the parser, and feeding a notice in pieces reads it the same."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from core.plan_parser import PlanReader, parse_plan
from core.units import UnitDirectory
from tests.mutations import mutate

CORPUS = Path(__file__).resolve().parent / "corpus"
NOTICES = {path.name: path.read_text(encoding="utf-8").splitlines() for path in sorted(CORPUS.glob("*.txt"))}
FRAGMENTS = [
    "(", ")", "（", "）", ":", "：", ";", "，", "、", "等", "牵头", "牵头单位：", "责任单位：", "配合单位:",
    "按职责分工负责", "完成时限：", "附件", "附件2", "|", "1.", "（十七）", "一、", "(1)", "各镇人民政府",
    "区直各有关单位", "排在第一位的为牵头单位", "2023年底前", "6月底前", "\n", " ", "　",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = list(NOTICES[draw(st.sampled_from(sorted(NOTICES)))])
    actions = ("insert", "delete_chars", "drop_line", "duplicate_line", "swap", "split")
    return mutate(draw, lines, FRAGMENTS, rounds=8, actions=actions)


# Derandomized (tests/conftest.py): the same 150 mutations every run; the bundled notice gets 300 more.
@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_corpus_notice_never_crashes_and_stays_consistent(text: str) -> None:
    plan = parse_plan(text, UnitDirectory())
    line_count = len(text.splitlines())
    for problem in [*plan.problems, *plan.unparsed]:
        assert 0 <= problem.line <= line_count
        assert problem.reason
    keys = [t.key for t in plan.tasks]
    assert len(keys) == len(set(keys))
    for task in plan.tasks:
        assert task.lead or task.responsible or task.groups
        assert not set(task.lead) & set(task.responsible)
        assert task.text
        assert 1 <= task.span[0] <= task.span[1] <= line_count
    assert plan.tasks or plan.errors


@hyp_settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(NOTICES)), st.lists(st.integers(1, 12), min_size=1, max_size=10))
def test_feeding_a_notice_in_pieces_reads_it_the_same(name: str, sizes: list[int]) -> None:
    lines = NOTICES[name]
    reader = PlanReader(UnitDirectory())
    start = 0
    for size in sizes * (len(lines) // sum(sizes) + 1):
        if start >= len(lines):
            break
        reader.feed_lines(lines[start : start + size], first_line=start + 1)
        start += size
    pieces = reader.finish()
    whole = parse_plan("\n".join(lines), UnitDirectory())
    assert [(t.key, t.text, t.lead, t.responsible, t.groups, t.span) for t in pieces.tasks] == [
        (t.key, t.text, t.lead, t.responsible, t.groups, t.span) for t in whole.tasks
    ]
