"""Settings from ``PREFCENTER_*`` environment variables, decoded into a msgspec Struct.

A bad value fails start-up with the variable's name and the reason; nothing is guessed.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Mapping
from email.utils import formataddr
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec
import structlog

PREFIX = "PREFCENTER_"
TEST_PREFIX = PREFIX + "TEST_"  # the test suite's variables (README), not settings

log = structlog.get_logger("prefcenter.config")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class Controller(msgspec.Struct, frozen=True, kw_only=True):
    """Who is speaking: the controller's name, postal address (one line) and privacy notice URL. The
    address and URL are None only in development when their variables are not set."""

    name: str
    postal_address: str | None
    privacy_url: str | None


IDENTITY_VARIABLES = ("controller_name", "postal_address", "privacy_url")


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # sqlite:///path (the embedded default) or postgresql://user@host:port/database (store/postgres)
    database_url: str = "sqlite:///./prefcenter.db"
    # PostgreSQL only: the schema prefcenter's tables live in (None: the role's search_path, i.e.
    # public), and each process's connection pool size.
    database_schema: Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}\Z")] | None = None
    database_pool_size: Annotated[int, msgspec.Meta(ge=2, le=200)] = 10
    secret_key: str | None = None
    link_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: Port = 8000
    sms_program: str = "prefcenter"
    sms_help: str | None = None
    # None: ./policies when the working directory has one (a checkout), else the packaged policies
    policy_dir: str | None = None
    policy: str = "default.toml"
    # PREFCENTER_PUBLIC_URL; None: links follow where `serve` listens (the ``public_url`` property)
    public_url_setting: str | None = msgspec.field(default=None, name="public_url")
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 1025
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    # PREFCENTER_SMTP_FROM; None: the controller's name at noreply@localhost (the ``smtp_from`` property)
    smtp_from_setting: str | None = msgspec.field(default=None, name="smtp_from")
    # Who is speaking (COMPLIANCE 15, 18, 27): named in every email footer, on the pages and in receipts;
    # required in production. Development without them: the name falls back to PREFCENTER_SMS_PROGRAM.
    controller_name: str | None = None
    postal_address: str | None = None
    privacy_url: str | None = None
    webhook_url: str | None = None
    env: Literal["development", "production"] = "development"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The prefix of the notice_version recorded for consents given on prefcenter's own pages: the version
    # is this, "-" and 12 hex digits of the hash of the page's notice texts (web/notice.py), <= 64 chars.
    page_notice_version: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,51}\Z")] = "pages-v1"
    # How long an API key lookup is cached in a process (a revoked key stops working within this).
    key_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    # How long a dispatcher's claim on a message lasts: after a crash, that long until another dispatcher
    # (or the restarted one, on PostgreSQL) sends it. Longer than a transport may take to answer.
    dispatch_lease_seconds: Annotated[float, msgspec.Meta(ge=5, le=3600)] = 300.0
    # Where `prefcenter dispatch` serves GET /metrics and /healthz (`serve` has its own); port 0: off.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464
    # A webhook delivery still failing this long after its event is given up (failed, and the customer's
    # later events go on).
    webhook_give_up_seconds: Annotated[float, msgspec.Meta(ge=60, le=30 * 86400)] = 86400.0
    # How often `serve` runs a pruning pass (the policy's [retention]; services/retention.py); 0: never
    # (then run `prefcenter prune` from cron).
    prune_interval_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] = 3600.0

    @property
    def engine(self) -> Literal["sqlite", "postgres"]:
        """Which store ``database_url`` names: ``sqlite:///path`` or ``postgresql://...``."""
        if self.database_url.startswith("sqlite:///"):
            return "sqlite"
        if self.database_url.startswith(("postgresql://", "postgres://")):
            return "postgres"
        raise ConfigError(
            f"{PREFIX}DATABASE_URL: use sqlite:///path or postgresql://user@host:port/database, "
            f"got {self.database_url.split(':', 1)[0]}://..."
        )

    @property
    def database_label(self) -> str:
        """The database for messages and logs: the SQLite path, or the PostgreSQL URL without its
        password."""
        if self.engine == "sqlite":
            return str(self.sqlite_path)
        url = urlsplit(self.database_url)
        host = url.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{url.port}" if url.port else ""
        user = f"{url.username}@" if url.username else ""
        return f"{url.scheme}://{user}{host}{port}{url.path}"  # no password, no query (it may hold one)

    @property
    def database_secrets(self) -> tuple[str, ...]:
        """The passwords the database URL holds (in its userinfo or query), for the log redaction."""
        url = urlsplit(self.database_url)
        found = [url.password or ""]
        found += [v for k, v in parse_qsl(url.query) if k in ("password", "sslpassword")]
        return tuple(v for v in found if v)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file named by ``database_url`` (``sqlite:///relative`` or ``sqlite:////absolute``)."""
        if self.engine != "sqlite":
            raise ConfigError(f"{PREFIX}DATABASE_URL: names PostgreSQL, not a SQLite file")
        return Path(self.database_url[len("sqlite:///") :])

    @property
    def listen_url(self) -> str:
        """``http://{host}:{port}``: where ``prefcenter serve`` listens (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The base of links in messages: PREFCENTER_PUBLIC_URL, or else where ``serve`` listens."""
        return self.public_url_setting or self.listen_url

    @property
    def controller(self) -> Controller:
        """The sender's identity as messages and pages show it (development fallbacks filled in)."""
        return Controller(
            name=self.controller_name or self.sms_program,
            postal_address=self.postal_address,
            privacy_url=self.privacy_url,
        )

    @property
    def smtp_from(self) -> str:
        """PREFCENTER_SMTP_FROM, or else ``"<controller name>" <noreply@localhost>`` (RFC 2047-encoded
        when the name is not ASCII)."""
        if self.smtp_from_setting:
            return self.smtp_from_setting
        return formataddr((self.controller.name, "noreply@localhost"), charset="utf-8")

    @property
    def policy_folder(self) -> Path:
        """PREFCENTER_POLICY_DIR; unset, ``./policies`` if the working directory has that folder (a
        checkout), else the policies shipped inside the package."""
        if self.policy_dir is not None:
            return Path(self.policy_dir)
        local = Path("policies")
        return local if local.is_dir() else packaged_dir("policies")

    @property
    def policy_path(self) -> Path:
        return self.policy_folder / self.policy

    @property
    def production(self) -> bool:
        return self.env == "production"


def packaged_dir(name: str) -> Path:
    """The data folder ``name`` (``migrations``, ``policies``) shipped inside the package: a wheel
    carries the repository's top-level folders as ``prefcenter/<name>`` (pyproject.toml maps them);
    a checkout (editable install, the tests) has only the top-level folder, beside the package."""
    packaged = importlib.resources.files("prefcenter") / name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    return Path(str(packaged))  # missing: errors downstream name this path


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``PREFCENTER_*`` variable (any case) that is no setting, naming the nearest
    known one. Only names: a value is never repeated (it may be a secret). ``PREFCENTER_TEST_*`` are the
    test suite's own (README), never the service's: no warning."""
    environ = os.environ if environ is None else environ
    fields = Settings.__struct_encode_fields__
    warnings = []
    for key in sorted(environ):
        if not key.upper().startswith(PREFIX) or key.upper().startswith(TEST_PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if key.startswith(PREFIX) and name in fields:
            continue  # a setting (the part after the prefix is read in any case)
        # compared without the shared prefix, which would make every name look alike
        close = difflib.get_close_matches(name, fields, n=1)
        if close:
            warnings.append(f"{key} is not a setting; did you mean {PREFIX}{close[0].upper()}?")
        else:
            warnings.append(f"{key} is not a setting; it is ignored")
    return warnings


_FIELD_AT = re.compile(r"- at `\$\.(?P<field>[A-Za-z_]+)")
# A policy is a file directly inside PREFCENTER_POLICY_DIR: a bare name, no separators, no "..".
_POLICY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,120}\.toml")


def check_policy_name(name: str) -> str:
    """``name`` if it is a bare ``*.toml`` file name (no path separators, no ``..``, not absolute);
    otherwise a ConfigError naming PREFCENTER_POLICY. Services/policies.py also checks that the resolved
    file lies in the folder (a symlink pointing out of it is refused there)."""
    if not _POLICY_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"{PREFIX}POLICY: must be the name of a .toml file directly inside {PREFIX}POLICY_DIR "
            f"(no path separators, no '..', not an absolute path), got {name!r}"
        )
    return name


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Decode settings from the environment; ``overrides`` (e.g. CLI flags) win over it."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    fields = set(Settings.__struct_encode_fields__)
    for key, value in environ.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in fields:
            continue  # unknown ones: unknown_variable_warnings(), logged at start-up by the CLI
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
    if settings.engine == "postgres" and settings.secret_key is None:
        raise ConfigError(
            f"{PREFIX}SECRET_KEY: required with PostgreSQL (every process of the deployment needs the same "
            "key, and there is no database file to keep a generated one beside)"
        )
    check_policy_name(settings.policy)
    settings = _check_identity(settings)
    return settings


IDENTITY_MAX = 300
# Bidi embeddings, overrides and isolates: pages and HTML isolate these values themselves (<bdi>).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(text: str) -> bool:
    """No control, surrogate, unassigned or line/paragraph-separator characters and no bidi controls;
    format characters such as the zero-width non-joiner (common in Persian) are text."""
    return not any(
        unicodedata.category(c) in ("Cc", "Cs", "Cn", "Zl", "Zp") or c in _BIDI_CONTROLS for c in text
    )


def _identity_text(var: str, value: str, *, lines: bool) -> str:
    """``value`` as one line of printable text: surrounding space stripped; with ``lines`` (the postal
    address), line breaks separate the address's lines, which are joined with ``", "`` (a line's own
    trailing comma dropped, blank lines skipped)."""
    parts = re.split(r"\r\n|\r|\n", value) if lines else [value]
    parts = [p.strip().rstrip(",").rstrip() if lines else p.strip() for p in parts]
    parts = [p for p in parts if p]
    text = ", ".join(parts)
    if not text:
        raise ConfigError(f"{PREFIX}{var.upper()}: must not be empty")
    if not _printable(text):
        what = "control characters" if lines else "line breaks or control characters"
        raise ConfigError(f"{PREFIX}{var.upper()}: must be printable text (no {what})")
    if len(text) > IDENTITY_MAX:
        raise ConfigError(f"{PREFIX}{var.upper()}: at most {IDENTITY_MAX} characters")
    return text


def _check_identity(settings: Settings) -> Settings:
    """Validate and normalise the controller's name, postal address and privacy URL; in production all
    three are required (the sender's identity in every commercial email, CAN-SPAM and GDPR Art. 13)."""
    changes: dict[str, str] = {}
    if settings.controller_name is not None:
        changes["controller_name"] = _identity_text("controller_name", settings.controller_name, lines=False)
    if settings.postal_address is not None:
        changes["postal_address"] = _identity_text("postal_address", settings.postal_address, lines=True)
    if settings.privacy_url is not None:
        url = settings.privacy_url.strip()
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in url)
            or len(url) > 2000
        ):
            raise ConfigError(
                f"{PREFIX}PRIVACY_URL: must be an absolute http:// or https:// URL with a host "
                "(no spaces), e.g. https://shop.example/privacy"
            )
        changes["privacy_url"] = url
    if changes:
        settings = msgspec.structs.replace(settings, **changes)
    if settings.production:
        missing = _missing_identity(settings)
        if missing:
            raise ConfigError(
                f"{', '.join(missing)}: required when {PREFIX}ENV=production (every commercial email "
                "names its sender and postal address; the pages name the controller and link the "
                "privacy notice)"
            )
    return settings


def _missing_identity(settings: Settings) -> list[str]:
    """The sender-identity variables that are not set."""
    return [f"{PREFIX}{v.upper()}" for v in IDENTITY_VARIABLES if getattr(settings, v) is None]


def identity_warnings(settings: Settings) -> list[str]:
    """Development without the sender's identity: one warning naming what is unset (logged by ``serve``
    and ``dispatch``); production refuses to start instead (``load_settings``)."""
    missing = _missing_identity(settings)
    if not missing:
        return []
    return [
        f"{', '.join(missing)} not set: emails and pages name the sender as "
        f"{settings.controller.name!r} with no postal address or privacy notice link; set them before "
        "sending commercial email (they are required when PREFCENTER_ENV=production)"
    ]


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
    if settings.privacy_url is not None and not settings.privacy_url.startswith("https://"):
        warnings.append("PREFCENTER_PRIVACY_URL is not https")
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
