"""``duban import`` reads the files offices hold: Word, PDF, Excel, GBK text; a bad file is refused and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from tests.plan_files import district_docx

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DISTRICT = "江城区"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DUBAN_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "DUBAN_CONFIG": ""}


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def district_tasks(env: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(run(env, "--jurisdiction", DISTRICT, "tasks", "--json").output)


@pytest.mark.parametrize("name", ["江城区.docx", "江城区.pdf"])
def test_word_and_pdf_notices_import(env: dict[str, str], tmp_path: Path, name: str) -> None:
    run(env, "init", "--no-import")
    path = tmp_path / name
    path.write_bytes(district_docx() if name.endswith(".docx") else (FIXTURES / "district-notice.pdf").read_bytes())
    preview = json.loads(run(env, "import", str(path), "--jurisdiction", DISTRICT, "--json").output)
    assert preview["counts"]["county"] == 4
    result = run(env, "import", str(path), "--jurisdiction", DISTRICT, "--yes")
    assert result.exit_code == 0, result.output
    assert len(district_tasks(env)) == 4


def test_gbk_text_notice_imports(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--no-import")
    path = tmp_path / "江城区.txt"
    path.write_bytes(
        "江城区2025年重点工作任务分解方案\n附件1\n重点工作任务\n1.城镇新增就业3000人。(牵头单位:区人社局;责任单位:区财政局)\n".encode(
            "gbk"
        )
    )
    result = run(env, "import", str(path), "--jurisdiction", DISTRICT, "--yes")
    assert result.exit_code == 0, result.output
    assert len(district_tasks(env)) == 1


def test_damaged_file_is_refused_and_nothing_is_written(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--no-import")
    path = tmp_path / "江城区.docx"
    path.write_bytes(district_docx()[:2000])
    result = run(env, "import", str(path), "--jurisdiction", DISTRICT, "--yes")
    assert result.exit_code == 1
    assert "江城区.docx" in result.output and "损坏" in result.output
    assert "还没有导入方案" in run(env, "--jurisdiction", DISTRICT, "tasks").output
