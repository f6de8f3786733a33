"""Settings from PREFCENTER_* variables; bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefcenter.config import ConfigError, load_settings, production_warnings, resolve_secret_key

# the sender's identity, required in production (tests/unit/test_config_identity.py)
IDENTITY = {
    "PREFCENTER_CONTROLLER_NAME": "Shop Ltd",
    "PREFCENTER_POSTAL_ADDRESS": "1 High St, Town",
    "PREFCENTER_PRIVACY_URL": "https://shop.example/privacy",
}


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
    with pytest.raises(ConfigError, match="PREFCENTER_DATABASE_URL: use sqlite:///path or postgresql://"):
        load_settings({"PREFCENTER_DATABASE_URL": "mysql://x"})


def test_postgresql_needs_a_shared_secret_key() -> None:
    with pytest.raises(ConfigError, match="PREFCENTER_SECRET_KEY: required with PostgreSQL"):
        load_settings({"PREFCENTER_DATABASE_URL": "postgresql://u:pw@db:5432/p"})
    s = load_settings(
        {"PREFCENTER_DATABASE_URL": "postgresql://u:pw@db:5432/p", "PREFCENTER_SECRET_KEY": "k" * 16}
    )
    assert s.engine == "postgres" and s.database_label == "postgresql://u@db:5432/p"  # no password
    assert s.database_secrets == ("pw",)
    q = load_settings(
        {
            "PREFCENTER_DATABASE_URL": "postgresql:///p?user=u&password=qw&sslpassword=sq",
            "PREFCENTER_SECRET_KEY": "k" * 16,
        }
    )
    assert q.database_label == "postgresql:///p" and q.database_secrets == ("qw", "sq")
    with pytest.raises(ConfigError, match="names PostgreSQL, not a SQLite file"):
        _ = s.sqlite_path


def test_development_secret_is_generated_once_and_persisted(tmp_path: Path) -> None:
    s = load_settings({"PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    first = resolve_secret_key(s)
    assert resolve_secret_key(s) == first and len(first) >= 32
    key_file = tmp_path / "a.db.key"
    assert key_file.stat().st_mode & 0o077 == 0


def test_production_warnings() -> None:
    """COMPLIANCE A1: a non-https public URL is logged as a warning in production (and plain SMTP too)."""
    secret = {"PREFCENTER_SECRET_KEY": "s" * 20, **IDENTITY}
    assert production_warnings(load_settings({**secret})) == []  # development: nothing to say
    prod = {**secret, "PREFCENTER_ENV": "production"}
    warnings = production_warnings(load_settings(prod))
    assert len(warnings) == 2 and "PREFCENTER_PUBLIC_URL" in warnings[0] and "SMTP_TLS" in warnings[1]
    good = {**prod, "PREFCENTER_PUBLIC_URL": "https://prefs.example", "PREFCENTER_SMTP_TLS": "starttls"}
    assert production_warnings(load_settings(good)) == []


# -- the active policy is confined to PREFCENTER_POLICY_DIR (issue 9, item 11) -------------------------

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.mark.parametrize(
    "name",
    [
        "../pyproject.toml",
        "/etc/passwd",
        "sub/x.toml",
        "x.txt",
        "..\\pyproject.toml",
        "..toml",
        "a..b.toml",
        ".hidden.toml",
        "default.toml/",
        "default.toml\n",
    ],
)
def test_policy_must_be_a_bare_toml_name(name: str) -> None:
    with pytest.raises(ConfigError, match="PREFCENTER_POLICY:"):
        load_settings({"PREFCENTER_POLICY": name})
    with pytest.raises(ConfigError, match="PREFCENTER_POLICY:"):
        load_settings({}, policy=name)  # a CLI override is checked the same way


def test_default_policy_still_loads() -> None:
    from prefcenter.services.policies import active_policy_path, load_active_policy

    settings = load_settings({"PREFCENTER_POLICY_DIR": str(REPO_POLICIES)})
    assert settings.policy == "default.toml"
    assert active_policy_path(settings) == REPO_POLICIES / "default.toml"
    loaded = load_active_policy(settings)
    assert loaded.version.startswith("sha256:") and loaded.source == str(REPO_POLICIES / "default.toml")
    named = load_settings({"PREFCENTER_POLICY_DIR": str(REPO_POLICIES), "PREFCENTER_POLICY": "default.toml"})
    assert load_active_policy(named).version == loaded.version


def test_a_symlink_out_of_the_policy_folder_is_refused(tmp_path: Path) -> None:
    from prefcenter.services.policies import load_active_policy

    folder = tmp_path / "policies"
    folder.mkdir()
    outside = tmp_path / "outside.toml"
    outside.write_bytes((REPO_POLICIES / "default.toml").read_bytes())  # a valid policy, but elsewhere
    (folder / "evil.toml").symlink_to(outside)
    (folder / "passwd.toml").symlink_to("/etc/passwd")
    (folder / "real.toml").write_bytes(outside.read_bytes())
    (folder / "current.toml").symlink_to("real.toml")  # a link inside the folder is fine
    env = {"PREFCENTER_POLICY_DIR": str(folder)}
    for name in ("evil.toml", "passwd.toml"):
        with pytest.raises(ConfigError, match=r"PREFCENTER_POLICY:.*outside"):
            load_active_policy(load_settings({**env, "PREFCENTER_POLICY": name}))
    assert load_active_policy(load_settings({**env, "PREFCENTER_POLICY": "current.toml"})).version.startswith(
        "sha256:"
    )


def test_settings_built_without_load_settings_are_confined_too() -> None:
    import msgspec

    from prefcenter.config import Settings
    from prefcenter.services.policies import load_active_policy

    settings = msgspec.convert({"policy_dir": str(REPO_POLICIES), "policy": "../pyproject.toml"}, Settings)
    with pytest.raises(ConfigError, match="PREFCENTER_POLICY:"):
        load_active_policy(settings)


# -- issue 10: links follow `serve`'s host and port; the packaged policy; misspelt variables ----------


def test_public_url_follows_host_and_port_unless_set() -> None:
    assert load_settings({}).public_url == "http://127.0.0.1:8000"
    assert load_settings({"PREFCENTER_PORT": "8201"}).public_url == "http://127.0.0.1:8201"
    moved = load_settings({"PREFCENTER_HOST": "0.0.0.0", "PREFCENTER_PORT": "8201"}, port=8202)  # --port
    assert moved.public_url == "http://0.0.0.0:8202" == moved.listen_url
    assert load_settings({"PREFCENTER_HOST": "::1"}).public_url == "http://[::1]:8000"
    explicit = {"PREFCENTER_PORT": "8201", "PREFCENTER_PUBLIC_URL": "https://prefs.example"}
    assert load_settings(explicit).public_url == "https://prefs.example"
    assert load_settings(explicit).listen_url == "http://127.0.0.1:8201"
    assert load_settings({}, public_url="https://cli.example").public_url == "https://cli.example"
    assert load_settings({"PREFCENTER_PUBLIC_URL": ""}).public_url == "http://127.0.0.1:8000"  # empty: unset


def test_public_url_production_warning_covers_the_derived_url() -> None:
    prod = {"PREFCENTER_SECRET_KEY": "s" * 20, "PREFCENTER_ENV": "production", "PREFCENTER_SMTP_TLS": "tls"}
    prod.update(IDENTITY)
    warnings = production_warnings(load_settings({**prod, "PREFCENTER_PORT": "8443"}))
    assert len(warnings) == 1 and "PREFCENTER_PUBLIC_URL" in warnings[0]


def test_policy_folder_is_local_policies_else_the_packaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefcenter.config import packaged_dir
    from prefcenter.services.policies import active_policy_path, load_active_policy

    monkeypatch.chdir(tmp_path)  # no ./policies here: the policies shipped with the package
    packaged = packaged_dir("policies")
    assert (packaged / "default.toml").is_file() and (packaged / "tests").is_dir()
    settings = load_settings({})
    assert settings.policy_folder == packaged and active_policy_path(settings) == packaged / "default.toml"
    assert load_active_policy(settings).version.startswith("sha256:")

    (tmp_path / "policies").mkdir()  # a ./policies folder (a checkout): it is used, as before
    assert load_settings({}).policy_path == Path("policies/default.toml")

    other = tmp_path / "elsewhere"
    assert load_settings({"PREFCENTER_POLICY_DIR": str(other)}).policy_folder == other  # the override wins


def test_migrations_are_found_in_a_checkout() -> None:
    from prefcenter.store.sqlite import default_migrations_dir

    folder = default_migrations_dir()
    assert folder == REPO_POLICIES.parent / "migrations" / "sqlite"
    assert (folder / "0001_foundation.sql").is_file()


def test_a_misspelt_variable_names_the_nearest_setting_never_its_value() -> None:
    from prefcenter.config import unknown_variable_warnings

    secret = "hunter2-the-password"
    env = {
        "PREFCENTER_SMTP_POST": secret,
        "PREFCENTER_SMTP_PASWORD": secret,
        "prefcenter_port": "8001",
        "PREFCENTER_NOTHING_LIKE_IT": secret,
        "PREFCENTER_PORT": "8000",
        "PREFCENTER_SMTP_PORT": "25",
        "OTHER_PORT": "1",
    }
    warnings = unknown_variable_warnings(env)
    assert warnings == [
        "PREFCENTER_NOTHING_LIKE_IT is not a setting; it is ignored",
        "PREFCENTER_SMTP_PASWORD is not a setting; did you mean PREFCENTER_SMTP_PASSWORD?",
        "PREFCENTER_SMTP_POST is not a setting; did you mean PREFCENTER_SMTP_PORT?",
        "prefcenter_port is not a setting; did you mean PREFCENTER_PORT?",
    ]
    assert not any(secret in w for w in warnings)
    assert unknown_variable_warnings({"PREFCENTER_PUBLIC_URL": "x", "PREFCENTER_LOG_LEVEL": "info"}) == []
    assert load_settings(env).port == 8000  # still ignored, as before: a warning, not an error


def test_the_test_suites_own_variables_are_no_unknown_settings() -> None:
    """PREFCENTER_TEST_* belong to the test suite (README: PREFCENTER_TEST_ENGINES=sqlite skips the
    PostgreSQL run, PREFCENTER_TEST_POSTGRES_URL points it elsewhere): a service started under them, as
    the CLI tests start it, must not warn of them; seen as a second stderr line that failed seven
    CLI tests under `PREFCENTER_TEST_ENGINES=sqlite bash scripts/test`."""
    from prefcenter.config import unknown_variable_warnings

    env = {"PREFCENTER_TEST_ENGINES": "sqlite", "PREFCENTER_TEST_POSTGRES_URL": "postgresql://x@127.0.0.1/t"}
    assert unknown_variable_warnings(env) == []
    assert unknown_variable_warnings({"PREFCENTER_TESTS": "1"}) != []  # only the prefix, not a look-alike
