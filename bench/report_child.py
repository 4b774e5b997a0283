"""Child process of the report benchmark: writes notifications and prints what it took as JSON.

``python -m bench.report_child URL JURISDICTION MODE OUT``, MODE being
``one`` (the notification of JURISDICTION), ``all`` (every jurisdiction's) or
``baseline`` (imports and a database connection only, to show the floor of
the process's RSS).  Each notification is built once
(:func:`core.documents.build_view`, one session per county as one ``/export``
each) and written as HTML and XLSX by a :class:`core.documents.FileWriter`
through :func:`core.documents.write_pipelined`, as the quarter-end job writes
every county's 通报: in ``[report] file_workers`` processes (one per CPU
unless set; ``DUBAN_REPORT_FILE_WORKERS`` in this process's environment sets
it) while the next counties are built, or in this process with 0 or 1; ``one``
writes in this process, as ``/export`` does.  The processes start within the
timed part, as at a service's first quarter end.

Time is measured around the exports only (interpreter start and imports
excluded).  CPU time and peak memory are of the whole process tree: this
process, the fork server and the writing processes, each read from ``/proc``
before the processes stop (peak RSS as the kernel's ``VmHWM``, summed, which
over-counts the pages they share; ``ru_maxrss`` is not used because on Linux
it carries the parent's RSS over fork+exec).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from bench.common import REPORT_AT, REPORT_CHECKPOINT
from core.config import load_settings
from core.documents import FileFormat, FileWriter, View, build_view, default_name, write_pipelined
from core.runtime import Runtime, open_runtime
from messages import Messages
from storage.models import Jurisdiction, Plan

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def peak_rss_kb(pid: int | str = "self") -> int:
    """A process's peak resident set size (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the fork server, the writing processes, the resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def main(url: str, jurisdiction: str, mode: str, out: str) -> None:
    environ = {"DUBAN_DATABASE_URL": url, "DUBAN_PLAN_JURISDICTION": jurisdiction}
    if "DUBAN_REPORT_FILE_WORKERS" in os.environ:
        environ["DUBAN_REPORT_FILE_WORKERS"] = os.environ["DUBAN_REPORT_FILE_WORKERS"]
    settings = load_settings(environ=environ)
    messages = Messages(settings.service.language, settings.tz)
    runtime = open_runtime(settings)
    # Every county's files as the quarter-end job writes them; one county's as /export does, in-process.
    writer = FileWriter(messages, settings.report.file_processes() if mode == "all" else 0)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    timings = {"build": 0.0, "write": 0.0}
    cpu = time.process_time()
    files = 0
    written = 0
    start = time.perf_counter()
    with runtime.sessions() as session:
        query = select(Plan.id).join(Jurisdiction, Jurisdiction.id == Plan.jurisdiction_id).order_by(Plan.id)
        if mode == "one":
            query = query.where(Jurisdiction.name == jurisdiction)
        plan_ids = list(session.scalars(query)) if mode != "baseline" else []

    def views() -> Iterator[tuple[int, View, list[tuple[FileFormat, Path]]]]:
        for plan_id in plan_ids:
            began = time.perf_counter()
            job = built(runtime, plan_id, folder)
            timings["build"] += time.perf_counter() - began
            yield job

    waited = time.perf_counter()
    for _, paths in write_pipelined(views(), writer):
        for path in paths.result():
            files += 1
            written += path.stat().st_size
    timings["write"] = time.perf_counter() - waited - timings["build"]  # handing over, waiting (or writing here)
    seconds = time.perf_counter() - start
    cpu_s = time.process_time() - cpu  # steadier than wall time on a shared machine
    tree = descendants(os.getpid())
    tree_cpu = sum(cpu_seconds(pid) for pid in tree)  # the processes started within the timed part
    peak = peak_rss_kb() + sum(peak_rss_kb(pid) for pid in tree)
    writer.close()
    runtime.close()
    json.dump(
        {
            "seconds": seconds,
            "cpu_s": cpu_s + tree_cpu,
            "main_cpu_s": cpu_s,
            "workers": writer.workers,
            "processes": 1 + len(tree),
            "counties": len(plan_ids),
            "files": files,
            "bytes": written,
            "peak_rss_kb": peak,
            **timings,
        },
        sys.stdout,
    )


def built(runtime: Runtime, plan_id: int, folder: Path) -> tuple[int, View, list[tuple[FileFormat, Path]]]:
    """One county's notification, in a session of its own (as one /export request), and the files to write."""
    with runtime.sessions() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        target = folder / str(plan_id)
        target.mkdir(exist_ok=True)
        view = build_view(session, runtime.settings, plan, REPORT_CHECKPOINT, REPORT_AT)
        files: list[tuple[FileFormat, Path]] = [
            (fmt, target / default_name(plan, REPORT_CHECKPOINT, fmt)) for fmt in ("html", "xlsx")
        ]
        return plan_id, view, files


if __name__ == "__main__":
    main(*sys.argv[1:5])
