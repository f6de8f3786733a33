"""Settings from PREFCENTER_* variables; bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefcenter.config import ConfigError, load_settings, production_warnings, resolve_secret_key


def test_defaults() -> None:
    s = load_settings({})
    assert s.database_url == "sqlite:///./prefcenter.db" and s.port == 8000 and s.host == "127.0.0.1"
    assert s.sqlite_path == Path("prefcenter.db") and s.policy_path == Path("policies/default.toml")
    assert s.env == "development" and s.smtp_tls == "none"


def test_environment_values_are_decoded() -> None:
    s = load_settings(
        {
            "PREFCENTER_PORT": "9000",
            "PREFCENTER_LINK_KEYS": "k" * 16 + ", " + "j" * 16,
            "OTHER": "x",
            "PREFCENTER_DATABASE_URL": "sqlite:////var/lib/p.db",
        }
    )
    assert s.port == 9000 and s.link_keys == ("k" * 16, "j" * 16) and s.sqlite_path == Path("/var/lib/p.db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREFCENTER_PORT": "eighty"}, "PREFCENTER_PORT"),
        ({"PREFCENTER_PORT": "70000"}, "PREFCENTER_PORT"),
        ({"PREFCENTER_SMTP_TLS": "maybe"}, "PREFCENTER_SMTP_TLS"),
        ({"PREFCENTER_ENV": "staging"}, "PREFCENTER_ENV"),
        ({"PREFCENTER_SECRET_KEY": "short"}, "PREFCENTER_SECRET_KEY"),
        ({"PREFCENTER_ENV": "production"}, "PREFCENTER_SECRET_KEY"),
        ({"PREFCENTER_LINK_KEYS": "tiny"}, "PREFCENTER_LINK_KEYS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_unsupported_database_url_is_a_clear_error() -> None:
    s = load_settings({"PREFCENTER_DATABASE_URL": "mysql://x"})
    with pytest.raises(ConfigError, match="PREFCENTER_DATABASE_URL"):
        _ = s.sqlite_path


def test_development_secret_is_generated_once_and_persisted(tmp_path: Path) -> None:
    s = load_settings({"PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    first = resolve_secret_key(s)
    assert resolve_secret_key(s) == first and len(first) >= 32
    key_file = tmp_path / "a.db.key"
    assert key_file.stat().st_mode & 0o077 == 0


def test_production_warnings() -> None:
    """COMPLIANCE A1: a non-https public URL is logged as a warning in production (and plain SMTP too)."""
    secret = {"PREFCENTER_SECRET_KEY": "s" * 20}
    assert production_warnings(load_settings({**secret})) == []  # development: nothing to say
    prod = {**secret, "PREFCENTER_ENV": "production"}
    warnings = production_warnings(load_settings(prod))
    assert len(warnings) == 2 and "PREFCENTER_PUBLIC_URL" in warnings[0] and "SMTP_TLS" in warnings[1]
    good = {**prod, "PREFCENTER_PUBLIC_URL": "https://prefs.example", "PREFCENTER_SMTP_TLS": "starttls"}
    assert production_warnings(load_settings(good)) == []
