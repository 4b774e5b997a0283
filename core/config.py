"""Typed settings loaded from ``config.toml`` and the environment.

Every section rejects unknown keys and bad values with a message that names the
key (``[telegram] rate_per_second: …``).  Secrets and the database URL may come
from the environment: ``DUBAN_<SECTION>_<KEY>`` overrides ``[section] key``
for any plain value, e.g. ``DUBAN_DATABASE_URL`` or ``DUBAN_TELEGRAM_TOKEN``.
Lists are written ``a,b`` and tables ``name=value,name=value`` there
(``DUBAN_WECOM_ROBOT_KEYS=office=KEY``).  Relative paths are resolved against
the directory of the configuration file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import date, datetime, timedelta
from datetime import time as TimeOfDay
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from core.durations import Offset, parse_duration, parse_offset
from core.pace import PaceThresholds
from core.units import UnitDirectory, UnitKind

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config.toml"
BUNDLED_PLAN = Path(__file__).resolve().parent / "plans" / "jiayu-2024-responsibility-plan.txt"
ENV_PREFIX = "DUBAN_"


class ConfigError(Exception):
    """A configuration file or environment value that cannot be used; the message names the key."""


class PersonRole(StrEnum):
    """What a bound person is to the supervision cycle."""

    LIAISON = "liaison"
    HEAD = "head"
    OFFICE = "office"
    LEADER = "leader"


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    return parse_duration(str(value))


def _offset(value: Any) -> Offset:
    if isinstance(value, Offset):
        return value
    return parse_offset(str(value))


Duration = Annotated[timedelta, BeforeValidator(_duration)]
OffsetValue = Annotated[Offset, BeforeValidator(_offset)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ServiceSettings(Section):
    timezone: str = "Asia/Shanghai"
    language: Literal["zh", "en"] = "zh"
    data_dir: Path = Path("var")
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseSettings(Section):
    url: str = "sqlite:///var/duban.sqlite3"
    #: SQLite: how long a statement waits for another process's lock before it fails (and is retried).
    busy_timeout: Duration = timedelta(seconds=30)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("only sqlite:/// and postgresql:// URLs are supported")
        return value


class PlanSettings(Section):
    path: str = "bundled"
    jurisdiction: str = "嘉鱼县"
    name: str = ""
    import_on_start: bool = True
    # A re-import that would deactivate more than this share of the plan's active tasks
    # (a truncated file, the wrong annex) is refused unless the office says --allow-shrink.
    max_shrink: float = Field(default=0.2, ge=0, le=1)


class UnitSettings(Section):
    aliases: dict[str, str] = Field(default_factory=dict)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    task_groups: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    kinds: dict[str, UnitKind] = Field(default_factory=dict)

    @field_validator("task_groups")
    @classmethod
    def _task_keys(cls, value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        for key in value:
            if not re.fullmatch(r"(county|city)-\d+", key):
                raise ValueError(f"task key {key!r} should look like county-36 or city-7")
        return value

    def directory(self, notice: UnitSettings | None = None) -> UnitDirectory:
        """These tables as a directory; a notice's own tables first, these on top of them."""
        base = notice or UnitSettings()
        return UnitDirectory(
            aliases={**base.aliases, **self.aliases},
            groups={k: list(v) for k, v in {**base.groups, **self.groups}.items()},
            kinds={**base.kinds, **self.kinds},
            task_groups={
                k: {p: list(u) for p, u in v.items()} for k, v in {**base.task_groups, **self.task_groups}.items()
            },
        )


def notice_units_path(notice: Path) -> Path:
    """Where a notice's own unit tables live: ``<notice>.toml`` beside the notice file."""
    return notice.with_suffix(".toml")


def load_notice_units(notice: Path) -> UnitSettings | None:
    """A notice's own unit tables ([aliases], [groups], [task_groups], [kinds]), None when it has none."""
    path = notice_units_path(notice)
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return UnitSettings.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        details = "\n".join(f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid unit tables\n{details}") from exc


class OfficeSettings(Section):
    unit: str = "县政府政务督查室"


class CalendarSettings(Section):
    send_time: TimeOfDay = TimeOfDay(9, 0)
    quiet_start: TimeOfDay = TimeOfDay(21, 0)
    quiet_end: TimeOfDay = TimeOfDay(8, 0)
    # Days the office declares itself, for years the holiday package does not cover yet.
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)


class Rung(Section):
    offset: OffsetValue
    roles: list[PersonRole]

    @field_validator("roles")
    @classmethod
    def _some_roles(cls, value: list[PersonRole]) -> list[PersonRole]:
        if not value:
            raise ValueError("a rung must notify at least one role")
        return value


def _default_rungs() -> list[Rung]:
    liaison = [PersonRole.LIAISON]
    return [
        Rung(offset=parse_offset("-7d"), roles=liaison),
        Rung(offset=parse_offset("-3d"), roles=liaison),
        Rung(offset=parse_offset("-1d"), roles=liaison),
        Rung(offset=parse_offset("0d"), roles=liaison),
        Rung(offset=parse_offset("+1d"), roles=[PersonRole.LIAISON, PersonRole.HEAD]),
        Rung(offset=parse_offset("+3d"), roles=[PersonRole.OFFICE]),
        Rung(offset=parse_offset("+7d"), roles=[PersonRole.LEADER]),
    ]


class Ladder(Section):
    rungs: list[Rung] = Field(default_factory=_default_rungs)
    repeat_every: Duration | None = timedelta(days=7)
    repeat_roles: list[PersonRole] = Field(default_factory=lambda: [PersonRole.LIAISON, PersonRole.HEAD])
    repeat_cap: int = Field(default=4, ge=0, le=100)
    follow_calendar: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        offsets = [r.offset.delta for r in self.rungs]
        if offsets != sorted(offsets):
            raise ValueError("rungs must be listed in time order")
        if len(set(offsets)) != len(offsets):
            raise ValueError("two rungs have the same offset")
        return self


class EscalationSettings(Ladder):
    resolution: Duration = timedelta(minutes=1)
    # Missed rungs older than this are recorded as skipped, not sent: a service
    # started months after a deadline does not send stale reminders.
    catch_up_within: Duration = timedelta(days=14)

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(hours=1):
            raise ValueError("resolution must be between 1s and 1h")
        return value


class CheckpointSettings(Section):
    id: str
    title: str
    due: datetime
    owed_by: Literal["lead", "lead_and_responsible"] = "lead_and_responsible"
    tasks: Literal["all", "county", "city"] | list[str] = "all"
    satisfied_by: Literal["status", "document"] = "status"
    ladder: Ladder | None = None
    # Each task with its own deadline (完成时限, read from the notice) is due on that day at ``due``'s
    # time of day; the tasks without one are due at ``due``.
    task_deadlines: bool = False

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", value):
            raise ValueError("id must be 1-40 lowercase letters, digits, - or _")
        return value

    @field_validator("tasks")
    @classmethod
    def _task_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            for key in value:
                if not re.fullmatch(r"(county|city)-\d+", key):
                    raise ValueError(f"task {key!r} should look like county-1 or city-24")
        return value


class DigestSettings(Section):
    enabled: bool = True
    time: TimeOfDay = TimeOfDay(8, 30)
    # Office group chats that also receive the digest: "telegram:-100123", "wecom_robot:KEYNAME".
    chats: list[str] = Field(default_factory=list)
    max_message_chars: int = Field(default=3500, ge=200, le=4096)


class TelegramSettings(Section):
    token: SecretStr | None = None
    bot_username: str = ""
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_path: str = "/telegram/webhook"
    webhook_secret: SecretStr | None = None
    messages_per_second: float = Field(default=29.0, gt=0, le=1000)
    per_chat_interval: Duration = timedelta(seconds=1.05)
    request_timeout: Duration = timedelta(seconds=15)

    @property
    def enabled(self) -> bool:
        return self.token is not None and bool(self.token.get_secret_value())


class WecomSettings(Section):
    corp_id: str = ""
    agent_id: int = 0
    secret: SecretStr | None = None
    callback_token: SecretStr | None = None
    encoding_aes_key: SecretStr | None = None
    api_base: str = "https://qyapi.weixin.qq.com"
    callback_path: str = "/wecom/callback"
    robot_keys: dict[str, SecretStr] = Field(default_factory=dict)
    per_member_per_minute: int = Field(default=30, ge=1)
    per_member_per_hour: int = Field(default=1000, ge=1)
    robot_per_minute: int = Field(default=20, ge=1)

    @property
    def enabled(self) -> bool:
        return bool(self.corp_id and self.secret and self.secret.get_secret_value())


MIN_SECRET_LENGTH = 16


class WebSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # The sandbox chat: "auto" serves it on loopback when no chat platform is configured.
    sandbox: Literal["auto", "on", "off"] = "auto"
    public_url: str = ""
    dashboard_secret: SecretStr | None = None
    session_ttl: Duration = timedelta(hours=8)
    # Sign-in guessing: a browser session is locked out after this many wrong codes or secrets in
    # a row, a client address after ``attempts_per_address``; each further lockout doubles, up to an hour.
    attempts_per_session: int = Field(default=5, ge=1, le=100)
    attempts_per_address: int = Field(default=20, ge=1, le=10000)
    lockout: Duration = timedelta(minutes=1)
    # Sign-in codes sent per office person and per browser session in an hour (re-sends count).
    codes_per_hour: int = Field(default=5, ge=1, le=100)
    # Reverse proxies whose X-Forwarded-Proto / X-Forwarded-For are believed (addresses or networks).
    trusted_proxies: list[str] = Field(default_factory=list)
    # Rows and files that are only bookkeeping are deleted after this long.
    retention: Duration = timedelta(days=7)

    @field_validator("dashboard_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"the dashboard secret must be at least {MIN_SECRET_LENGTH} characters "
                f"(口令至少 {MIN_SECRET_LENGTH} 个字符), got {len(value.get_secret_value())}"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {entry!r} is not an IP address or network") from None
        return value

    # Request bodies larger than these are refused with 413 before they are read.
    # (Sandbox uploads are capped at [uploads] max_bytes plus room for the form around the file.)
    form_max_bytes: int = Field(default=64 * 1024, ge=1024)
    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    callback_max_bytes: int = Field(default=256 * 1024, ge=1024)


class UploadSettings(Section):
    dir: Path = Path("var/files")
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    #: LibreOffice's command, to convert a plan sent as .doc/.wps/.xls/.et; "" never converts.
    soffice: str = "soffice"
    allowed_types: list[str] = Field(
        default_factory=lambda: [
            ".pdf",
            ".doc",
            ".docx",
            ".xls",
            ".xlsx",
            ".wps",
            ".et",
            ".ofd",
            ".txt",
            ".jpg",
            ".jpeg",
            ".png",
            ".zip",
        ]
    )


class OutboxSettings(Section):
    """Delivery of the outbox (see jobs.sender): retried while a message matters, never sent after."""

    # A row claimed by a process that then died is sent again after this long.
    lease: Duration = timedelta(minutes=2)
    # A passing failure (network, 5xx, 429, WeCom -1) is retried after retry_base, doubling each
    # time up to retry_cap, for as long as the message still matters (core.outbox: a reminder until
    # its round's next rung, a reply for a day, the digest until the next one).
    retry_base: Duration = timedelta(seconds=2)
    retry_cap: Duration = timedelta(minutes=5)
    # /healthz and duban_platform_failing_seconds report a platform whose sends have failed with no
    # success for longer than this.
    alert_after: Duration = timedelta(minutes=15)
    # Deprecated and ignored: delivery used to give up after this many attempts (about 17 minutes),
    # dropping a round's reminders in an afternoon's outage.  Still accepted so old files load.
    max_attempts: int | None = Field(default=None, ge=1, le=100)


class InboxSettings(Section):
    """Retrying an update whose handling failed for a passing reason (database locked, disk full, network)."""

    retry_base: Duration = timedelta(seconds=2)
    retry_max: Duration = timedelta(minutes=5)
    #: An update the database has not taken within this (locked, busy) is written to the spool folder
    #: instead, so the platform can be answered in time (WeCom retries after 5 s, three times).
    accept_within: Duration = timedelta(seconds=2)
    #: After this long an update that still fails is given up: the sender is told and the dashboard shows it.
    give_up_after: Duration = timedelta(days=1)
    #: Several processes on one database (PostgreSQL): each handles the updates it received itself,
    #: and takes up another's only once they have waited this long (that process died or is stuck).
    #: Without it every process read every pending update and they queued on each other's row locks.
    adopt_after: Duration = timedelta(seconds=20)


class LimitSettings(Section):
    note_max_chars: int = Field(default=1000, ge=1, le=4000)
    #: An unfinished /report draft (and any file staged for it) is dropped after this long untouched.
    draft_ttl: Duration = timedelta(days=3)


class BindingSettings(Section):
    code_ttl: Duration = timedelta(days=7)


class PaceSettings(Section):
    """Pace classes: ratios of the share done to the share expected by now (see core.pace)."""

    ahead: float = Field(default=1.1, gt=0)
    behind: float = Field(default=0.9, gt=0)
    far_behind: float = Field(default=0.6, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.far_behind <= self.behind <= self.ahead:
            raise ValueError("需满足 far_behind <= behind <= ahead")
        return self

    def thresholds(self) -> PaceThresholds:
        return PaceThresholds(ahead=self.ahead, behind=self.behind, far_behind=self.far_behind)


class ReportSettings(Section):
    green_at: float = Field(default=0.9, ge=0, le=1)
    yellow_at: float = Field(default=0.6, ge=0, le=1)
    # A unit is named in the 通报 when its on-time rate is below this, or it has missing items.
    name_below: float = Field(default=0.6, ge=0, le=1)
    name_if_missing: bool = True
    # After each round's deadline the office is sent its 通报 (XLSX) on the morning this long after it.
    send_after: Duration = timedelta(days=1)
    send_automatically: bool = True
    # Processes that write the 通报 files of many counties side by side (a round closes everywhere at once);
    # None: one per CPU; 0 or 1: written in the service's own process.
    file_workers: int | None = Field(default=None, ge=0)
    # 超前 / 正常 / 滞后 / 严重滞后: done ÷ expected at or above ahead, at or above behind, at or above far_behind, below.
    pace: PaceSettings = PaceSettings()

    def file_processes(self) -> int:
        """How many processes write 通报 files: ``file_workers``, or one per CPU when it is not set."""
        return self.file_workers if self.file_workers is not None else (os.cpu_count() or 1)


class Settings(Section):
    """All settings; ``base_dir`` is where relative paths are resolved from."""

    service: ServiceSettings = ServiceSettings()
    database: DatabaseSettings = DatabaseSettings()
    plan: PlanSettings = PlanSettings()
    units: UnitSettings = UnitSettings()
    office: OfficeSettings = OfficeSettings()
    calendar: CalendarSettings = CalendarSettings()
    escalation: EscalationSettings = EscalationSettings()
    checkpoints: list[CheckpointSettings] = Field(default_factory=list)
    digest: DigestSettings = DigestSettings()
    telegram: TelegramSettings = TelegramSettings()
    wecom: WecomSettings = WecomSettings()
    web: WebSettings = WebSettings()
    uploads: UploadSettings = UploadSettings()
    outbox: OutboxSettings = OutboxSettings()
    inbox: InboxSettings = InboxSettings()
    limits: LimitSettings = LimitSettings()
    binding: BindingSettings = BindingSettings()
    report: ReportSettings = ReportSettings()
    base_dir: Path = Field(default=PROJECT_ROOT, exclude=True)

    @model_validator(mode="after")
    def _unique_checkpoints(self) -> Self:
        ids = [c.id for c in self.checkpoints]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"checkpoint ids repeat: {', '.join(sorted(duplicates))}")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return self.service.tz

    def path(self, value: Path | str) -> Path:
        """A configured path made absolute against the configuration's directory."""
        candidate = Path(value)
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        match = re.match(r"^(sqlite(?:\+\w+)?):///(?!/)(.+)$", url)
        if match and match.group(2) != ":memory:":
            return f"{match.group(1)}:///{self.path(match.group(2))}"
        return url

    @property
    def plan_path(self) -> Path:
        return BUNDLED_PLAN if self.plan.path == "bundled" else self.path(self.plan.path)

    def unit_directory(self, notice: Path | None = None) -> UnitDirectory:
        """The unit tables for importing ``notice``: its own ``<notice>.toml`` (if any) plus [units].

        With no notice, only [units]: nothing about another office's document applies.
        """
        return self.units.directory(load_notice_units(notice) if notice is not None else None)

    def aware(self, moment: datetime) -> datetime:
        """Read a naive configured time as local (Asia/Shanghai) time."""
        return moment if moment.tzinfo else moment.replace(tzinfo=self.tz)


def _describe(error: ErrorDetails) -> str:
    location = [str(part) for part in error["loc"]]
    if location and location[0] in Settings.model_fields and len(location) > 1:
        head = f"[{location[0]}] {'.'.join(location[1:])}"
    elif location:
        head = ".".join(location)
    else:
        head = "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{head}: unknown key"
    return f"{head}: {error['msg']}"


def _env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, Section)):
            continue
        for key, sub in annotation.model_fields.items():
            variable = f"{ENV_PREFIX}{name}_{key}".upper()
            raw = environ.get(variable, "")
            if raw == "":
                continue
            value: Any = raw
            origin = get_origin(sub.annotation)
            if origin is list:  # "a,b,c"
                value = [item.strip() for item in raw.split(",") if item.strip()]
            elif origin is dict:  # "name=value,name=value"
                pairs = [item.partition("=") for item in raw.split(",") if item.strip()]
                value = {k.strip(): v.strip() for k, _, v in pairs}
            merged.setdefault(name, {})[key] = value
    return merged


def load_settings(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load settings from a TOML file (``DUBAN_CONFIG`` or the project's config.toml) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    chosen = Path(path) if path else Path(environ.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{chosen}: configuration file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML: {exc}") from exc
    if "base_dir" in data:
        raise ConfigError(f"{chosen}: base_dir: unknown key")
    data = _env_overrides(data, environ)
    try:
        settings = Settings.model_validate({**data, "base_dir": chosen.resolve().parent})
    except ValidationError as exc:
        details = "\n".join(f"  {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"{chosen}: invalid configuration\n{details}") from exc
    return settings
