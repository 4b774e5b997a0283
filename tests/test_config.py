"""Typed settings: defaults that run, errors that name the key, secrets from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.config import BUNDLED_PLAN, ConfigError, PersonRole, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_project_config_is_the_working_default() -> None:
    settings = load_settings(environ={})
    assert settings.service.timezone == "Asia/Shanghai"
    assert settings.service.language == "zh"
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("var/duban.sqlite3")
    assert settings.plan_path == BUNDLED_PLAN
    assert [c.id for c in settings.checkpoints] == ["refined-plan", "2024-q1", "2024-q2", "2024-q3", "2024-q4"]
    assert not settings.telegram.enabled and not settings.wecom.enabled


def test_default_ladder_matches_the_notice_workflow() -> None:
    settings = load_settings(environ={})
    rungs = [(r.offset.text, [role.value for role in r.roles]) for r in settings.escalation.rungs]
    assert rungs == [
        ("-7d", ["liaison"]),
        ("-3d", ["liaison"]),
        ("-1d", ["liaison"]),
        ("+0d", ["liaison"]),
        ("+1d", ["liaison", "head"]),
        ("+3d", ["office"]),
        ("+7d", ["leader"]),
    ]
    assert settings.escalation.resolution == timedelta(minutes=1)
    assert settings.escalation.repeat_roles == [PersonRole.LIAISON, PersonRole.HEAD]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[telegram\] tokn: unknown key"):
        load_settings(write(tmp_path, "[telegram]\ntokn = 'x'\n"), environ={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[escalation\] resolution"):
        load_settings(write(tmp_path, "[escalation]\nresolution = '2h'\n"), environ={})


def test_bad_offset_is_named(tmp_path: Path) -> None:
    text = "[escalation]\nrungs = [{ offset = '-7x', roles = ['liaison'] }]\n"
    with pytest.raises(ConfigError, match=r"\[escalation\] rungs.0.offset"):
        load_settings(write(tmp_path, text), environ={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"telegrm: unknown key"):
        load_settings(write(tmp_path, "[telegrm]\ntoken = 'x'\n"), environ={})


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[service\n"), environ={})


def test_environment_supplies_secrets_and_database_url(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, ""),
        environ={"DUBAN_TELEGRAM_TOKEN": "123:abc", "DUBAN_DATABASE_URL": "postgresql://u@localhost/duban"},
    )
    assert settings.telegram.token is not None and settings.telegram.token.get_secret_value() == "123:abc"
    assert settings.telegram.enabled
    assert settings.database_url == "postgresql://u@localhost/duban"


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[telegram\] messages_per_second"):
        load_settings(write(tmp_path, ""), environ={"DUBAN_TELEGRAM_MESSAGES_PER_SECOND": "fast"})


def test_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 9999\n")
    assert load_settings(environ={"DUBAN_CONFIG": str(path)}).web.port == 9999


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[database]\nurl = 'sqlite:///data/x.db'\n"), environ={})
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'x.db'}"


def test_secrets_are_not_in_the_repository_config() -> None:
    text = (Path(__file__).resolve().parent.parent / "config.toml").read_text(encoding="utf-8")
    assert "token =" not in text.replace("# token", "")
    assert "secret =" not in text.replace("# secret", "")


def test_duplicate_checkpoint_ids_are_refused(tmp_path: Path) -> None:
    one = "[[checkpoints]]\nid = 'q1'\ntitle = 'a'\ndue = 2024-03-25T18:00:00\n"
    with pytest.raises(ConfigError, match="checkpoint ids repeat: q1"):
        load_settings(write(tmp_path, one + one), environ={})


def test_a_short_dashboard_secret_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[web\] dashboard_secret.*at least 16 characters"):
        load_settings(write(tmp_path, ""), environ={"DUBAN_WEB_DASHBOARD_SECRET": "hunter2"})


def test_a_trusted_proxy_must_be_an_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[web\] trusted_proxies"):
        load_settings(write(tmp_path, "[web]\ntrusted_proxies = ['proxy.local']\n"), environ={})


def test_an_old_outbox_section_with_max_attempts_still_loads_and_keeps_retrying_within_the_cap(
    tmp_path: Path,
) -> None:
    settings = load_settings(write(tmp_path, '[outbox]\nretry_base = "2s"\nmax_attempts = 10\n'), environ={})
    assert settings.outbox.max_attempts == 10  # accepted, not used: delivery retries while a message matters
    assert settings.outbox.retry_cap == timedelta(minutes=5) and settings.outbox.alert_after == timedelta(minutes=15)
