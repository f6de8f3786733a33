"""The sender's identity settings (issue 16 item 5): PREFCENTER_CONTROLLER_NAME, PREFCENTER_POSTAL_ADDRESS
and PREFCENTER_PRIVACY_URL are checked at start-up and required in production (COMPLIANCE 15, 18, 27)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefcenter.config import ConfigError, identity_warnings, load_settings
from prefcenter.services.demo import DEMO_IDENTITY, with_demo_identity

IDENTITY = {
    "PREFCENTER_CONTROLLER_NAME": "Shop Ltd",
    "PREFCENTER_POSTAL_ADDRESS": "1 High St, Town",
    "PREFCENTER_PRIVACY_URL": "https://shop.example/privacy",
}
PRODUCTION = {"PREFCENTER_ENV": "production", "PREFCENTER_SECRET_KEY": "s" * 20}


@pytest.mark.parametrize("missing", sorted(IDENTITY))
def test_compliance_27_production_without_a_variable_fails_naming_it(missing: str) -> None:
    """COMPLIANCE items 27 and 15: production refuses to start without the sender's name, postal address
    or privacy notice, naming the variable (an empty value counts as unset)."""
    env = {**PRODUCTION, **IDENTITY}
    del env[missing]
    with pytest.raises(ConfigError, match=f"^{missing}: required when PREFCENTER_ENV=production"):
        load_settings(env)
    with pytest.raises(ConfigError, match=f"^{missing}: required"):
        load_settings({**env, missing: ""})
    assert load_settings({**PRODUCTION, **IDENTITY}).controller.name == "Shop Ltd"


def test_production_without_any_names_all_three() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(PRODUCTION)
    assert str(caught.value).startswith(
        "PREFCENTER_CONTROLLER_NAME, PREFCENTER_POSTAL_ADDRESS, PREFCENTER_PRIVACY_URL: required when"
    )


@pytest.mark.parametrize("command", [["serve"], ["dispatch"]])
def test_compliance_27_production_start_up_fails_with_the_variable_named(
    tmp_path: Path, command: list[str]
) -> None:
    """COMPLIANCE item 27: `prefcenter serve` and `prefcenter dispatch` in production without the
    identity stop before serving or sending, exit non-zero and name the missing variable on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFCENTER_")}
    env.update(
        PRODUCTION,
        PREFCENTER_DATABASE_URL=f"sqlite:///{tmp_path}/p.db",
        PREFCENTER_CONTROLLER_NAME="Shop Ltd",
        PREFCENTER_PRIVACY_URL="https://shop.example/privacy",
        PREFCENTER_PORT="1",  # never reached: it would fail to bind
    )
    result = subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PREFCENTER_POSTAL_ADDRESS: required when PREFCENTER_ENV=production" in result.stderr
    assert "PREFCENTER_CONTROLLER_NAME" not in result.stderr and not (tmp_path / "p.db").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PREFCENTER_PRIVACY_URL", "ftp://shop.example/privacy"),
        ("PREFCENTER_PRIVACY_URL", "shop.example/privacy"),
        ("PREFCENTER_PRIVACY_URL", "https://"),
        ("PREFCENTER_PRIVACY_URL", "https://shop.example/our privacy"),
        ("PREFCENTER_PRIVACY_URL", "javascript:alert(1)"),
        ("PREFCENTER_CONTROLLER_NAME", "   "),
        ("PREFCENTER_CONTROLLER_NAME", "Shop\nLtd"),
        ("PREFCENTER_CONTROLLER_NAME", "Shop\x07Ltd"),
        ("PREFCENTER_CONTROLLER_NAME", "Shop \u202eLtd"),  # a bidi override would reorder the footer
        ("PREFCENTER_CONTROLLER_NAME", "x" * 301),
        ("PREFCENTER_POSTAL_ADDRESS", " \n \n"),
        ("PREFCENTER_POSTAL_ADDRESS", "1 High St\tTown"),
    ],
)
def test_bad_identity_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings({**IDENTITY, variable: value})


def test_identity_values_are_normalised() -> None:
    """The postal address may span lines (joined with ", ", a line's trailing comma and blank lines
    dropped) and contain commas; values are stripped; a Persian name keeps its zero-width non-joiner."""
    s = load_settings(
        {
            "PREFCENTER_CONTROLLER_NAME": "  فروشگاه\u200cها  ",
            "PREFCENTER_POSTAL_ADDRESS": "Sklep Sp. z o.o.,\r\nul. Długa 5\n\n  00-950 Warszawa \n",
            "PREFCENTER_PRIVACY_URL": " http://shop.example/privacy ",
        }
    )
    assert s.controller.name == "فروشگاه\u200cها"
    assert s.controller.postal_address == "Sklep Sp. z o.o., ul. Długa 5, 00-950 Warszawa"
    assert s.controller.privacy_url == "http://shop.example/privacy"


def test_development_falls_back_and_warns() -> None:
    """Development without the identity starts, names the SMS program as sender and warns, naming the
    variables; the From follows the name."""
    s = load_settings({"PREFCENTER_SMS_PROGRAM": "ShopTexts"})
    assert (s.controller.name, s.controller.postal_address, s.controller.privacy_url) == (
        "ShopTexts",
        None,
        None,
    )
    assert s.smtp_from == "ShopTexts <noreply@localhost>"
    (warning,) = identity_warnings(s)
    for name in IDENTITY:
        assert name in warning
    assert identity_warnings(load_settings(IDENTITY)) == []
    assert (
        "PREFCENTER_PRIVACY_URL"
        in identity_warnings(load_settings({**IDENTITY, "PREFCENTER_PRIVACY_URL": ""}))[0]
    )


def test_default_from_is_the_controller_name_encoded() -> None:
    """COMPLIANCE item 27: the default From uses the controller's name, quoted or RFC 2047-encoded."""
    assert load_settings(IDENTITY).smtp_from == "Shop Ltd <noreply@localhost>"
    assert (
        load_settings({"PREFCENTER_CONTROLLER_NAME": "ACME, Inc."}).smtp_from
        == '"ACME, Inc." <noreply@localhost>'
    )
    encoded = load_settings({"PREFCENTER_CONTROLLER_NAME": "Sklep Żabka"}).smtp_from
    assert encoded.isascii() and encoded.startswith("=?utf-8?") and encoded.endswith(" <noreply@localhost>")
    assert (
        load_settings({**IDENTITY, "PREFCENTER_SMTP_FROM": "news@shop.example"}).smtp_from
        == "news@shop.example"
    )


def test_no_unknown_variable_warning_for_the_identity() -> None:
    from prefcenter.config import unknown_variable_warnings

    assert unknown_variable_warnings(IDENTITY) == []
    assert "PREFCENTER_PRIVACY_URL" in unknown_variable_warnings({"PREFCENTER_PRIVACY_ULR": "x"})[0]


def test_demo_fills_in_example_identity_only_where_unset() -> None:
    """`serve --demo-sink` uses example values, but never over ones the operator set."""
    s = with_demo_identity(load_settings({}))
    assert (s.controller_name, s.postal_address, s.privacy_url) == tuple(DEMO_IDENTITY.values())
    assert identity_warnings(s) == []
    s = with_demo_identity(load_settings({"PREFCENTER_CONTROLLER_NAME": "Mine"}))
    assert s.controller_name == "Mine" and s.privacy_url == DEMO_IDENTITY["privacy_url"]


def test_plain_http_privacy_url_is_a_production_warning() -> None:
    from prefcenter.config import production_warnings

    prod = {
        **PRODUCTION,
        **IDENTITY,
        "PREFCENTER_PUBLIC_URL": "https://p.example",
        "PREFCENTER_SMTP_TLS": "tls",
    }
    assert production_warnings(load_settings(prod)) == []
    http = load_settings({**prod, "PREFCENTER_PRIVACY_URL": "http://shop.example/privacy"})
    assert production_warnings(http) == ["PREFCENTER_PRIVACY_URL is not https"]
