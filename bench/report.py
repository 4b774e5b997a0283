"""The quarterly notification (通报) as files: time and peak memory, one county and every county.

Each measurement runs :mod:`bench.report_child` in a fresh Python process,
which writes the files as the quarter-end job does (in ``[report]
file_workers`` processes, one per CPU by default) and reports the peak
resident set size (``VmHWM``, see that module for why not ``ru_maxrss``) and
CPU time of itself and the processes it started.  The time is measured inside
the child, around the exports only (interpreter start and imports excluded).  A
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
    cpu_s: float  # of the whole process tree (this child, the fork server, the writing processes)
    build_s: float
    write_s: float  # the child's own part of writing: handing views over and waiting, or all of it in-process
    workers: int  # processes writing files (0: the child itself)
    processes: int
    peak_rss_mb: float  # summed over the tree
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
        write_s=figures["write"],
        workers=figures["workers"],
        processes=figures["processes"],
        peak_rss_mb=figures["peak_rss_kb"] / 1024,
        files=figures["files"],
        megabytes=figures["bytes"] / 1e6,
    )


def run(database: Database, jurisdiction: str) -> dict[str, ReportRun]:
    """The baseline, one county (``jurisdiction``) and all counties, each in its own child process."""
    return {mode: _child(database, jurisdiction, mode) for mode in ("baseline", "one", "all")}
