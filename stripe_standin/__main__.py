"""`python -m stripe_standin`: run the stand-in in the foreground.

    python -m stripe_standin --port 12111 \\
        --webhook-url http://127.0.0.1:8000/v1/webhooks/stripe --webhook-secret whsec_... \\
        --sepa-delay 3
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import StandinConfig
from .server import PortInUse, bind, make_server

PORT_ENV = "MAHNWERK_STRIPE_STANDIN_PORT"


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
    parser.add_argument("--sepa-delay", type=float, default=3.0, help="seconds in processing")
    parser.add_argument("--sepa-long-delay", type=float, default=None)
    parser.add_argument("--dispute-delay", type=float, default=None)
    parser.add_argument("--webhook-retry-delay", type=float, default=1.0)
    parser.add_argument("--webhook-max-attempts", type=int, default=4)
    parser.add_argument(
        "--strict-attach",
        action="store_true",
        help="decline test cards at attach, as Stripe's card check does",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    env_port = os.environ.get(PORT_ENV, "").strip() or "12111"
    if not env_port.isdigit() or not 0 < int(env_port) < 65536:
        print(f"error: {PORT_ENV} must be a port number, not {env_port!r}", file=sys.stderr)
        return 2
    args = _parser(int(env_port)).parse_args(argv)
    try:
        settings = StandinConfig.from_mapping(
            {
                "host": args.host,
                "port": args.port,
                "webhook_url": args.webhook_url,
                "webhook_secret": args.webhook_secret,
                "sepa_delay": args.sepa_delay,
                "sepa_long_delay": args.sepa_long_delay,
                "dispute_delay": args.dispute_delay,
                "webhook_retry_delay": args.webhook_retry_delay,
                "webhook_max_attempts": args.webhook_max_attempts,
                "strict_attach": args.strict_attach,
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
