"""The quarterly notification (通报) as files: time and peak memory, one county and every county.

Each measurement runs :mod:`bench.report_child` in a fresh Python process,
which reports its own peak resident set size (``VmHWM``, see that module for
why not ``ru_maxrss``).  The time is measured inside the child,
around the exports only (interpreter start and imports excluded).  A
``baseline`` child (imports and a connection, no report) shows the floor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import PROJECT_ROOT, Database


@dataclass
class ReportRun:
    mode: str
    counties: int
    seconds: float
    cpu_s: float
    build_s: float
    html_s: float
    xlsx_s: float
    peak_rss_mb: float
    files: int
    megabytes: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _child(database: Database, jurisdiction: str, mode: str) -> ReportRun:
    out = database.folder / f"exports-{mode}"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.report_child", database.url, jurisdiction, mode, str(out)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
    )
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"report child ({mode}) exited with {process.returncode}")
    shutil.rmtree(out, ignore_errors=True)
    figures = json.loads(output)
    return ReportRun(
        mode=mode,
        counties=figures["counties"],
        seconds=figures["seconds"],
        cpu_s=figures["cpu_s"],
        build_s=figures["build"],
        html_s=figures["html"],
        xlsx_s=figures["xlsx"],
        peak_rss_mb=figures["peak_rss_kb"] / 1024,
        files=figures["files"],
        megabytes=figures["bytes"] / 1e6,
    )


def run(database: Database, jurisdiction: str) -> dict[str, ReportRun]:
    """The baseline, one county (``jurisdiction``) and all counties, each in its own child process."""
    return {mode: _child(database, jurisdiction, mode) for mode in ("baseline", "one", "all")}
