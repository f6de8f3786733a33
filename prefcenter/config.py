"""Settings from ``PREFCENTER_*`` environment variables, decoded into a msgspec Struct.

A bad value fails start-up with the variable's name and the reason; nothing is guessed.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import structlog

PREFIX = "PREFCENTER_"

log = structlog.get_logger("prefcenter.config")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    database_url: str = "sqlite:///./prefcenter.db"
    secret_key: str | None = None
    link_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: Port = 8000
    sms_program: str = "prefcenter"
    sms_help: str | None = None
    policy_dir: str = "./policies"
    policy: str = "default.toml"
    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 1025
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "prefcenter <noreply@localhost>"
    webhook_url: str | None = None
    env: Literal["development", "production"] = "development"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The label recorded as notice_version for consents given on prefcenter's own pages.
    page_notice_version: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] = "pages-v1"
    # How long an API key lookup is cached in a process (a revoked key stops working within this).
    key_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file named by ``database_url`` (``sqlite:///relative`` or ``sqlite:////absolute``)."""
        if not self.database_url.startswith("sqlite:///"):
            raise ConfigError(
                f"{PREFIX}DATABASE_URL: only sqlite:///path URLs are supported by this build, "
                f"got {self.database_url.split(':', 1)[0]}://..."
            )
        return Path(self.database_url[len("sqlite:///") :])

    @property
    def policy_path(self) -> Path:
        return Path(self.policy_dir) / self.policy

    @property
    def production(self) -> bool:
        return self.env == "production"


_FIELD_AT = re.compile(r"- at `\$\.(?P<field>[A-Za-z_]+)")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Decode settings from the environment; ``overrides`` (e.g. CLI flags) win over it."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    fields = set(Settings.__struct_fields__)
    for key, value in environ.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in fields:
            continue  # unknown PREFCENTER_ variables are ignored, like every 12-factor app does
        if name == "link_keys":
            raw[name] = tuple(k.strip() for k in value.split(",") if k.strip())
        elif value == "" and name not in ("secret_key",):
            continue
        else:
            raw[name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        match = _FIELD_AT.search(str(exc))
        var = f"{PREFIX}{match.group('field').upper()}" if match else "configuration"
        reason = str(exc).split(" - at ")[0]
        raise ConfigError(f"{var}: {reason}") from None
    if settings.secret_key is not None and len(settings.secret_key) < 16:
        raise ConfigError(f"{PREFIX}SECRET_KEY: must be at least 16 characters")
    if any(len(k) < 16 for k in settings.link_keys):
        raise ConfigError(f"{PREFIX}LINK_KEYS: every key must be at least 16 characters")
    if settings.production and settings.secret_key is None:
        raise ConfigError(f"{PREFIX}SECRET_KEY: required when {PREFIX}ENV=production")
    return settings


def production_warnings(settings: Settings) -> list[str]:
    """Settings that work but should not in production (logged by ``serve`` and ``dispatch``)."""
    if not settings.production:
        return []
    warnings = []
    if not settings.public_url.startswith("https://"):
        warnings.append(
            "PREFCENTER_PUBLIC_URL is not https: unsubscribe and preference links in messages are sent "
            "in the clear (RFC 8058 one-click URIs should be https)"
        )
    if settings.smtp_tls == "none":
        warnings.append("PREFCENTER_SMTP_TLS=none: email goes to the relay unencrypted")
    return warnings


def resolve_secret_key(settings: Settings) -> str:
    """The key for pseudonyms; in development a generated one is persisted beside the database."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.sqlite_path.with_name(settings.sqlite_path.name + ".key")
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    log.warning(
        "generated a development secret key; set PREFCENTER_SECRET_KEY in production",
        path=str(path),
    )
    return key
