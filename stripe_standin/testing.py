"""Run the stand-in inside a test process, on a background thread.

    with run_standin(webhook_url=receiver_url, sepa_delay=0.2) as standin:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": standin.url})
        ...
        assert len(standin.ledger(metadata_key="contract_id", metadata_value="c1")) == 1

Start and stop take well under a second (uvicorn checks its exit flag every 0.1 s).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from .config import StandinConfig
from .server import bind, make_server


class StandinHandle:
    """A running stand-in: its `url` and the `/_standin/` control routes as methods."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self.server = server
        self.thread = thread
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=10)

    def _get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def ledger(
        self,
        metadata_key: str | None = None,
        metadata_value: str | None = None,
        customer: str | None = None,
        payment_intent: str | None = None,
        account: str | None = None,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(
            "/_standin/ledger",
            metadata_key=metadata_key,
            metadata_value=metadata_value,
            customer=customer,
            payment_intent=payment_intent,
            account=account,
        )
        return result

    def create_account(
        self,
        account_id: str | None = None,
        *,
        type: str = "connected",
        api_key: str | None = None,
        creditor_id: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> dict[str, Any]:
        """A connected account (Stripe Connect: the platform's key with `Stripe-Account`),
        or a standalone one reached with its own `api_key`."""
        body = {
            "id": account_id,
            "type": type,
            "api_key": api_key,
            "creditor_id": creditor_id,
            "webhook_url": webhook_url,
            "webhook_secret": webhook_secret,
        }
        result: dict[str, Any] = self._post(
            "/_standin/accounts", {k: v for k, v in body.items() if v is not None}
        )
        return result

    def accounts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/_standin/accounts")
        return result

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/_standin/config")
        return result

    def health(self) -> dict[str, Any]:
        """Readiness and counters, among them the requests refused by the rate limits."""
        result: dict[str, Any] = self._get("/_standin/health")
        return result

    def set_config(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/_standin/config", changes)
        return result

    def reset(self) -> None:
        self._post("/_standin/reset")

    def webhooks(self, **filters: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/_standin/webhooks", **filters)
        return result

    def events(self, type: str | None = None, account: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/_standin/events", type=type, account=account)
        return result

    def script(self, metadata: dict[str, str], outcomes: list[str]) -> dict[str, Any]:
        """The next card debits matching `metadata` decline with these codes, in order."""
        result: dict[str, Any] = self._post(
            "/_standin/scenarios", {"metadata": metadata, "outcomes": outcomes}
        )
        return result

    def dispute(self, payment_intent: str, reason: str = "general") -> dict[str, Any]:
        result: dict[str, Any] = self._post(
            f"/_standin/payment_intents/{payment_intent}/dispute", {"reason": reason}
        )
        return result

    def settle(
        self, payment_intent: str, failure_code: str | None = None, dispute: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._post(
            f"/_standin/payment_intents/{payment_intent}/settle",
            {"failure_code": failure_code, "dispute": dispute},
        )
        return result

    def authenticate(self, payment_intent: str, succeed: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self._post(
            f"/_standin/payment_intents/{payment_intent}/authenticate", {"succeed": succeed}
        )
        return result

    def dispute_charge(
        self, charge: str, reason: str = "general", amount: int | None = None
    ) -> dict[str, Any]:
        """Open a dispute on any succeeded charge, however long ago it succeeded."""
        result: dict[str, Any] = self._post(
            f"/_standin/charges/{charge}/dispute", {"reason": reason, "amount": amount}
        )
        return result

    def close_dispute(self, dispute: str, outcome: str) -> dict[str, Any]:
        """`won` (funds reinstated) or `lost`: `charge.dispute.closed`."""
        result: dict[str, Any] = self._post(
            f"/_standin/disputes/{dispute}/close", {"outcome": outcome}
        )
        return result

    def refund(
        self,
        *,
        charge: str | None = None,
        payment_intent: str | None = None,
        amount: int | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """A refund made in the Dashboard (no API request): `refund.created`,
        `charge.refunded`."""
        path = (
            f"/_standin/charges/{charge}/refund"
            if charge
            else f"/_standin/payment_intents/{payment_intent}/refund"
        )
        result: dict[str, Any] = self._post(path, {"amount": amount, "reason": reason})
        return result

    def cancel(self, payment_intent: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel as in the Dashboard: `payment_intent.canceled`."""
        result: dict[str, Any] = self._post(
            f"/_standin/payment_intents/{payment_intent}/cancel", {"cancellation_reason": reason}
        )
        return result

    def revoke_mandate(self, mandate: str) -> dict[str, Any]:
        """The customer revokes the mandate: `inactive`, `mandate.updated`."""
        result: dict[str, Any] = self._post(f"/_standin/mandates/{mandate}/revoke")
        return result

    def idempotency(self, key: str) -> dict[str, bool]:
        """{"in_flight": …, "saved": …} for an Idempotency-Key."""
        result: dict[str, bool] = self._get(f"/_standin/idempotency/{key}")
        return result

    def advance_clock(self, seconds: float) -> None:
        self._post("/_standin/clock", {"advance": seconds})

    def stop(self) -> None:
        self._http.close()
        self.server.should_exit = True
        self.thread.join(timeout=5)


def start_standin(port: int = 0, host: str = "127.0.0.1", **config: Any) -> StandinHandle:
    """Start a stand-in (port 0: a free port) and wait until it serves."""
    settings = StandinConfig.from_mapping({"host": host, "port": port, **config})
    sock = bind(host, port)
    settings.port = sock.getsockname()[1]
    server = make_server(settings)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="stripe-standin", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the stripe stand-in did not start")
        time.sleep(0.005)
    return StandinHandle(server, thread, f"http://{host}:{settings.port}")


@contextlib.contextmanager
def run_standin(port: int = 0, host: str = "127.0.0.1", **config: Any) -> Iterator[StandinHandle]:
    handle = start_standin(port, host, **config)
    try:
        yield handle
    finally:
        handle.stop()
