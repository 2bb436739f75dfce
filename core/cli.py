"""The `mahnwerk` command (SPEC §1): the embedded dev stack, the production processes, tools.

Every subcommand imports what it needs only when it runs, so `mahnwerk worker` does not pay
for FastAPI and `mahnwerk --help` answers instantly. A bad setting is one line on stderr and
exit code 2 (`ConfigError`), never a traceback: the person reading it is configuring a
deployment, not debugging Python.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from core.seller import require_complete_seller
from core.settings import PROJECT_ROOT, ConfigError, check_startup, load_settings


def _check_temporal_options() -> None:
    """TLS / API key for Temporal (core.temporal.connection_options): one line if broken."""
    from core.temporal import connection_options

    try:
        connection_options()
    except ValueError as exc:
        raise ConfigError(f"configuration error: {exc}") from None


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


# -- subcommands ------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    from core.devstack import run_dev

    return run_dev(
        port=args.port,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        demo_data=not args.no_demo_data,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    # A bad setting is one line here, before any connection is attempted; so is a missing
    # secret or a dev default outside `mahnwerk dev` (DESIGN.md decision 14).
    settings = load_settings()
    require_complete_seller(settings)  # notices need the seller's bank and legal details
    check_startup(settings, "worker")
    _check_temporal_options()
    import worker

    worker.main()
    return 0


def cmd_worker_health(args: argparse.Namespace) -> int:
    """The worker container's health check: healthy while the worker's heartbeat file
    (MAHNWERK_WORKER_HEALTH_FILE, touched every 10 s while Temporal answers) is fresh."""
    import time

    settings = load_settings()
    path = settings.worker_health_file
    if path is None:
        raise ConfigError("configuration error: MAHNWERK_WORKER_HEALTH_FILE: not set")
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {path} does not exist (worker starting or never connected)")
        return 1
    if age > args.max_age:
        print(f"unhealthy: last heartbeat {age:.0f} s ago (more than {args.max_age:g} s)")
        return 1
    print(f"healthy: last heartbeat {age:.0f} s ago")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from core.logging import configure_logging

    settings = load_settings()  # fail before uvicorn starts, with one line
    require_complete_seller(settings)
    check_startup(settings, "api")
    _check_temporal_options()
    configure_logging(settings.log_level)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        # uvicorn's own loggers propagate to ours (one line each, with the request id);
        # the access log is the middleware's request line (api/middleware.py).
        log_config=None,
        access_log=False,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from core.devstack import apply_migrations, redact_url

    settings = load_settings()
    apply_migrations(settings.database_url)
    print(f"migrations applied: {redact_url(settings.database_url)} is at the latest revision")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from core.devstack import DEV_KEYS_FILE, load_or_create_dev_keys

    # Run from a second terminal next to `mahnwerk dev`, the demo finds the dev stack's keys
    # (platform and support) without the user exporting anything.
    if not os.environ.get("MAHNWERK_API_KEYS") and DEV_KEYS_FILE.exists():
        os.environ["MAHNWERK_API_KEYS"] = load_or_create_dev_keys(DEV_KEYS_FILE)
    from core import demo

    result = demo.main(args)
    return result if isinstance(result, int) else 0


def cmd_standin(args: argparse.Namespace) -> int:
    settings = load_settings()
    port = args.port or settings.stripe_standin_port
    webhook_url = args.webhook_url or f"{settings.public_url.rstrip('/')}/v1/webhooks/stripe"
    secret = args.webhook_secret or settings.stripe_webhook_secret.get_secret_value()
    sys.argv = [
        "stripe_standin",
        "--host", args.host,
        "--port", str(port),
        "--webhook-url", webhook_url,
        "--webhook-secret", secret,
        "--sepa-delay", f"{args.sepa_delay:g}",
    ]  # fmt: skip
    if str(PROJECT_ROOT) not in sys.path:  # also works from a source checkout
        sys.path.append(str(PROJECT_ROOT))
    runpy.run_module("stripe_standin", run_name="__main__", alter_sys=True)
    return 0


def cmd_base_rates(args: argparse.Namespace) -> int:
    """Print the § 247 BGB base-rate table in force, when it was checked, and what is missing.

    Reads only MAHNWERK_BASE_RATES (not the other settings): an operator checking the table
    need not configure a database. Exit 1 when today's half-year has no rate, so a cron job
    or a deployment check can alert on it.
    """
    import json
    from dataclasses import asdict
    from datetime import date

    from core.settings import parse_base_rates
    from domain.interest import (
        BASE_RATES,
        MARGIN_BP,
        base_rate_coverage,
        format_rate,
        with_rates,
    )

    raw = os.environ.get("MAHNWERK_BASE_RATES", "")
    try:
        rates = with_rates(parse_base_rates(raw), BASE_RATES)
    except ValueError as exc:
        raise ConfigError(f"configuration error: MAHNWERK_BASE_RATES: {exc}") from None
    try:
        today = (date.fromisoformat(args.today) if args.today else date.today()).isoformat()
    except ValueError:
        print(f"--today must be an ISO date (YYYY-MM-DD), got {args.today!r}", file=sys.stderr)
        return 2
    cov = base_rate_coverage(rates, today)
    if args.json:
        rows = [asdict(row) for row in rates]
        print(json.dumps({"rates": rows, "coverage": asdict(cov)}, indent=2, ensure_ascii=False))
        return 0 if cov.covered else 1
    print(f"§ 247 BGB base rates (built-in rows last checked {cov.checked}; source: Bundesbank)")
    print(f"{'from':<12}{'base':>8}{'consumer +5':>14}{'business +9':>14}  source")
    for row in rates:
        print(
            f"{row.effective:<12}{format_rate(row.rate_bp, 'en'):>8}"
            f"{format_rate(row.rate_bp + MARGIN_BP['consumer'], 'en'):>14}"
            f"{format_rate(row.rate_bp + MARGIN_BP['business'], 'en'):>14}  {row.source}"
        )
    if cov.covered:
        print(f"today {cov.today}: covered (rates known up to {cov.covered_until})")
    else:
        print(f"today {cov.today}: NOT covered; interest is computed up to {cov.covered_until}")
    if cov.missing:
        print(f"missing: {', '.join(cov.missing)}")
    if not cov.next_known:
        print(f"next change {cov.next_change}: not in the table yet")
    if cov.missing or not cov.next_known:
        print(
            "add a rate once the Bundesbank has announced it: "
            "MAHNWERK_BASE_RATES=YYYY-MM-DD:basis_points[,…] (1.27 % = 127)"
        )
    return 0 if cov.covered else 1


def cmd_events_secret(args: argparse.Namespace) -> int:
    """Print the Standard Webhooks secret (`whsec_…`) a platform configures to verify the
    `webhook-signature` of Mahnwerk's events, derived from MAHNWERK_EVENTS_SECRET (read from
    the environment only; docs/events.md)."""
    from activities.events import standard_secret
    from core.settings import DEV_EVENTS_SECRET

    secret = os.environ.get("MAHNWERK_EVENTS_SECRET", "")
    if not secret:
        if os.environ.get("MAHNWERK_ENV") != "dev":
            print("MAHNWERK_EVENTS_SECRET is not set", file=sys.stderr)
            return 2
        secret = DEV_EVENTS_SECRET
    print(standard_secret(secret))
    return 0


# -- parser -----------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """The month's bookings as DATEV-importable CSV (core/export.py, docs/invoices.md)."""
    from datetime import date

    from core.db import make_engine, make_session_factory
    from core.export import export_month, last_month, parse_accounts

    settings = load_settings()
    month = args.month or last_month(date.today())
    try:
        accounts = parse_accounts(settings.export_accounts)
        engine = make_engine(settings.database_url)
        try:
            with make_session_factory(engine)() as s:
                text = export_month(s, month=month, seller_id=args.seller, accounts=accounts)
        finally:
            engine.dispose()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = text.encode(args.encoding, errors="replace")
    if args.out in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(args.out).write_bytes(data)
        print(
            f"{text.count(chr(10)) - 1} bookings of {month} written to {args.out}", file=sys.stderr
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mahnwerk",
        description="Mahnwerk: dunning engine on Temporal and Stripe.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    dev = add("dev", cmd_dev, "run the embedded stack in the foreground (what `make run` runs)")
    dev.add_argument("--port", type=_port, default=None, help="API port (default 8000)")
    dev.add_argument(
        "--temporal-port", type=_port, default=None, help="Temporal frontend port (default 7233)"
    )
    dev.add_argument(
        "--ui-port", type=_port, default=None, help="Temporal Web UI port (default 8233)"
    )
    dev.add_argument("--no-demo-data", action="store_true", help="do not create the demo contracts")

    add("worker", cmd_worker, "run a Temporal worker (production process)")

    health = add(
        "worker-health",
        cmd_worker_health,
        "exit 0 if the worker's heartbeat (MAHNWERK_WORKER_HEALTH_FILE) is fresh",
    )
    health.add_argument(
        "--max-age", type=float, default=60.0, help="seconds (default 60: six heartbeats)"
    )

    api = add("api", cmd_api, "serve the HTTP API (production process)")
    api.add_argument("--host", default=None, help="bind address (default MAHNWERK_API_HOST)")
    api.add_argument("--port", type=_port, default=None, help="port (default MAHNWERK_API_PORT)")

    add("migrate", cmd_migrate, "apply the database migrations")

    add(
        "events-secret",
        cmd_events_secret,
        "print the Standard Webhooks secret (whsec_…) for MAHNWERK_EVENTS_SECRET",
    )

    demo = add("demo", cmd_demo, "create demo contracts against a running stack")
    demo.add_argument(
        "--api-url",
        default=None,
        help="the API (default MAHNWERK_PUBLIC_URL, http://127.0.0.1:8000)",
    )
    demo.add_argument(
        "--api-key",
        default=None,
        help="a platform API key (default: MAHNWERK_API_KEYS or the dev keys)",
    )

    rates = add(
        "base-rates",
        cmd_base_rates,
        "print the § 247 BGB base-rate table, when it was checked and what is missing "
        "(exit 1 when today is not covered)",
    )
    rates.add_argument("--today", default=None, help="judge coverage on this ISO date")
    rates.add_argument("--json", action="store_true", help="machine-readable output")

    export = add(
        "export",
        cmd_export,
        "write a month's invoices, credit notes, payments, refunds, fees and write-offs as "
        "DATEV-importable CSV (Buchungsstapel columns)",
    )
    export.add_argument("--month", default=None, help="YYYY-MM (default: last month)")
    export.add_argument("--seller", default="default", help="seller id (default: default)")
    export.add_argument("--out", default=None, help="file to write (default: stdout)")
    export.add_argument(
        "--encoding",
        default="cp1252",
        choices=("cp1252", "utf-8"),
        help="DATEV imports ANSI (cp1252, the default)",
    )

    standin = add("standin", cmd_standin, "run the Stripe stand-in (test mode)")
    standin.add_argument("--host", default="127.0.0.1")
    standin.add_argument(
        "--port", type=_port, default=None, help="default MAHNWERK_STRIPE_STANDIN_PORT (12111)"
    )
    standin.add_argument(
        "--webhook-url", default=None, help="default MAHNWERK_PUBLIC_URL/v1/webhooks/stripe"
    )
    standin.add_argument("--webhook-secret", default=None, help="default STRIPE_WEBHOOK_SECRET")
    standin.add_argument(
        "--sepa-delay", type=float, default=5.0, help="seconds a SEPA debit stays processing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: parse, run, map errors to exit codes."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except ConfigError as exc:
        print(exc.code if isinstance(exc.code, str) else "configuration error", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
