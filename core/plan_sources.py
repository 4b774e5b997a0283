"""Read a plan file as an office holds it (Word, Excel, PDF, text) into blocks, in document order.

No task is parsed here: a :class:`SourceDocument` is text blocks and table
blocks, each with the document line number of its first line, so the parser
(:mod:`core.plan_document`) can feed them in order and report problems by line.

Merged table cells are filled in: a cell spanning rows or columns repeats its
text in every position it covers, so a section cell spanning ten rows gives
each of those rows its section.

Bad input is refused with :class:`SourceRefused`, whose ``message`` is Chinese
and names the file (and the line or cell where there is one).  Nothing about a
refused file is kept.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lxml import etree

#: The formats this module reads, by file suffix.
SOURCE_FORMATS = ("txt", "docx", "xlsx", "pdf", "doc", "wps", "xls", "et")
#: Old binary formats LibreOffice converts, and what they become.
_CONVERTED = {"doc": "docx", "wps": "docx", "xls": "xlsx", "et": "xlsx"}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted OOXML file is an OLE compound file holding these streams (MS-OFFCRYPTO 2.3.4).
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONVERT_TIMEOUT = 120.0


@dataclass(frozen=True)
class TextBlock:
    """Consecutive lines of running text."""

    lines: list[str]  # raw lines, not yet joined; the parser joins wrapped lines
    first_line: int  # 1-based document line number of lines[0]
    origin: str  # human label: "正文", "第3页", ...


@dataclass(frozen=True)
class TableBlock:
    """A table, merged cells filled in."""

    rows: list[list[str]]  # a cell spanning rows/columns repeats its text
    first_line: int  # document line number given to rows[0]; row i is first_line + i
    origin: str  # "表2", "第5页 表1", "工作表 Sheet1"
    # Spreadsheet coordinates: the sheet's name and the Excel row number of rows[0].
    sheet: str = ""
    first_row: int = 1

    def where(self, row: int, column: int | None = None) -> str:
        """A human reference to row ``row`` (0-based) and optionally a column: "Sheet1!B5" or "表1 第5行"."""
        if self.sheet:
            letter = column_letter(column) if column is not None else "A"
            return f"{self.sheet}!{letter}{self.first_row + row}"
        cell = f"第{column + 1}列" if column is not None else ""
        return f"{self.origin} 第{row + 1}行{cell}"


Block = TextBlock | TableBlock


@dataclass
class SourceDocument:
    """A file read into blocks in document order."""

    name: str  # file name as uploaded
    format: str  # "txt" | "docx" | "xlsx" | "pdf" | "doc" | "wps" | "xls" | "et"
    blocks: list[Block] = field(default_factory=list)
    encoding: str | None = None  # for text files: the detected encoding

    def text(self) -> str:
        """The whole document as text, tables as '|'-joined rows."""
        lines: list[str] = []
        for block in self.blocks:
            if isinstance(block, TextBlock):
                lines.extend(block.lines)
            else:
                lines.extend(" | ".join(cell.replace("\n", " ") for cell in row) for row in block.rows)
        return "\n".join(lines)

    def tables(self) -> list[TableBlock]:
        return [b for b in self.blocks if isinstance(b, TableBlock)]


class SourceRefused(Exception):
    """The file cannot be read as a plan; ``message`` says why, in Chinese."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def column_letter(index: int) -> str:
    """Excel's letter for a 0-based column index: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def source_format(filename: str, data: bytes) -> str | None:
    """The format a file is read as: its suffix, or what its bytes are when the suffix says nothing."""
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix in SOURCE_FORMATS:
        return suffix
    if data.startswith(b"%PDF"):
        return "pdf"
    if data.startswith(b"PK"):
        try:
            names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
        except zipfile.BadZipFile:
            return None
        if "word/document.xml" in names:
            return "docx"
        if "xl/workbook.xml" in names:
            return "xlsx"
    return None


def read_source(
    data: bytes,
    filename: str,
    *,
    max_bytes: int,
    soffice: str | None = "soffice",
) -> SourceDocument:
    """Read a plan file into blocks; raise :class:`SourceRefused` for anything that is not a readable plan file.

    ``soffice`` is the LibreOffice command used to convert .doc/.wps/.xls/.et
    (``None``: never convert); ``max_bytes`` caps the file's size.
    """
    name = Path(filename).name or filename
    if len(data) > max_bytes:
        raise too_large(name, len(data), max_bytes)
    if not data:
        raise SourceRefused(f"{name}:文件是空的。")
    kind = source_format(name, data)
    if kind is None:
        raise SourceRefused(
            f"{name}:不支持的文件类型。可导入 Word(.docx/.doc/.wps)、Excel(.xlsx)、PDF 或文本(.txt)文件。"
        )
    if kind == "txt":
        return _read_text(data, name)
    if kind == "pdf":
        return _read_pdf(data, name)
    if kind in ("docx", "xlsx") and data.startswith(_OLE_MAGIC):
        if _ENCRYPTION_STREAM in data:
            raise SourceRefused(
                f"{name}:文件设有打开密码(已加密),无法读取。请在 Word/WPS/Excel 中取消密码后另存再导入。"
            )
        # An old binary file saved under a new suffix: convert it like any .doc/.xls.
        kind = {"docx": "doc", "xlsx": "xls"}[kind]
    if kind in _CONVERTED:
        converted = _convert(data, name, kind, soffice)
        document = _guarded(_read_docx if _CONVERTED[kind] == "docx" else _read_xlsx, converted, name)
        document.format = kind
        return document
    return _guarded(_read_docx if kind == "docx" else _read_xlsx, data, name)


def _guarded(reader: Callable[[bytes, str], SourceDocument], data: bytes, name: str) -> SourceDocument:
    """Run a Word/Excel reader; any failure of the file's parser means a damaged file.

    zip, zlib, lxml and openpyxl each raise their own exceptions for damaged
    input (a flipped byte may surface as any of them), and the importer must
    answer every bad file with a clear refusal, never a crash.
    """
    try:
        return reader(data, name)
    except SourceRefused:
        raise
    except Exception as exc:
        kind = "Word(.docx)文档" if reader is _read_docx else "Excel(.xlsx)工作簿"
        raise SourceRefused(f"{name}:文件已损坏或不是有效的{kind},无法读取({type(exc).__name__})。") from exc


def too_large(name: str, size: int, max_bytes: int) -> SourceRefused:
    """The refusal of a file over the size cap."""
    return SourceRefused(
        f"{name}:文件大小 {_size(size)},超过导入上限 {_size(max_bytes)}([uploads] max_bytes)。"
        "请拆分文件或只保留任务清单后再导入。"
    )


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    if count >= 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count} 字节"


# --- text -----------------------------------------------------------------------

# Control characters that never occur in a text document (tab, newlines and form feed may).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """Decode a text file, detecting its encoding: UTF-8 (with or without BOM), UTF-16 with BOM, GB18030/GBK."""
    if data.startswith(b"\xef\xbb\xbf"):
        candidates = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]
    else:
        if data.startswith((b"PK\x03\x04", b"%PDF", _OLE_MAGIC)) or b"\x00" in data[:8192]:
            raise SourceRefused(f"{name}:这不是文本文件(内容是二进制数据)。请导入原始的 Word、Excel 或 PDF 文件。")
        # GB18030 decodes most byte strings that are not UTF-8, so UTF-8 is tried first:
        # a GBK file is practically never valid UTF-8.
        candidates = ["utf-8", "gb18030"]
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        bad = _CONTROL.search(text)
        if bad is not None:
            line = text.count("\n", 0, bad.start()) + 1
            raise SourceRefused(f"{name}:第{line}行含有控制字符,这不是文本文件(可能是改了扩展名的二进制文件)。")
        return text, encoding
    line = 1
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
    raise SourceRefused(
        f"{name}:无法识别文件编码(不是 UTF-8,也不是 GB18030/GBK),第{line}行起无法解码。请另存为 UTF-8 文本。"
    )


def _read_text(data: bytes, name: str) -> SourceDocument:
    text, encoding = decode_text(data, name)
    lines = text.splitlines()
    return SourceDocument(name=name, format="txt", blocks=[TextBlock(lines, 1, "正文")], encoding=encoding)


# --- Word ------------------------------------------------------------------------


def _qn(tag: str) -> str:
    return f"{{{_W}}}{tag}"


def _attr(element: Any, path: str) -> str | None:
    """The w:val of the first element at ``path`` (w: tags) under ``element``."""
    found = element.find(path.replace("w:", f"{{{_W}}}"))
    if found is None:
        return None
    value = found.get(_qn("val"))
    return value if value is not None else ""


_CN_DIGITS = "零一二三四五六七八九"
_CHINESE_FORMATS = {
    "chineseCounting",
    "chineseCountingThousand",
    "chineseLegalSimplified",
    "ideographTraditional",
    "japaneseCounting",
    "taiwaneseCounting",
    "taiwaneseCountingThousand",
}


def chinese_numeral(value: int) -> str:
    """一, 十, 十一, 二十三, 一百零五: how a Chinese list numbers its items."""
    if value <= 0:
        return str(value)
    if value >= 1000:
        return str(value)
    hundreds, rest = divmod(value, 100)
    tens, units = divmod(rest, 10)
    text = f"{_CN_DIGITS[hundreds]}百" if hundreds else ""
    if tens:
        text += ("" if tens == 1 and not hundreds else _CN_DIGITS[tens]) + "十"
    elif hundreds and units:
        text += "零"
    if units:
        text += _CN_DIGITS[units]
    return text


def _format_number(value: int, fmt: str) -> str:
    if fmt in _CHINESE_FORMATS:
        return chinese_numeral(value)
    if fmt == "decimalZero":
        return f"{value:02d}"
    if fmt == "decimalEnclosedCircle" and 1 <= value <= 20:
        return chr(0x2460 + value - 1)
    if fmt == "decimalFullWidth":
        return str(value).translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    if fmt in ("upperLetter", "lowerLetter") and 1 <= value <= 26:
        letter = chr(ord("A") + value - 1)
        return letter if fmt == "upperLetter" else letter.lower()
    return str(value)


class ListNumbering:
    """Word's automatic list numbering (numbering.xml), so a numbered paragraph reads "1.任务" as shown.

    Offices often let Word number the tasks and the 序号 column: the number is
    then not in the text at all.  Counters run in document order, per list,
    and a level's counter restarts when a higher level advances.
    """

    def __init__(self, numbering: bytes | None, styles: bytes | None) -> None:
        # abstractNumId -> level -> (start, format, text)
        self.levels: dict[str, dict[int, tuple[int, str, str]]] = {}
        self.lists: dict[str, tuple[str, dict[int, int]]] = {}  # numId -> (abstractNumId, start overrides)
        self.style_lists: dict[str, tuple[str, int]] = {}  # styleId -> (numId, level)
        self.counters: dict[str, dict[int, int]] = {}
        if numbering:
            self._read_numbering(_parse_xml(numbering))
        if styles:
            self._read_styles(_parse_xml(styles))

    def _read_numbering(self, root: Any) -> None:
        for abstract in root.iterchildren(_qn("abstractNum")):
            levels: dict[int, tuple[int, str, str]] = {}
            for level in abstract.iterchildren(_qn("lvl")):
                index = int(level.get(_qn("ilvl"), "0"))
                start = int(_attr(level, "w:start") or 1)
                levels[index] = (start, _attr(level, "w:numFmt") or "decimal", _attr(level, "w:lvlText") or "")
            self.levels[abstract.get(_qn("abstractNumId"), "")] = levels
        for num in root.iterchildren(_qn("num")):
            overrides = {
                int(o.get(_qn("ilvl"), "0")): int(_attr(o, "w:startOverride") or 1)
                for o in num.iterchildren(_qn("lvlOverride"))
                if _attr(o, "w:startOverride") is not None
            }
            self.lists[num.get(_qn("numId"), "")] = (_attr(num, "w:abstractNumId") or "", overrides)

    def _read_styles(self, root: Any) -> None:
        based: dict[str, str] = {}
        for style in root.iterchildren(_qn("style")):
            style_id = style.get(_qn("styleId"), "")
            num_id = _attr(style, "w:pPr/w:numPr/w:numId")
            if num_id is not None:
                self.style_lists[style_id] = (num_id, int(_attr(style, "w:pPr/w:numPr/w:ilvl") or 0))
            parent = _attr(style, "w:basedOn")
            if parent:
                based[style_id] = parent
        for style_id, parent in based.items():
            seen = {style_id}
            while style_id not in self.style_lists and parent in based and parent not in seen:
                seen.add(parent)
                parent = based[parent]
            if style_id not in self.style_lists and parent in self.style_lists:
                self.style_lists[style_id] = self.style_lists[parent]

    def label(self, paragraph: Any) -> str:
        """The number Word shows before this paragraph ("" for none), advancing the list's counters."""
        num_id = _attr(paragraph, "w:pPr/w:numPr/w:numId")
        level_text = _attr(paragraph, "w:pPr/w:numPr/w:ilvl")
        if num_id is None:
            style = _attr(paragraph, "w:pPr/w:pStyle")
            if style is None or style not in self.style_lists:
                return ""
            num_id, level = self.style_lists[style]
            level = int(level_text) if level_text is not None else level
        else:
            level = int(level_text or 0)
        if num_id not in self.lists:
            return ""  # numId 0 (numbering switched off) or a list that is not defined
        abstract, overrides = self.lists[num_id]
        levels = self.levels.get(abstract, {})
        if level not in levels:
            return ""
        counters = self.counters.setdefault(num_id, {})
        start = overrides.get(level, levels[level][0])
        counters[level] = counters.get(level, start - 1) + 1
        for deeper in [k for k in counters if k > level]:
            del counters[deeper]
        _, fmt, text = levels[level]
        if fmt in ("bullet", "none"):
            return ""

        def number(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            value = counters.get(index, overrides.get(index, levels.get(index, (1, "", ""))[0]))
            return _format_number(value, levels.get(index, (1, fmt, ""))[1])

        return re.sub(r"%(\d)", number, text)


def _parse_xml(data: bytes) -> Any:
    return etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, huge_tree=False))


def _paragraph_lines(paragraph: Any, numbering: ListNumbering | None = None) -> list[str]:
    """A w:p's text, split at line breaks (w:br, w:cr); tabs kept as tabs; an automatic list number put in front."""
    label = numbering.label(paragraph) if numbering is not None else ""
    parts: list[str] = [label + ("" if not label or label[-1] in ".、)）．:：" else " ")]
    for node in paragraph.iter(_qn("t"), _qn("tab"), _qn("br"), _qn("cr"), _qn("delText")):
        if node.tag == _qn("t"):
            parts.append(node.text or "")
        elif node.tag == _qn("tab"):
            parts.append("\t")
        elif node.tag in (_qn("br"), _qn("cr")) and node.get(_qn("type")) in (None, "textWrapping"):
            parts.append("\n")
    return "".join(parts).split("\n")


def _cell_text(cell: Any, numbering: ListNumbering) -> str:
    """A table cell's text: its paragraphs (nested tables' too) joined by newlines."""
    lines: list[str] = []
    for paragraph in cell.iter(_qn("p")):
        lines.extend(_paragraph_lines(paragraph, numbering))
    return "\n".join(line.strip() for line in lines if line.strip())


def _table_rows(table: Any, numbering: ListNumbering) -> list[list[str]]:
    """A w:tbl as a grid: horizontal spans repeated, vertical merges filled from the cell above."""
    grid: list[list[str]] = []
    width = len(table.findall(f"{_qn('tblGrid')}/{_qn('gridCol')}"))
    for tr in table.iterchildren(_qn("tr")):
        row: list[str] = []
        skip_before = _attr(tr, "w:trPr/w:gridBefore")
        row.extend([""] * int(skip_before or 0))
        for tc in tr.iterchildren(_qn("tc"), _qn("sdt")):
            cells = [tc] if tc.tag == _qn("tc") else list(tc.iter(_qn("tc")))
            for cell in cells:
                span = int(_attr(cell, "w:tcPr/w:gridSpan") or 1)
                merge = _attr(cell, "w:tcPr/w:vMerge")
                column = len(row)
                if merge is not None and merge != "restart" and grid:
                    above = grid[-1]
                    text = above[column] if column < len(above) else ""
                else:
                    text = _cell_text(cell, numbering)
                row.extend([text] * span)
        grid.append(row)
    width = max([width, *(len(r) for r in grid)], default=0)
    return [r + [""] * (width - len(r)) for r in grid]


def _body_children(body: Any) -> Iterator[Any]:
    """The body's paragraphs and tables in order, looking inside content controls (w:sdt)."""
    for child in body.iterchildren():
        if child.tag == _qn("sdt"):
            content = child.find(_qn("sdtContent"))
            if content is not None:
                yield from _body_children(content)
        elif child.tag in (_qn("p"), _qn("tbl")):
            yield child


def _read_docx(data: bytes, name: str) -> SourceDocument:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        root = _parse_xml(archive.read("word/document.xml"))
        names = set(archive.namelist())
        numbering = ListNumbering(
            archive.read("word/numbering.xml") if "word/numbering.xml" in names else None,
            archive.read("word/styles.xml") if "word/styles.xml" in names else None,
        )
    body = root.find(_qn("body"))
    if body is None:
        raise SourceRefused(f"{name}:Word 文档没有正文。")
    blocks: list[Block] = []
    lines: list[str] = []
    first = 1
    line = 1
    tables = 0
    for child in _body_children(body):
        if child.tag == _qn("p"):
            for text in _paragraph_lines(child, numbering):
                lines.append(text)
                line += 1
            continue
        if lines:
            blocks.append(TextBlock(lines, first, "正文"))
            lines = []
        tables += 1
        rows = _table_rows(child, numbering)
        if rows:
            blocks.append(TableBlock(rows, line, f"表{tables}"))
            line += len(rows)
        first = line
    if lines:
        blocks.append(TextBlock(lines, first, "正文"))
    return SourceDocument(name=name, format="docx", blocks=blocks)


# --- Excel -----------------------------------------------------------------------


def _cell_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date() if value.time() == datetime.min.time() else value
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"{value.year}年{value.month}月{value.day}日"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_xlsx(data: bytes, name: str) -> SourceDocument:
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), data_only=True)
    blocks: list[Block] = []
    line = 1
    for sheet in workbook.worksheets:
        if sheet.sheet_state != "visible":
            continue
        values = [[_cell_value(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        for merged in sheet.merged_cells.ranges:
            top = values[merged.min_row - 1][merged.min_col - 1] if merged.min_row <= len(values) else ""
            for r in range(merged.min_row - 1, min(merged.max_row, len(values))):
                for c in range(merged.min_col - 1, min(merged.max_col, len(values[r]))):
                    values[r][c] = top
        while values and not any(values[-1]):
            values.pop()
        width = max((max((i + 1 for i, v in enumerate(r) if v), default=0) for r in values), default=0)
        rows = [r[:width] for r in values]
        if not rows:
            continue
        blocks.append(TableBlock(rows, line, f"工作表 {sheet.title}", sheet=sheet.title, first_row=1))
        line += len(rows)
    workbook.close()
    return SourceDocument(name=name, format="xlsx", blocks=blocks)


# --- PDF -------------------------------------------------------------------------

_NO_TEXT_LAYER = (
    "{name}:PDF 没有文字层(可能是扫描件或图片),无法读取其中的文字。本系统不做文字识别(OCR),"
    "请导入原始的 Word 文件,或带文字的 PDF。"
)


# A page's number printed in its footer: "— 3 —", "- 3 -", "3", "第3页 共9页", "3/9".
_PAGE_NUMBER = re.compile(
    r"^[\s\-—–－]*(?:\d{1,4}|第\s*\d{1,4}\s*页(?:\s*[,，]?\s*共\s*\d{1,4}\s*页)?|\d{1,4}\s*/\s*\d{1,4})[\s\-—–－]*$"
)


def _unless_page_number(line: str) -> str:
    """A footer's page number is no part of the text: blanked (the line keeps its number), so a task
    broken across two pages still reads as one."""
    return "" if _PAGE_NUMBER.match(line) else line


def _read_pdf(data: bytes, name: str) -> SourceDocument:
    try:
        document = _read_pdf_plumber(data, name)
    except SourceRefused:
        raise
    except Exception as plumber_error:
        # pdfminer is stricter than pypdf with damaged files: try the other reader before refusing.
        try:
            document = _read_pdf_pypdf(data, name)
        except SourceRefused:
            raise
        except Exception as exc:
            raise SourceRefused(f"{name}:PDF 文件已损坏,无法读取({type(plumber_error).__name__})。") from exc
    if not any(line.strip() for b in document.blocks if isinstance(b, TextBlock) for line in b.lines) and not any(
        cell for b in document.tables() for row in b.rows for cell in row
    ):
        raise SourceRefused(_NO_TEXT_LAYER.format(name=name))
    return document


def _read_pdf_plumber(data: bytes, name: str) -> SourceDocument:
    import pdfplumber
    from pdfminer.pdfdocument import PDFPasswordIncorrect
    from pdfplumber.utils.exceptions import PdfminerException

    blocks: list[Block] = []
    line = 1
    try:
        pdf = pdfplumber.open(io.BytesIO(data))
    except PdfminerException as exc:
        if isinstance(exc.args[0] if exc.args else None, PDFPasswordIncorrect):
            raise SourceRefused(f"{name}:PDF 设有打开密码,无法读取。请导出无密码的 PDF 再导入。") from exc
        raise
    with pdf:
        for number, page in enumerate(pdf.pages, start=1):
            tables = page.find_tables()
            boxes = [t.bbox for t in tables]
            items: list[tuple[float, Block | str]] = []
            for text_line in page.extract_text_lines(return_chars=False):
                middle_x = (text_line["x0"] + text_line["x1"]) / 2
                middle_y = (text_line["top"] + text_line["bottom"]) / 2
                if any(x0 <= middle_x <= x1 and top <= middle_y <= bottom for x0, top, x1, bottom in boxes):
                    continue
                items.append((text_line["top"], _unless_page_number(text_line["text"])))
            for index, table in enumerate(tables, start=1):
                rows = _pdf_table_rows(page, table)
                if rows:
                    items.append((table.bbox[1], TableBlock(rows, 0, f"第{number}页 表{index}")))
            items.sort(key=lambda item: item[0])
            pending: list[str] = []
            first = line
            for _, item in items:
                if isinstance(item, str):
                    if not pending:
                        first = line
                    pending.append(item)
                    line += 1
                    continue
                if pending:
                    blocks.append(TextBlock(pending, first, f"第{number}页"))
                    pending = []
                assert isinstance(item, TableBlock)
                blocks.append(TableBlock(item.rows, line, item.origin))
                line += len(item.rows)
            if pending:
                blocks.append(TextBlock(pending, first, f"第{number}页"))
    return SourceDocument(name=name, format="pdf", blocks=blocks)


# A unit name ends with one of these; a wrapped line ending with one may end a unit.
_UNIT_END = re.compile(r"(局|办|委|部|中心|院|室|社|会|所|处|队|站|联|公司|集团|银行|政府|街道|镇|乡|行)$")
_UNIT_START = re.compile(r"^[县区市省州旗各]")


def join_wrapped(text: str) -> str:
    """Join the lines a PDF cell was wrapped into; keep a line break only where one unit ends and another begins.

    A PDF has no paragraphs inside a cell, only lines: ``区市场监管`` / ``局、各街道办`` / ``事处``
    is one list, while ``区卫健局`` / ``区住建局`` are two units.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for line in lines[1:]:
        boundary = _UNIT_END.search(joined) and _UNIT_START.match(line)
        joined += ("\n" if boundary else "") + line
    return joined


def _centred_in(x0: float, top: float, x1: float, bottom: float) -> Any:
    """A filter keeping the characters whose centre lies in a box.

    A CJK glyph's box is taller than its line and pokes out of its cell, so
    containment or overlap would lose or borrow characters; the centre does not.
    """

    def test(obj: dict[str, Any]) -> bool:
        if obj.get("object_type") != "char":
            return False
        x = (obj["x0"] + obj["x1"]) / 2
        y = (obj["top"] + obj["bottom"]) / 2
        return bool(x0 <= x <= x1 and top <= y <= bottom)

    return test


def _pdf_table_rows(page: Any, table: Any) -> list[list[str]]:
    """A ruled PDF table as a grid: each cell's text in every grid position its box covers.

    pdfplumber gives each drawn cell's box; a merged cell's box spans several
    grid columns or rows, so spans are read from the boxes, not guessed.
    """
    xs = sorted({round(v, 1) for x0, _, x1, _ in table.cells for v in (x0, x1)})
    ys = sorted({round(v, 1) for _, top, _, bottom in table.cells for v in (top, bottom)})
    grid = [[""] * (len(xs) - 1) for _ in range(len(ys) - 1)]
    for x0, top, x1, bottom in table.cells:
        text = page.filter(_centred_in(x0, top, x1, bottom)).extract_text() or ""
        c0, c1 = xs.index(round(x0, 1)), xs.index(round(x1, 1))
        r0, r1 = ys.index(round(top, 1)), ys.index(round(bottom, 1))
        for r in range(r0, r1):
            for c in range(c0, c1):
                grid[r][c] = join_wrapped(text)
    return [row for row in grid if any(row)]


def _read_pdf_pypdf(data: bytes, name: str) -> SourceDocument:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise SourceRefused(f"{name}:PDF 设有打开密码,无法读取。请导出无密码的 PDF 再导入。")
    blocks: list[Block] = []
    line = 1
    for number, page in enumerate(reader.pages, start=1):
        lines = [_unless_page_number(line) for line in (page.extract_text() or "").splitlines()]
        if lines:
            blocks.append(TextBlock(lines, line, f"第{number}页"))
            line += len(lines)
    return SourceDocument(name=name, format="pdf", blocks=blocks)


# --- old binary formats via LibreOffice ------------------------------------------


def _convert(data: bytes, name: str, kind: str, soffice: str | None) -> bytes:
    """Convert a .doc/.wps/.xls/.et file with LibreOffice, in a temporary folder, with a time limit."""
    target = _CONVERTED[kind]
    label = {"docx": "Word 文档(.docx)", "xlsx": "Excel 工作簿(.xlsx)"}[target]
    command = shutil.which(soffice) if soffice else None
    if command is None:
        raise SourceRefused(
            f"{name}:.{kind} 是旧格式文件,本机没有安装 LibreOffice,无法转换。请在 WPS 或 Office 中另存为{label}后再导入。"
        )
    with tempfile.TemporaryDirectory(prefix="duban-convert-") as folder:
        work = Path(folder)
        source = work / f"source.{kind}"
        source.write_bytes(data)
        # A private profile: LibreOffice refuses to start twice on one profile.
        profile = (work / "profile").as_uri()
        try:
            subprocess.run(
                [
                    command,
                    f"-env:UserInstallation={profile}",
                    "--headless",
                    "--convert-to",
                    target,
                    "--outdir",
                    str(work / "out"),
                    str(source),
                ],
                check=False,
                capture_output=True,
                timeout=_CONVERT_TIMEOUT,
                cwd=folder,
            )
        except subprocess.TimeoutExpired as exc:
            raise SourceRefused(f"{name}:转换超时,文件可能已损坏。请另存为{label}后再导入。") from exc
        converted = work / "out" / f"source.{target}"
        if not converted.exists():
            raise SourceRefused(f"{name}:无法转换这个 .{kind} 文件(可能已损坏或设有密码)。请另存为{label}后再导入。")
        return converted.read_bytes()
