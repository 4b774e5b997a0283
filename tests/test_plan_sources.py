"""Plan files read into blocks: Word, Excel, PDF, text in any common encoding; bad files refused clearly."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from datetime import datetime
from pathlib import Path

import docx
import pytest
from msoffcrypto.format.ooxml import OOXMLFile
from openpyxl import Workbook
from pypdf import PdfWriter

from core.plan_sources import SourceRefused, TableBlock, TextBlock, chinese_numeral, read_source
from tests.plan_files import (
    add_list,
    add_table,
    district_docx,
    docx_bytes,
    merge_down,
    number_paragraph,
    workbook_bytes,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIMIT = 5 * 1024 * 1024


def read(data: bytes, name: str, **options: object) -> object:
    return read_source(data, name, max_bytes=LIMIT, **options)  # type: ignore[arg-type]


def refusal(data: bytes, name: str, **options: object) -> str:
    with pytest.raises(SourceRefused) as refused:
        read_source(data, name, max_bytes=options.pop("max_bytes", LIMIT), **options)  # type: ignore[arg-type]
    return refused.value.message


def encrypted(data: bytes) -> bytes:
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(data)).encrypt("secret", out)
    return out.getvalue()


# --- Word ------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_come_in_document_order() -> None:
    document = docx.Document()
    document.add_paragraph("通知标题")
    add_table(document, [["序号", "任务"], ["1", "甲"]])
    document.add_paragraph("附件2")
    doc = read_source(docx_bytes(document), "方案.docx", max_bytes=LIMIT)
    assert [type(b) for b in doc.blocks] == [TextBlock, TableBlock, TextBlock]
    assert [b.first_line for b in doc.blocks] == [1, 2, 4]
    assert doc.text().splitlines() == ["通知标题", "序号 | 任务", "1 | 甲", "附件2"]


def test_docx_merged_cells_are_filled_in_across_columns_and_down_rows() -> None:
    document = docx.Document()
    table = add_table(
        document,
        [
            ["序号", "任务", "责任单位", "责任单位"],
            ["序号", "任务", "牵头单位", "配合单位"],
            ["1", "甲", "区经发局", "区财政局"],
            ["2", "乙", "区民政局", ""],
        ],
    )
    merge_down(table, 0, 0, 1)
    merge_down(table, 3, 2, 3)
    (block,) = read_source(docx_bytes(document), "表.docx", max_bytes=LIMIT).tables()
    assert block.rows == [
        ["序号", "任务", "责任单位", "责任单位"],
        ["序号", "任务", "牵头单位", "配合单位"],
        ["1", "甲", "区经发局", "区财政局"],
        ["2", "乙", "区民政局", "区财政局"],
    ]


def test_docx_cell_with_several_paragraphs_keeps_each_as_a_line() -> None:
    document = docx.Document()
    table = add_table(document, [["责任单位"], ["区卫健局"]])
    table.cell(1, 0).add_paragraph("区住建局")
    (block,) = read_source(docx_bytes(document), "表.docx", max_bytes=LIMIT).tables()
    assert block.rows[1] == ["区卫健局\n区住建局"]


def test_docx_line_breaks_inside_a_paragraph_split_lines() -> None:
    document = docx.Document()
    document.add_paragraph("1.任务甲\n(牵头单位:区经发局)")
    (block,) = read_source(docx_bytes(document), "a.docx", max_bytes=LIMIT).blocks
    assert isinstance(block, TextBlock) and block.lines == ["1.任务甲", "(牵头单位:区经发局)"]


def test_corrupt_docx_is_refused_naming_the_file() -> None:
    data = district_docx()[:3000]
    assert "方案.docx" in refusal(data, "方案.docx") and "损坏" in refusal(data, "方案.docx")


def test_zip_without_a_document_is_refused_as_not_word() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "不是有效的Word" in refusal(buffer.getvalue(), "方案.docx")


def test_password_protected_docx_is_refused_as_such() -> None:
    message = refusal(encrypted(district_docx()), "方案.docx")
    assert "方案.docx" in message and "密码" in message


# --- Excel -----------------------------------------------------------------------


def test_xlsx_each_sheet_is_a_table_with_merged_ranges_filled() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "台账"
    sheet.append(["2025年重点任务台账"])
    sheet.merge_cells("A1:C1")
    sheet.append(["序号", "任务", "完成时限"])
    sheet.append([1, "甲", datetime(2025, 6, 30)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    doc = read_source(buffer.getvalue(), "台账.xlsx", max_bytes=LIMIT)
    (block,) = doc.tables()
    assert block.rows == [["2025年重点任务台账"] * 3, ["序号", "任务", "完成时限"], ["1", "甲", "2025年6月30日"]]
    assert block.where(2, 1) == "台账!B3"


def test_hidden_sheets_are_not_read() -> None:
    workbook = Workbook()
    workbook.active.append(["序号", "任务"])
    hidden = workbook.create_sheet("辅助")
    hidden.append(["x"])
    hidden.sheet_state = "hidden"
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert [b.sheet for b in read_source(buffer.getvalue(), "a.xlsx", max_bytes=LIMIT).tables()] == ["Sheet"]


def test_corrupt_xlsx_is_refused() -> None:
    data = workbook_bytes([("台账", [["序号", "任务"]])])
    message = refusal(data[: len(data) // 2], "台账.xlsx")
    assert "台账.xlsx" in message and "损坏" in message


def test_password_protected_xlsx_is_refused_as_such() -> None:
    message = refusal(encrypted(workbook_bytes([("台账", [["序号", "任务"]])])), "台账.xlsx")
    assert "台账.xlsx" in message and "密码" in message


# --- PDF -------------------------------------------------------------------------


def test_pdf_text_layer_and_ruled_table_are_read_in_order() -> None:
    doc = read_source((FIXTURES / "district-notice.pdf").read_bytes(), "通知.pdf", max_bytes=LIMIT)
    text, table = doc.blocks
    assert isinstance(text, TextBlock) and text.lines[0].startswith("江城区人民政府办公室关于印发")
    assert isinstance(table, TableBlock) and table.origin == "第1页 表1"
    # Merged header cells filled from the drawn boxes; lines wrapped inside a cell joined back.
    assert table.rows[1] == ["序号", "重点任务", "牵头单位", "配合单位", "完成时限"]
    assert table.rows[4][1:4] == [
        "社会消费品零售总额增长7%,新增限额以上商贸企业30家。",
        "区商务局",
        "区市场监管局、各街道办事处",
    ]
    assert table.rows[6][3] == "区卫健局\n区住建局"


def test_pdf_with_no_text_layer_is_refused_as_a_scan() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    message = refusal(buffer.getvalue(), "扫描件.pdf")
    assert "扫描件.pdf" in message and "没有文字层" in message and "OCR" in message


def test_corrupt_pdf_is_refused() -> None:
    message = refusal(b"%PDF-1.7\n" + bytes(range(256)) * 4, "坏.pdf")
    assert "坏.pdf" in message


# --- text ------------------------------------------------------------------------

NOTICE = "关于印发重点工作任务分解方案的通知\n1.城镇新增就业3000人。(牵头单位:区人社局)\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (NOTICE.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + NOTICE.encode("utf-8"), "utf-8-sig"),
        (NOTICE.encode("gbk"), "gb18030"),
        (NOTICE.encode("gb18030"), "gb18030"),
        (NOTICE.encode("utf-16"), "utf-16"),
    ],
    ids=["utf-8", "utf-8-bom", "gbk", "gb18030", "utf-16-bom"],
)
def test_text_encoding_is_detected(data: bytes, encoding: str) -> None:
    doc = read_source(data, "方案.txt", max_bytes=LIMIT)
    assert doc.encoding == encoding
    assert doc.text() == NOTICE.rstrip("\n")


def test_binary_file_renamed_txt_is_refused() -> None:
    message = refusal(bytes(range(256)) * 8, "方案.txt")
    assert "方案.txt" in message and "不是文本文件" in message


def test_word_file_renamed_txt_is_refused() -> None:
    assert "不是文本文件" in refusal(district_docx(), "方案.txt")


def test_undecodable_text_names_the_line() -> None:
    data = "第一行\n第二行\n".encode() + b"\x80\x80\xff\xfe\x81\n"
    message = refusal(data, "方案.txt")
    assert "第3行" in message and "编码" in message


# --- any format ------------------------------------------------------------------


def test_file_over_the_size_cap_is_refused() -> None:
    message = refusal(NOTICE.encode() * 100, "方案.txt", max_bytes=1024)
    assert "方案.txt" in message and "超过导入上限" in message


def test_empty_file_is_refused() -> None:
    assert "空" in refusal(b"", "方案.docx")


def test_unknown_file_type_is_refused() -> None:
    assert "不支持的文件类型" in refusal(b"GIF89a", "方案.gif")


def test_old_word_file_asks_for_docx_when_libreoffice_is_missing() -> None:
    message = refusal(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "方案.doc", soffice="")
    assert "方案.doc" in message and "LibreOffice" in message and ".docx" in message


def test_wps_file_asks_for_docx_when_libreoffice_is_missing() -> None:
    message = refusal(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "方案.wps", soffice="no-such-soffice")
    assert "另存为Word 文档(.docx)" in message


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_old_word_file_is_converted_with_libreoffice(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_paragraph("附件1")
    add_table(document, [["序号", "重点任务", "牵头单位"], ["1", "城镇新增就业3000人。", "区人社局"]])
    document.add_paragraph("")  # Word always ends a document with a paragraph
    source = tmp_path / "notice.docx"
    source.write_bytes(docx_bytes(document))
    profile = (tmp_path / "profile").as_uri()
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation={profile}",
            "--headless",
            "--convert-to",
            "doc",
            "--outdir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    doc = read_source((tmp_path / "notice.doc").read_bytes(), "通知.doc", max_bytes=LIMIT)
    assert doc.format == "doc"
    assert [b.rows for b in doc.tables()] == [
        [["序号", "重点任务", "牵头单位"], ["1", "城镇新增就业3000人。", "区人社局"]]
    ]


def test_word_automatic_list_numbers_are_read_as_shown() -> None:
    document = docx.Document()
    add_list(document, 41, [("chineseCounting", "%1、")])
    add_list(document, 42, [("decimal", "%1."), ("decimal", "(%2)")])
    for text, num_id, level in [
        ("经济发展", 41, 0),
        ("城镇新增就业3000人。", 42, 0),
        ("开展招聘。", 42, 1),
        ("新建5G基站100个。", 42, 0),
        ("保障民生", 41, 0),
        ("新建养老中心5个。", 42, 0),
    ]:
        number_paragraph(document.add_paragraph(text), num_id, level)
    (block,) = read_source(docx_bytes(document), "a.docx", max_bytes=LIMIT).blocks
    assert isinstance(block, TextBlock)
    assert block.lines == [
        "一、经济发展",
        "1.城镇新增就业3000人。",
        "(1)开展招聘。",
        "2.新建5G基站100个。",
        "二、保障民生",
        "3.新建养老中心5个。",
    ]


def test_word_automatic_numbers_in_a_table_column_are_read() -> None:
    document = docx.Document()
    add_list(document, 43, [("decimal", "%1")])
    table = add_table(document, [["序号", "任务"], ["", "甲"], ["", "乙"]])
    for row in (1, 2):
        number_paragraph(table.cell(row, 0).paragraphs[0], 43)
    (block,) = read_source(docx_bytes(document), "a.docx", max_bytes=LIMIT).tables()
    assert [row[0] for row in block.rows] == ["序号", "1", "2"]


def test_chinese_numerals_count_as_a_list_does() -> None:
    assert [chinese_numeral(n) for n in (1, 10, 11, 17, 20, 23, 100, 105, 110)] == [
        "一",
        "十",
        "十一",
        "十七",
        "二十",
        "二十三",
        "一百",
        "一百零五",
        "一百一十",
    ]
