"""Annex 3 (the matrix) reconciled against annexes 1–2."""

from __future__ import annotations

import pytest

from core.config import BUNDLED_PLAN, Settings, UnitSettings, load_notice_units
from core.plan_parser import Annex, Role, parse_plan
from core.reconcile import DisagreementKind, Reconciliation, reconcile
from core.units import UnitDirectory


@pytest.fixture
def bundled_units() -> UnitSettings:
    units = load_notice_units(BUNDLED_PLAN)
    assert units is not None
    return units


@pytest.fixture
def rec(bundled_text: str, settings: Settings) -> Reconciliation:
    directory = settings.unit_directory(BUNDLED_PLAN)
    return reconcile(parse_plan(bundled_text, directory), directory)


def placed_columns(rec: Reconciliation, unit: str) -> list[tuple[Annex, Role]]:
    return list(next(p for p in rec.placed if p.row.unit == unit).columns)


def find(rec: Reconciliation, kind: DisagreementKind) -> set[tuple[str, str | None, int | None]]:
    return {(d.unit, d.annex.value if d.annex else None, d.task) for d in rec.disagreements if d.kind is kind}


def test_collapsed_cells_are_placed_in_the_column_the_annexes_support(rec: Reconciliation) -> None:
    # 县委组织部 | 22、26 ||| : the numbers are its city responsibilities
    assert placed_columns(rec, "县委组织部") == [(Annex.CITY, Role.RESPONSIBLE)]
    # 嘉鱼供电公司 | 14、25 | 2 | 4 |  : county responsible, city lead, city responsible
    assert placed_columns(rec, "县供电公司") == [
        (Annex.COUNTY, Role.RESPONSIBLE),
        (Annex.CITY, Role.LEAD),
        (Annex.CITY, Role.RESPONSIBLE),
    ]
    # towns lead nothing: county responsible, city responsible
    assert placed_columns(rec, "陆溪镇人民政府") == [(Annex.COUNTY, Role.RESPONSIBLE), (Annex.CITY, Role.RESPONSIBLE)]


def test_full_rows_keep_their_four_columns(rec: Reconciliation) -> None:
    placed = next(p for p in rec.placed if p.row.unit == "县发改局")
    assert not placed.guessed
    assert len(placed.columns) == 4


def test_lead_missing_from_the_matrix_is_reported(rec: Reconciliation) -> None:
    # Annex 1 task 55 is led by 县交通局; the matrix's 县交通运输局 row leads 31, 34, 53 only.
    assert ("县交通局", "county", 55) in find(rec, DisagreementKind.MISSING_IN_MATRIX)


def test_unit_only_the_matrix_assigns_is_reported(rec: Reconciliation) -> None:
    assert ("县文旅发展集团", "county", 14) in find(rec, DisagreementKind.MISSING_IN_ANNEX)


def test_role_mismatch_is_reported(rec: Reconciliation) -> None:
    assert find(rec, DisagreementKind.ROLE_MISMATCH) == {("县科经局", "county", 21)}


def test_units_the_matrix_has_no_row_for_are_reported(rec: Reconciliation) -> None:
    assert {u for u, _, _ in find(rec, DisagreementKind.NOT_IN_MATRIX)} == {
        "县委宣传部",
        "县楚天视讯公司",
        "县融媒体中心",
    }


def test_town_missing_from_a_group_in_the_matrix_is_reported(rec: Reconciliation) -> None:
    assert ("簰洲湾镇人民政府", "county", 22) in find(rec, DisagreementKind.GROUP_DIFFERS)


def test_other_spellings_are_unknown_names_until_aliased(bundled_text: str, bundled_units: UnitSettings) -> None:
    directory = UnitDirectory(groups=dict(bundled_units.groups))
    bare = reconcile(parse_plan(bundled_text, directory), directory)
    unknown = {u for u, _, _ in find(bare, DisagreementKind.UNKNOWN_NAME)}
    assert {"县交通运输局", "县应急管理局", "嘉鱼供电公司", "县银监办", "县政务服务和大数据管理局"} <= unknown


def test_configured_aliases_leave_no_unknown_names(rec: Reconciliation) -> None:
    assert find(rec, DisagreementKind.UNKNOWN_NAME) == set()


def test_group_expansions_are_learned_from_the_matrix(bundled_text: str, bundled_units: UnitSettings) -> None:
    directory = UnitDirectory(aliases=dict(bundled_units.aliases))
    learned = reconcile(parse_plan(bundled_text, directory), directory).learned_groups
    assert sorted(learned["各镇人民政府"]) == sorted(bundled_units.groups["各镇人民政府"])
    assert sorted(learned["县政府各部门"]) == sorted(bundled_units.groups["县政府各部门"])
    assert "县审计局" in learned["县政府各部门"]


def test_disagreements_are_grouped_and_counted(rec: Reconciliation) -> None:
    counts = rec.counts()
    grouped = rec.grouped()
    assert sum(counts.values()) == len(rec.disagreements)
    assert all(len(grouped[kind]) == count for kind, count in counts.items())
