"""Child process of the simulate benchmark: ``duban simulate`` over a year, timed, with its own peak memory.

``python -m bench.simulate_child URL JURISDICTION FROM TO`` runs
:func:`core.simulation.run_simulation` from FROM 00:00 to TO 23:59 (local
dates, as ``duban simulate --from FROM --to TO`` reads them) on the database at
URL, and prints JSON: wall and CPU seconds around the simulation (the copy of
the database included), the notices it collected, and this process's peak RSS
(``VmHWM``, see :mod:`bench.report_child` for why not ``ru_maxrss``).
"""

from __future__ import annotations

import json
import sys
import time

from bench.report_child import peak_rss_kb
from core.config import load_settings
from core.conversation import parse_local_datetime
from core.runtime import open_runtime
from core.simulation import run_simulation


def main(url: str, jurisdiction: str, start: str, end: str) -> None:
    settings = load_settings(environ={"DUBAN_DATABASE_URL": url, "DUBAN_PLAN_JURISDICTION": jurisdiction})
    runtime = open_runtime(settings)
    begin = parse_local_datetime(start, settings, default_hour=0)
    finish = parse_local_datetime(end, settings, default_hour=23, default_minute=59)
    cpu, wall = time.process_time(), time.perf_counter()
    timeline = run_simulation(runtime, begin, finish, [])
    seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    runtime.close()
    json.dump(
        {
            "seconds": seconds,
            "cpu_s": cpu_s,
            "notices": len(timeline.notices),
            "reaching_someone": sum(1 for n in timeline.notices if n.recipients),
            "peak_rss_kb": peak_rss_kb(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
