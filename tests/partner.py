"""A collection partner's endpoint for the tests (MAHNWERK_COLLECTION_URL): a real HTTP
server in a thread that records every request, checks its signature, and can be taken
down (503) and brought back, as a partner's outage would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activities.events import verify


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]
    status: int  # what the partner answered
    signed: bool  # Mahnwerk-Signature valid with the events secret

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")

    @property
    def kind(self) -> str:
        """`case_file` for a case file, else the message's type (`case.payment` …)."""
        return (
            "case_file"
            if self.body.get("schema", "").endswith("collection_case.v1")
            else (str(self.body.get("type")))
        )


class Partner:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.down = False
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                signed = verify(raw, headers.get("Mahnwerk-Signature", ""), partner.secret, 0)
                status = 503 if partner.down else 200 if signed else 400
                with partner.lock:
                    partner.requests.append(Received(headers, json.loads(raw), status, signed))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"down" if status == 503 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/partner"

    def acknowledged(self, kind: str | None = None) -> list[Received]:
        """The requests the partner accepted (2xx), oldest first, of `kind` if given."""
        with self.lock:
            return [r for r in self.requests if r.status == 200 and kind in (None, r.kind)]

    def refused(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.status != 200]


@contextmanager
def running_partner(secret: str) -> Iterator[Partner]:
    partner = Partner(secret)
    thread = threading.Thread(target=partner.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield partner
    finally:
        partner.server.shutdown()
        partner.server.server_close()
