"""Child process of the report benchmark: writes notifications and prints what it took as JSON.

``python -m bench.report_child URL JURISDICTION MODE OUT``, MODE being
``one`` (the notification of JURISDICTION), ``all`` (every jurisdiction's, one
after the other in this one process) or ``baseline`` (imports and a database
connection only, to show the floor of the process's RSS).  Each notification
is built once (:func:`core.documents.build_view`) and written as HTML and XLSX
(:func:`core.documents.write_view`), the two halves of what ``/export`` does.  It reports its own peak RSS as the kernel's ``VmHWM`` of this process
(read from ``/proc/self/status`` at the end); ``ru_maxrss`` from
``getrusage``/``wait4`` is not used because on Linux it carries the parent's
RSS over fork+exec and so reads the benchmark runner's size, not the child's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sqlalchemy import select

from bench.common import REPORT_AT, REPORT_CHECKPOINT
from core.config import load_settings
from core.documents import build_view, default_name, write_view
from core.runtime import open_runtime
from messages import Messages
from storage.models import Jurisdiction, Plan


def peak_rss_kb() -> int:
    """This process's peak resident set size (VmHWM), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(url: str, jurisdiction: str, mode: str, out: str) -> None:
    settings = load_settings(environ={"DUBAN_DATABASE_URL": url, "DUBAN_PLAN_JURISDICTION": jurisdiction})
    messages = Messages(settings.service.language, settings.tz)
    runtime = open_runtime(settings)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    timings = {"build": 0.0, "html": 0.0, "xlsx": 0.0}
    cpu = time.process_time()
    files = 0
    written = 0
    start = time.perf_counter()
    with runtime.sessions() as session:
        query = select(Plan.id).join(Jurisdiction, Jurisdiction.id == Plan.jurisdiction_id).order_by(Plan.id)
        if mode == "one":
            query = query.where(Jurisdiction.name == jurisdiction)
        plan_ids = list(session.scalars(query)) if mode != "baseline" else []
    for plan_id in plan_ids:  # one session per county, as one /export request each
        with runtime.sessions() as session:
            plan = session.get(Plan, plan_id)
            assert plan is not None
            target = folder / str(plan_id)
            target.mkdir(exist_ok=True)
            began = time.perf_counter()
            view = build_view(session, settings, plan, REPORT_CHECKPOINT, REPORT_AT)
            timings["build"] += time.perf_counter() - began
            for fmt in ("html", "xlsx"):
                began = time.perf_counter()
                path = write_view(view, fmt, messages, target / default_name(plan, REPORT_CHECKPOINT, fmt))
                timings[fmt] += time.perf_counter() - began
                files += 1
                written += path.stat().st_size
    seconds = time.perf_counter() - start
    cpu_s = time.process_time() - cpu  # steadier than wall time on a shared machine
    runtime.close()
    json.dump(
        {
            "seconds": seconds,
            "cpu_s": cpu_s,
            "counties": len(plan_ids),
            "files": files,
            "bytes": written,
            "peak_rss_kb": peak_rss_kb(),
            **timings,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
