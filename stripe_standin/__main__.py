"""`python -m stripe_standin`: run the stand-in in the foreground.

    python -m stripe_standin --port 12111 \\
        --webhook-url http://127.0.0.1:8000/v1/webhooks/stripe --webhook-secret whsec_... \\
        --sepa-delay 3 [--fault-5xx 0.1 --fault-429 0.05 --webhook-drop 0.2 --fault-seed 7]
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import StandinConfig
from .server import PortInUse, bind, make_server

PORT_ENV = "MAHNWERK_STRIPE_STANDIN_PORT"

# Stripe retries for up to 3 days with exponential backoff (docs.stripe.com/webhooks); the
# exact steps are not published, these approximate them.
LIVE_WEBHOOK_SCHEDULE = {
    "webhook_retry_delay": 60.0,
    "webhook_max_attempts": 30,
    "webhook_retry_max_delay": 12 * 3600.0,
    "webhook_retry_horizon": 3 * 86400.0,
}


def _parser(default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_standin",
        description="Local stand-in for the Stripe API subset Mahnwerk uses.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=default_port,
        help=f"default: ${PORT_ENV} or 12111",
    )
    parser.add_argument(
        "--webhook-url",
        action="append",
        default=[],
        help="endpoint for signed webhooks (repeatable)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_mahnwerk_dev"),
        help="signing secret (default: $STRIPE_WEBHOOK_SECRET or whsec_mahnwerk_dev)",
    )
    parser.add_argument(
        "--connect-webhook-url",
        action="append",
        default=[],
        help="Stripe Connect endpoint: connected accounts' events (repeatable)",
    )
    parser.add_argument(
        "--connect-webhook-secret",
        default=os.environ.get("STRIPE_CONNECT_WEBHOOK_SECRET", "whsec_mahnwerk_connect_dev"),
        help="its signing secret (default: $STRIPE_CONNECT_WEBHOOK_SECRET or "
        "whsec_mahnwerk_connect_dev)",
    )
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        help="a connected account to create at start, acct_… (repeatable)",
    )
    parser.add_argument("--sepa-delay", type=float, default=3.0, help="seconds in processing")
    parser.add_argument("--sepa-long-delay", type=float, default=None)
    parser.add_argument("--dispute-delay", type=float, default=None)
    parser.add_argument("--webhook-retry-delay", type=float, default=1.0)
    parser.add_argument("--webhook-max-attempts", type=int, default=4)
    parser.add_argument(
        "--webhook-retry-max-delay", type=float, default=None, help="cap on one backoff (s)"
    )
    parser.add_argument(
        "--webhook-retry-horizon",
        type=float,
        default=3 * 86400.0,
        help="give up retrying this long after the first attempt (s; Stripe: 3 days)",
    )
    parser.add_argument(
        "--webhook-live-schedule",
        action="store_true",
        help="Stripe-like redelivery: first retry after 60 s, doubling, at most 12 h apart, "
        "for 3 days (overrides the other webhook retry flags)",
    )
    parser.add_argument(
        "--search-lag",
        type=float,
        default=0.0,
        help="seconds before a new PaymentIntent is found by search (Stripe: under a minute)",
    )
    limits = parser.add_argument_group("rate limits (see stripe_standin/ratelimit.py)")
    limits.add_argument(
        "--rate-limit",
        action="store_true",
        help="enforce Stripe's per-account rate limits (429 rate_limit)",
    )
    limits.add_argument("--rate-limit-global", type=float, default=100.0, help="requests/s")
    limits.add_argument(
        "--rate-limit-endpoint", type=float, default=25.0, help="requests/s per endpoint"
    )
    limits.add_argument("--rate-limit-search", type=float, default=20.0, help="searches/s")
    parser.add_argument(
        "--strict-attach",
        action="store_true",
        help="decline test cards at attach, as Stripe's card check does",
    )
    faults = parser.add_argument_group("fault injection (see stripe_standin/faults.py)")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds before each request")
    faults.add_argument("--fault-5xx", type=float, default=0.0, help="rate of 500 api_error")
    faults.add_argument("--fault-429", type=float, default=0.0, help="rate of 429 rate_limit")
    faults.add_argument(
        "--fault-timeout", type=float, default=0.0, help="rate of requests held too long"
    )
    faults.add_argument("--fault-timeout-seconds", type=float, default=90.0)
    faults.add_argument("--webhook-drop", type=float, default=0.0, help="rate of lost webhooks")
    faults.add_argument("--fault-seed", type=int, default=None, help="seed: reproducible faults")
    return parser


def main(argv: list[str] | None = None) -> int:
    env_port = os.environ.get(PORT_ENV, "").strip() or "12111"
    if not env_port.isdigit() or not 0 < int(env_port) < 65536:
        print(f"error: {PORT_ENV} must be a port number, not {env_port!r}", file=sys.stderr)
        return 2
    args = _parser(int(env_port)).parse_args(argv)
    retries = (
        LIVE_WEBHOOK_SCHEDULE
        if args.webhook_live_schedule
        else {
            "webhook_retry_delay": args.webhook_retry_delay,
            "webhook_max_attempts": args.webhook_max_attempts,
            "webhook_retry_max_delay": args.webhook_retry_max_delay,
            "webhook_retry_horizon": args.webhook_retry_horizon,
        }
    )
    try:
        settings = StandinConfig.from_mapping(
            {
                "host": args.host,
                "port": args.port,
                "webhook_url": args.webhook_url,
                "webhook_secret": args.webhook_secret,
                "connect_webhook_url": args.connect_webhook_url,
                "connect_webhook_secret": args.connect_webhook_secret,
                "accounts": args.account,
                "sepa_delay": args.sepa_delay,
                "sepa_long_delay": args.sepa_long_delay,
                "dispute_delay": args.dispute_delay,
                **retries,
                "search_lag": args.search_lag,
                "rate_limit": args.rate_limit,
                "rate_limit_global": args.rate_limit_global,
                "rate_limit_endpoint": args.rate_limit_endpoint,
                "rate_limit_search": args.rate_limit_search,
                "strict_attach": args.strict_attach,
                "latency": args.latency,
                "fault_5xx": args.fault_5xx,
                "fault_429": args.fault_429,
                "fault_timeout": args.fault_timeout,
                "fault_timeout_seconds": args.fault_timeout_seconds,
                "webhook_drop": args.webhook_drop,
                "fault_seed": args.fault_seed,
                "freeze_gc": True,
            }
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(settings.host, settings.port)
    except PortInUse:
        print(f"error: port {settings.port} is already in use ({PORT_ENV})", file=sys.stderr)
        return 2
    settings.port = sock.getsockname()[1]
    print(f"stripe stand-in listening on http://{settings.host}:{settings.port}", flush=True)
    try:
        make_server(settings).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
