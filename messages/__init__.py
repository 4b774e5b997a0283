"""Every text the bot sends and every report it writes, rendered from Jinja2 templates.

Templates live in ``messages/<language>/``; Chinese (``zh``) is complete and
the fallback for anything another language lacks.  Labels shared by many
templates (statuses, roles, states) are in ``_labels.j2`` of each language.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent


class Messages:
    """Renders named templates in one language, with dates in the office's time zone."""

    def __init__(self, language: str, tz: ZoneInfo) -> None:
        self.language = language
        self.tz = tz
        folders = [TEMPLATES / language] if language != "zh" else []
        folders += [TEMPLATES / "zh", TEMPLATES / "reports"]
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(folder)) for folder in folders]),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
            # The templates ship with the code: each render need not look at the file's time again.
            auto_reload=False,
        )
        self.env.filters["local"] = self.local
        self.env.filters["md"] = self.month_day
        self.env.filters["ymd"] = self.ymd
        self.env.globals["language"] = language
        self._labels = self.env.get_template("_labels.j2").module

    def local(self, moment: datetime | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
        if moment is None:
            return "—"
        return moment.astimezone(self.tz).strftime(pattern)

    def when(self, moment: datetime | None, now: datetime) -> str:
        """A chat bubble's time in the office's zone: the time today, the date too on other days, the year too in other years."""
        if moment is None:
            return "—"
        local, today = moment.astimezone(self.tz), now.astimezone(self.tz)
        if local.date() == today.date():
            return local.strftime("%H:%M")
        if local.year == today.year:
            return local.strftime("%m-%d %H:%M")
        return local.strftime("%Y-%m-%d %H:%M")

    def month_day(self, moment: datetime | date | None) -> str:
        if moment is None:
            return "—"
        day = moment.astimezone(self.tz) if isinstance(moment, datetime) else moment
        if self.language == "zh":
            return f"{day.month}月{day.day}日"
        return day.strftime("%d %b")

    def ymd(self, moment: datetime | date | None) -> str:
        if moment is None:
            return "—"
        day = moment.astimezone(self.tz) if isinstance(moment, datetime) else moment
        return day.strftime("%Y-%m-%d")

    def render(self, name: str, **context: Any) -> str:
        """Render ``<name>.j2`` (or ``name`` itself when it has an extension); trims outer blank lines."""
        template = name if "." in name else f"{name}.j2"
        return self.env.get_template(template).render(**context).strip("\n")

    def label(self, group: str, key: str) -> str:
        """A short label, e.g. label("status", "on_track") → 按计划推进."""
        table: dict[str, str] = getattr(self._labels, group)
        return table.get(key, key)

    def labels(self, group: str) -> dict[str, str]:
        return dict(getattr(self._labels, group))
