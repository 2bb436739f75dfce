"""Helpers for the stand-in tests: a webhook receiver and polling."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stripe

API_KEY = "sk_test_standin"
WEBHOOK_SECRET = "whsec_standin_tests"


class Receiver:
    """Records webhook POSTs; answers with `statuses` in turn (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/webhooks/stripe"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append((body, self.headers.get("Stripe-Signature", "")))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def events(self) -> list[stripe.Event]:
        """Every delivery, verified as Mahnwerk's webhook endpoint verifies it."""
        with self.lock:
            received = list(self.received)
        return [stripe.Webhook.construct_event(body, sig, WEBHOOK_SECRET) for body, sig in received]

    def wait_for(
        self, predicate: Callable[[stripe.Event], bool], timeout: float = 5.0
    ) -> stripe.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.02)
        types = [json.loads(body)["type"] for body, _ in self.received]
        raise AssertionError(f"no matching webhook within {timeout}s; received {types}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
