"""Reconcile the unit-by-unit matrix (Annex 3) against the task annexes (1–2).

The matrix's text has lost its empty cells, so a row like ``县委组织部 | 22、26 |||``
does not say which of the four columns (county lead, county responsible, city
lead, city responsible) ``22、26`` belongs to.  Cells keep their order, so we
place them by trying every order-preserving assignment of cells to columns and
keeping the one that agrees best with the task annexes.

With the columns known, every disagreement is listed: a unit assigned in one
place and not the other, a role mismatch, a name that matches no known unit.
The matrix also tells what each group phrase (县政府各部门 …) stood for in each
task, which is how the bundled configuration's group table was filled in.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

from core.plan_parser import Annex, MatrixRow, ParsedPlan, Role
from core.units import UnitDirectory, UnitKind, is_group_phrase

Column = tuple[Annex, Role]
COLUMNS: tuple[Column, ...] = (
    (Annex.COUNTY, Role.LEAD),
    (Annex.COUNTY, Role.RESPONSIBLE),
    (Annex.CITY, Role.LEAD),
    (Annex.CITY, Role.RESPONSIBLE),
)


class DisagreementKind(StrEnum):
    MISSING_IN_MATRIX = "missing_in_matrix"
    MISSING_IN_ANNEX = "missing_in_annex"
    ROLE_MISMATCH = "role_mismatch"
    UNKNOWN_NAME = "unknown_name"
    NOT_IN_MATRIX = "unit_not_in_matrix"
    UNRESOLVED_GROUP = "unresolved_group"
    GROUP_DIFFERS = "group_differs"
    BAD_NUMBER = "bad_task_number"


KIND_TITLES: dict[DisagreementKind, str] = {
    DisagreementKind.MISSING_IN_MATRIX: "附件1–2有分工、明细表未列",
    DisagreementKind.MISSING_IN_ANNEX: "明细表有分工、附件1–2未列",
    DisagreementKind.ROLE_MISMATCH: "牵头/责任角色不一致",
    DisagreementKind.UNKNOWN_NAME: "明细表中的单位名称无法对应已知单位",
    DisagreementKind.NOT_IN_MATRIX: "附件1–2中的单位在明细表中没有行",
    DisagreementKind.UNRESOLVED_GROUP: "群体称谓未配置展开",
    DisagreementKind.GROUP_DIFFERS: "群体称谓展开与明细表不一致",
    DisagreementKind.BAD_NUMBER: "明细表序号超出附件任务范围",
}


@dataclass(frozen=True)
class Disagreement:
    kind: DisagreementKind
    unit: str
    annex: Annex | None = None
    task: int | None = None
    detail: str = ""
    line: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "unit": self.unit,
            "annex": self.annex.value if self.annex else None,
            "task": self.task,
            "detail": self.detail,
            "line": self.line,
        }


@dataclass
class PlacedRow:
    row: MatrixRow
    columns: tuple[Column, ...]
    guessed: bool


@dataclass
class Reconciliation:
    disagreements: list[Disagreement] = field(default_factory=list)
    placed: list[PlacedRow] = field(default_factory=list)
    # group phrase -> units the matrix assigns in its place, over all its uses
    learned_groups: dict[str, list[str]] = field(default_factory=dict)

    def counts(self) -> Counter[DisagreementKind]:
        return Counter(d.kind for d in self.disagreements)

    def grouped(self) -> dict[DisagreementKind, list[Disagreement]]:
        groups: dict[DisagreementKind, list[Disagreement]] = defaultdict(list)
        for item in self.disagreements:
            groups[item.kind].append(item)
        return {kind: groups[kind] for kind in DisagreementKind if kind in groups}


Key = tuple[Annex, int]


def _annex_view(plan: ParsedPlan) -> tuple[dict[str, dict[Column, set[int]]], dict[Column, set[int]]]:
    """Per unit, the task numbers per column that the task annexes give it
    (``explicit``); and per column the tasks whose list has a group phrase."""
    explicit: dict[str, dict[Column, set[int]]] = defaultdict(lambda: defaultdict(set))
    grouped: dict[Column, set[int]] = defaultdict(set)
    for task in plan.tasks:
        for role, resolved in task.raw_names:
            column = (task.annex, role)
            if resolved.group is not None:
                grouped[column].add(task.number)
                continue
            for unit in resolved.units:
                final_role = Role.LEAD if unit in task.lead else role
                explicit[unit][(task.annex, final_role)].add(task.number)
    return explicit, grouped


def label_columns(labels: list[str]) -> tuple[Column, ...] | None:
    """The (annex, role) of each column of a matrix read as a real table, from its header labels.

    A label is the column's header texts top to bottom joined by '/'
    (``县《政府工作报告》责任分解序号/牵头事项``): the bottom text says the role,
    the whole label the annex (县《…》 / 市《…》); with no annex word, the n-th
    column of a role belongs to the n-th annex.  None when a label says no role.
    """
    columns: list[Column] = []
    seen: Counter[Role] = Counter()
    for label in labels:
        bottom = label.split("/")[-1]
        if "牵头" in bottom:
            role = Role.LEAD
        elif any(word in bottom for word in ("责任", "配合", "参与", "协办", "承担")):
            role = Role.RESPONSIBLE
        else:
            return None
        if re.search(r"[市省]\s*《", label) or "涉及" in label:
            annex = Annex.CITY
        elif re.search(r"[县区]\s*《", label):
            annex = Annex.COUNTY
        elif seen[role] < len(Annex):
            annex = list(Annex)[seen[role]]
        else:
            return None
        seen[role] += 1
        columns.append((annex, role))
    return tuple(columns)


def place_row(
    row: MatrixRow,
    explicit: dict[Column, set[int]],
    grouped: dict[Column, set[int]],
    limits: dict[Annex, int],
) -> tuple[tuple[Column, ...], bool]:
    """Choose the columns of a row's cells; ``guessed`` when cells were missing."""
    if row.labels is not None:
        exact = label_columns(row.labels)
        if exact is not None:
            return exact, False
    count = len(row.cells)
    if count == 0:
        return (), False
    if count >= len(COLUMNS):
        return COLUMNS[: len(row.cells)], False
    best: tuple[float, tuple[Column, ...]] | None = None
    for positions in itertools.combinations(range(len(COLUMNS)), count):
        columns = tuple(COLUMNS[p] for p in positions)
        score = 0.0
        for cell, column in zip(row.cells, columns, strict=True):
            numbers = set(cell)
            if any(n > limits.get(column[0], 0) for n in numbers):
                score -= 1000  # a city column cannot hold task 71
            score += 2 * len(numbers & explicit.get(column, set()))
            score += len(numbers & grouped.get(column, set()))
        # itertools yields leftmost placements first; keep the first best.
        if best is None or score > best[0]:
            best = (score, columns)
    assert best is not None
    return best[1], True


def reconcile(plan: ParsedPlan, directory: UnitDirectory) -> Reconciliation:
    """Compare the matrix with the task annexes and list every disagreement."""
    result = Reconciliation()
    explicit, grouped = _annex_view(plan)
    limits = {annex: max((t.number for t in plan.tasks_in(annex)), default=0) for annex in Annex}
    annex_units = {unit for task in plan.tasks for unit, _ in task.units()}
    matrix_units: set[str] = set()

    # matrix: (annex, number) -> {unit: role}
    matrix_assignments: dict[Key, dict[str, Role]] = defaultdict(dict)
    for row in plan.matrix:
        if is_group_phrase(row.unit):
            continue
        columns, guessed = place_row(row, explicit.get(row.unit, {}), grouped, limits)
        result.placed.append(PlacedRow(row=row, columns=columns, guessed=guessed))
        matrix_units.add(row.unit)
        known = row.unit in annex_units or row.unit in directory.kinds
        if not known:
            result.disagreements.append(
                Disagreement(
                    DisagreementKind.UNKNOWN_NAME,
                    row.unit,
                    detail=f"明细表写作“{row.raw_name}”;请在 [units.aliases] 中指明它是哪个单位",
                    line=row.line,
                )
            )
        for cell, (annex, role) in zip(row.cells, columns, strict=False):
            for number in cell:
                if number > limits.get(annex, 0) or number < 1:
                    result.disagreements.append(
                        Disagreement(DisagreementKind.BAD_NUMBER, row.unit, annex, number, line=row.line)
                    )
                    continue
                previous = matrix_assignments[(annex, number)].get(row.unit)
                if previous is None or role is Role.LEAD:
                    matrix_assignments[(annex, number)][row.unit] = role

    for unit in sorted(annex_units - matrix_units):
        result.disagreements.append(
            Disagreement(DisagreementKind.NOT_IN_MATRIX, unit, detail="附件1–2中出现,明细表没有此单位的行")
        )

    learned: dict[str, dict[str, None]] = defaultdict(dict)
    for task in plan.tasks:
        in_matrix = matrix_assignments.get(task.key, {})
        named_directly = {u for _, r in task.raw_names if r.group is None for u in r.units}
        for _role, phrase in task.unresolved_groups:
            result.disagreements.append(
                Disagreement(
                    DisagreementKind.UNRESOLVED_GROUP,
                    phrase,
                    task.annex,
                    task.number,
                    detail="请在 [units.groups] 中配置它包含哪些单位",
                    line=task.line,
                )
            )
        # What the matrix says each group phrase stood for in this task.
        phrases = {r.group for _, r in task.raw_names if r.group is not None}
        extra_in_matrix = {
            u for u, matrix_role in in_matrix.items() if u not in named_directly and matrix_role is Role.RESPONSIBLE
        }
        town_phrases = [p for p in phrases if "镇" in p or "乡" in p]
        other_phrases = [p for p in phrases if p not in town_phrases]
        for unit in sorted(extra_in_matrix):
            is_town = directory.kind_of(unit) is UnitKind.TOWN
            for phrase in town_phrases if is_town else other_phrases:
                learned[phrase][unit] = None

        for unit, role in task.units():
            matrix_role = in_matrix.get(unit)
            if unit not in matrix_units:
                continue  # already reported once as NOT_IN_MATRIX
            via = task.via_group.get(unit)
            if matrix_role is None:
                detail = f"经“{via}”展开" if via else "直接列出"
                kind = DisagreementKind.GROUP_DIFFERS if via else DisagreementKind.MISSING_IN_MATRIX
                result.disagreements.append(
                    Disagreement(kind, unit, task.annex, task.number, f"{role.value}; {detail}", task.line)
                )
            elif matrix_role is not role:
                result.disagreements.append(
                    Disagreement(
                        DisagreementKind.ROLE_MISMATCH,
                        unit,
                        task.annex,
                        task.number,
                        f"附件为{role.value},明细表为{matrix_role.value}",
                        task.line,
                    )
                )
        assigned = {u for u, _ in task.units()}
        for unit, matrix_role in sorted(in_matrix.items()):
            if unit in assigned:
                continue
            line = next((p.row.line for p in result.placed if p.row.unit == unit), None)
            result.disagreements.append(
                Disagreement(
                    DisagreementKind.MISSING_IN_ANNEX,
                    unit,
                    task.annex,
                    task.number,
                    f"明细表为{matrix_role.value}"
                    + (f";附件中有群体称谓 {'、'.join(sorted(phrases))}" if phrases else ""),
                    line,
                )
            )
    result.learned_groups = {phrase: list(units) for phrase, units in learned.items()}
    return result
