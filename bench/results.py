"""Figures as they are measured, the table they are printed as, and the JSON they are saved as."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import DATABASES

#: Order of the table's rows.
ROW_ORDER = (
    "import",
    "start-up sync",
    "bind people",
    "tick (idle)",
    "tick (firing)",
    "tick (quarter end)",
    "fanout",
    "inbound",
    "inbound 2 processes",
    "report (1 county)",
    "report (all)",
    "simulate (year)",
)
SCALE_ORDER = ("county", "city", "province", "-", "1 ms", "50 ms", "150 ms")


@dataclass
class Figure:
    """One cell of the table: a benchmark at a scale on a database."""

    benchmark: str
    scale: str
    database: str
    value: float | None  # the figure held against the target (seconds, rate, ratio …)
    unit: str
    text: str  # how the cell shows it
    target: str = ""
    met: bool | None = None  # None: no target for this cell
    shortfall: str = ""  # by how much a missed target was missed
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    deployments: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        """Record a figure, with the machine's 1-minute load average at that moment (the machine may be shared)."""
        figure.detail.setdefault("loadavg_1m", round(os.getloadavg()[0], 2))
        self.figures.append(figure)

    def table(self, databases: tuple[str, ...] = DATABASES) -> str:
        """The figures as one plain-text table; a missed target is marked ✗ in its cell."""
        cells: dict[tuple[str, str], dict[str, Figure]] = {}
        for figure in self.figures:
            cells.setdefault((figure.benchmark, figure.scale), {})[figure.database] = figure
        keys = sorted(cells, key=lambda k: (ROW_ORDER.index(k[0]), SCALE_ORDER.index(k[1])))
        header = ["benchmark", "scale", *databases, "target"]
        rows = []
        for key in keys:
            row = [key[0], key[1]]
            target = ""
            for database in databases:
                found: Figure | None = cells[key].get(database)
                if found is None:
                    row.append("")
                    continue
                mark = " ✗" if found.met is False else ""
                row.append(found.text + mark)
                target = target or found.target
            row.append(target)
            rows.append(row)
        widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(_pad(text, width) for text, width in zip(line, widths, strict=True)).rstrip()
            for line in [header, *rows]
        ]
        missed = [f for f in self.figures if f.met is False]
        if missed:
            lines.append("")
            lines.append("✗ = target missed:")
            for figure in missed:
                lines.append(f"  {figure.benchmark} / {figure.scale} / {figure.database}: {figure.shortfall}")
        if self.notes:
            lines.append("")
            lines.append("notes:")
            lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            **meta,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "figures": [asdict(f) for f in self.figures],
            "deployments": self.deployments,
            "notes": self.notes,
        }
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def seconds(value: float) -> str:
    """0.41 s, 12.3 ms, 85 µs."""
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1e6:.0f} µs"
