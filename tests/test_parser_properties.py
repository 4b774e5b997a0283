"""Mutated notices never crash the importer: it either imports or reports a located error."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.clock import ManualClock
from core.config import BUNDLED_PLAN, load_settings
from core.plan_import import ImportRefused, import_plan
from core.plan_parser import Severity, parse_plan
from core.runtime import open_runtime
from storage.db import upgrade
from storage.models import Task
from tests.conftest import local
from tests.mutations import mutate

TEXT = BUNDLED_PLAN.read_text(encoding="utf-8")
LINES = TEXT.splitlines()
SETTINGS = load_settings(environ={})
DIRECTORY = SETTINGS.unit_directory(BUNDLED_PLAN)
FRAGMENTS = [
    "(",
    ")",
    "(",
    ")",
    ":",
    ";",
    ",",
    "、",
    "牵头单位:",
    "责任单位:",
    "配合单位:",
    "附件",
    "附件3",
    "|",
    "1.",
    "12.",
    "一、",
    "(一)",
    "各镇人民政府",
    "县直各单位",
    "\n",
    " ",
    "镇",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = list(LINES[draw(st.integers(0, 20)) : draw(st.integers(100, len(LINES)))])
    actions = ("insert", "delete_chars", "drop_line", "duplicate_line", "swap", "truncate")
    return mutate(draw, lines, FRAGMENTS, rounds=6, actions=actions)


@hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_notice_parses_or_reports_located_errors(text: str) -> None:
    result = parse_plan(text, DIRECTORY)
    line_count = len(text.splitlines())
    for problem in result.problems:
        assert 0 <= problem.line <= line_count
        assert problem.reason
    if not result.errors:
        assert result.tasks
        keys = [t.key for t in result.tasks]
        assert len(keys) == len(set(keys))
        assert all(t.lead or t.responsible or t.groups for t in result.tasks)
        assert all(not set(t.lead) & set(t.responsible) for t in result.tasks)


@hyp_settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    result = parse_plan(text, DIRECTORY)
    assert result.tasks or result.errors


# Each example imports a whole notice (~0.8 s); the parser itself gets 300 examples above.
@hyp_settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(mutated())
def test_mutated_notice_imports_wholly_or_not_at_all(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    directory: Path = tmp_path_factory.mktemp("db")
    settings = load_settings(environ={"DUBAN_DATABASE_URL": f"sqlite:///{directory / 'p.sqlite3'}"})
    runtime = open_runtime(settings, clock=ManualClock(local(2024, 3, 1)))
    try:
        upgrade(runtime.engine)
        try:
            with runtime.transaction() as session:
                result = import_plan(
                    session,
                    settings,
                    text,
                    source_name="m.txt",
                    jurisdiction_name="嘉鱼县",
                    now=runtime.clock.now(),
                    directory=DIRECTORY,
                )
            imported = True
        except ImportRefused as refused:
            assert refused.problems and all(p.severity is Severity.ERROR for p in refused.problems)
            imported = False
        with runtime.transaction() as session:
            stored = session.scalar(select(func.count()).select_from(Task)) or 0
        assert stored == (len(result.parsed.tasks) if imported else 0)
    finally:
        runtime.close()
