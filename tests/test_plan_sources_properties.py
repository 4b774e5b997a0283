"""Any damaged plan file gets a refusal or a parse, never a crash."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.plan_document import parse_document
from core.plan_sources import SourceRefused, read_source
from core.units import UnitDirectory
from tests.plan_files import DISTRICT_TABLE, district_docx, workbook_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@cache
def originals() -> dict[str, bytes]:
    return {
        "notice.docx": district_docx(),
        "ledger.xlsx": workbook_bytes([("附件1", [row[:4] for row in DISTRICT_TABLE])]),
        "notice.pdf": (FIXTURES / "district-notice.pdf").read_bytes(),
        "notice.txt": "\n".join(" ".join(row) for row in DISTRICT_TABLE).encode("gbk"),
    }


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(originals())))
    data = bytearray(originals()[name])
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return name, bytes(data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_files_are_refused_or_read_never_crash(case: tuple[str, bytes]) -> None:
    name, data = case
    try:
        document = read_source(data, name, max_bytes=10 * 1024 * 1024, soffice="")
        parse_document(document, UnitDirectory())
    except SourceRefused as refused:
        assert name in refused.message
