"""``duban simulate`` over the whole plan year: time and peak memory, in a fresh process.

The simulation copies the database (SQLite's backup API) and runs every tick of
the year on the copy, for every county of the deployment, with nothing answered
after the seeded first quarter.  Its goal (issue 17) is under 10 s for ten
counties, growing no faster than linearly: the runner compares the time per
county at each scale (see ``bench/__main__.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import PROJECT_ROOT, Database

#: The plan year, as ``duban simulate --from 2024-01-01 --to 2024-12-31``.
SIMULATE_FROM = "2024-01-01"
SIMULATE_TO = "2024-12-31"


@dataclass
class SimulateRun:
    counties: int
    seconds: float
    cpu_s: float
    notices: int
    reaching_someone: int
    peak_rss_mb: float

    @property
    def per_county_s(self) -> float:
        return self.seconds / self.counties

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_county_s": self.per_county_s}


def run(database: Database, jurisdiction: str, counties: int) -> SimulateRun:
    """One simulation of the year over ``database`` in a child process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.simulate_child", database.url, jurisdiction, SIMULATE_FROM, SIMULATE_TO],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
    )
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"simulate child exited with {process.returncode}")
    figures = json.loads(output)
    return SimulateRun(
        counties=counties,
        seconds=figures["seconds"],
        cpu_s=figures["cpu_s"],
        notices=figures["notices"],
        reaching_someone=figures["reaching_someone"],
        peak_rss_mb=figures["peak_rss_kb"] / 1024,
    )
