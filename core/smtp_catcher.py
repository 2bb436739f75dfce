"""The embedded stack's SMTP catcher: accepts every e-mail, delivers none (aiosmtpd).

Notices are the part of Mahnwerk a customer actually sees, so in development and in tests
they go to a real SMTP server that keeps them where people and tests can look:

* in memory (:class:`MailStore`: ``messages()``, ``find(to=…, subject_contains=…)``);
* as one ``.eml`` file per message under a maildir (default ``var/mail/``) — open it in any
  mail client to see the HTML as the customer would;
* as one log line per message: ``mail to=<rcpt> subject=<subject> message-id=<id>``;
* optionally as JSON over HTTP (``--http-port``): ``GET /messages`` (``?to=`` filters).

Tests use :func:`run_smtp_catcher` (threaded, free port); the embedded stack runs
``python -m core.smtp_catcher --host 127.0.0.1 --port 1025 --maildir var/mail``.

Any AUTH credentials are accepted, so an ``smtp://user:pass@…`` URL works unchanged against
the catcher. Addresses passed as ``reject`` are refused with a permanent 550 so tests can
exercise the "undeliverable" path against a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP as SMTPServer
    from aiosmtpd.smtp import AuthResult, Envelope, Session
except ImportError as exc:  # the production image has no dev-stack packages
    raise ImportError(
        "the SMTP catcher needs aiosmtpd, a dev-stack package: pip install -e '.[devstack]'"
    ) from exc

log = logging.getLogger("mahnwerk.smtp_catcher")

_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class ReceivedMail:
    """One message as received: the envelope plus the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    received_at: datetime
    path: Path | None = None

    def recipients(self) -> set[str]:
        """Envelope recipients and To/Cc addresses, lower-cased."""
        header_addrs = getaddresses(
            [str(v) for k in ("To", "Cc") for v in self.message.get_all(k, [])]
        )
        return {a.lower() for a in self.rcpt_tos} | {a.lower() for _, a in header_addrs if a}


def body_text(message: EmailMessage, subtype: str = "plain") -> str:
    """The decoded text/plain (or text/html) part of a message, '' when absent.

    Line endings are normalised to ``\n`` (SMTP transports CRLF), so the result compares
    equal to the text that was handed to the mailer.
    """
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    return cast(str, part.get_content()).replace("\r\n", "\n")


class MailStore:
    """Every message the catcher received, in arrival order; thread-safe."""

    def __init__(self, maildir: str | Path | None = None, *, load_existing: bool = False) -> None:
        self.maildir = Path(maildir) if maildir is not None else None
        self._mails: list[ReceivedMail] = []
        self._changed = threading.Condition()
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
            if load_existing:
                for path in sorted(self.maildir.glob("*.eml")):
                    self._mails.append(self._load(path))

    @staticmethod
    def _load(path: Path) -> ReceivedMail:
        msg = cast(EmailMessage, _PARSER.parsebytes(path.read_bytes()))
        return ReceivedMail(
            mail_from=str(msg.get("Return-Path", "")).strip("<>"),
            rcpt_tos=tuple(str(v) for v in msg.get_all("Delivered-To", [])),
            message=msg,
            received_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            path=path,
        )

    def add(self, raw: bytes, mail_from: str, rcpt_tos: Sequence[str]) -> ReceivedMail:
        """Store one message (as an MTA does at final delivery: Return-Path, Delivered-To)."""
        received_at = datetime.now(UTC)
        trace = f"Return-Path: <{mail_from}>\r\n" + "".join(
            f"Delivered-To: {rcpt}\r\n" for rcpt in rcpt_tos
        )
        data = trace.encode("utf-8", "surrogateescape") + raw
        path: Path | None = None
        if self.maildir is not None:
            name = f"{received_at:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}.eml"
            tmp = self.maildir / f".{name}.tmp"
            tmp.write_bytes(data)
            path = tmp.replace(self.maildir / name)  # atomic: readers never see half a mail
        mail = ReceivedMail(
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
            message=cast(EmailMessage, _PARSER.parsebytes(data)),
            received_at=received_at,
            path=path,
        )
        with self._changed:
            self._mails.append(mail)
            self._changed.notify_all()
        log.info(
            "mail to=%s subject=%s message-id=%s",
            ",".join(rcpt_tos),
            " ".join(str(mail.message.get("Subject", "")).split()),
            mail.message.get("Message-ID", ""),
        )
        return mail

    def received(self) -> list[ReceivedMail]:
        with self._changed:
            return list(self._mails)

    def messages(self) -> list[EmailMessage]:
        return [m.message for m in self.received()]

    def _select(self, to: str | None, subject_contains: str | None) -> list[ReceivedMail]:
        found = []
        for mail in self.received():
            if to is not None and to.lower() not in mail.recipients():
                continue
            subject = str(mail.message.get("Subject", ""))
            if subject_contains is not None and subject_contains not in subject:
                continue
            found.append(mail)
        return found

    def find(
        self, to: str | None = None, subject_contains: str | None = None
    ) -> list[EmailMessage]:
        """Messages for recipient `to` (envelope, To or Cc) whose subject contains the text."""
        return [m.message for m in self._select(to, subject_contains)]

    def wait_for(
        self,
        count: int = 1,
        *,
        to: str | None = None,
        subject_contains: str | None = None,
        timeout: float = 10.0,
    ) -> list[EmailMessage]:
        """Block until at least `count` matching messages arrived; returns them.

        Raises TimeoutError naming what arrived instead, so a failing test says why.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self._select(to, subject_contains)
                if len(found) >= count:
                    return [m.message for m in found]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(m.rcpt_tos, str(m.message.get("Subject"))) for m in self._mails]
                    raise TimeoutError(
                        f"expected {count} mail(s) to={to!r} subject~{subject_contains!r}, "
                        f"got {got}"
                    )
                self._changed.wait(remaining)

    def clear(self) -> None:
        """Forget the messages in memory (files on disk are kept)."""
        with self._changed:
            self._mails.clear()

    def summaries(self, to: str | None = None) -> list[dict[str, Any]]:
        """JSON-ready view for the HTTP endpoint."""
        return [
            {
                "to": list(m.rcpt_tos),
                "from": m.mail_from,
                "subject": str(m.message.get("Subject", "")),
                "message_id": str(m.message.get("Message-ID", "")),
                "date": str(m.message.get("Date", "")),
                "received_at": m.received_at.isoformat(),
                "notice_number": str(m.message.get("X-Mahnwerk-Notice", "")),
                "contract_id": str(m.message.get("X-Mahnwerk-Contract", "")),
                "text": body_text(m.message, "plain"),
                "file": str(m.path) if m.path else None,
            }
            for m in self._select(to, None)
        ]


class _Handler:
    """aiosmtpd handler: accept (or reject listed) recipients, store every message."""

    def __init__(self, store: MailStore, reject: Iterable[str]) -> None:
        self.store = store
        self.reject = {a.lower() for a in reject}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTPServer, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = content if isinstance(content, bytes) else (content or "").encode()
        self.store.add(raw, str(envelope.mail_from or ""), list(envelope.rcpt_tos))
        return "250 2.0.0 Message accepted for delivery"


def _accept_any_auth(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    # A catcher, not a relay: credentials from MAHNWERK_SMTP_URL are accepted as given.
    return AuthResult(success=True, auth_data=auth_data)


class _Controller(Controller):
    """Controller that can listen on port 0 and learn the port the OS picked."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            sockets = cast(asyncio.Server, self.server).sockets
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()


def _make_controller(host: str, port: int, store: MailStore, reject: Iterable[str]) -> _Controller:
    return _Controller(
        _Handler(store, reject),
        hostname=host,
        port=port,
        server_hostname="mahnwerk-smtp-catcher",  # skips a reverse-DNS lookup (getfqdn)
        authenticator=_accept_any_auth,
        auth_require_tls=False,
        ready_timeout=10.0,
    )


@dataclass
class Catcher:
    """A running catcher: where it listens and what it received."""

    host: str
    port: int
    store: MailStore
    _controller: _Controller

    @property
    def url(self) -> str:
        """The MAHNWERK_SMTP_URL that points at this catcher."""
        return f"smtp://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._controller._thread is not None:
            self._controller.stop()


def start_smtp_catcher(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    maildir: str | Path | None = None,
    store: MailStore | None = None,
    reject: Iterable[str] = (),
) -> Catcher:
    """Start a threaded catcher (port 0 → a free port); call ``stop()`` when done."""
    store = store if store is not None else MailStore(maildir)
    controller = _make_controller(host, port, store, reject)
    controller.start()
    return Catcher(host=host, port=controller.port, store=store, _controller=controller)


@contextmanager
def run_smtp_catcher(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    maildir: str | Path | None = None,
    store: MailStore | None = None,
    reject: Iterable[str] = (),
) -> Iterator[Catcher]:
    """``with run_smtp_catcher() as catcher: … catcher.store.find(to=…)``."""
    catcher = start_smtp_catcher(host, port, maildir=maildir, store=store, reject=reject)
    try:
        yield catcher
    finally:
        catcher.stop()


# -- HTTP read API ------------------------------------------------------------------------


def _http_handler(store: MailStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server hook name
            url = urlsplit(self.path)
            if url.path not in ("/", "/messages"):
                self._reply(404, {"error": {"code": "not_found", "message": url.path}})
                return
            to = parse_qs(url.query).get("to", [None])[0]
            self._reply(200, store.summaries(to=to))

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body, ensure_ascii=False, indent=2).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one log line per *mail* is the contract; HTTP reads are noise

    return Handler


# -- command line ---------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    # Same options as asyncio's create_server (SO_REUSEADDR), so a port in TIME_WAIT after a
    # restart is not mistaken for "in use".
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.smtp_catcher",
        description="SMTP catcher for the embedded stack: stores every mail, delivers none.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, default=Path("var/mail"))
    parser.add_argument("--http-port", type=int, default=None, help="serve GET /messages as JSON")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter

    if not _port_free(args.host, args.port):
        print(f"error: port {args.port} is already in use (MAHNWERK_SMTP_URL)", file=sys.stderr)
        return 2
    if args.http_port is not None and not _port_free(args.host, args.http_port):
        print(f"error: port {args.http_port} is already in use (--http-port)", file=sys.stderr)
        return 2

    store = MailStore(args.maildir, load_existing=True)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    try:
        catcher = start_smtp_catcher(args.host, args.port, store=store)
    except OSError as exc:
        # Lost a race for the port between the check and the bind.
        if exc.errno == errno.EADDRINUSE:
            print(f"error: port {args.port} is already in use (MAHNWERK_SMTP_URL)", file=sys.stderr)
            return 2
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    http: ThreadingHTTPServer | None = None
    if args.http_port is not None:
        http = ThreadingHTTPServer((args.host, args.http_port), _http_handler(store))
        threading.Thread(target=http.serve_forever, name="catcher-http", daemon=True).start()
    log.info(
        "smtp catcher listening on %s:%d, maildir %s (%d stored)%s",
        args.host,
        catcher.port,
        args.maildir,
        len(store.received()),
        f", messages at http://{args.host}:{args.http_port}/messages" if http else "",
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if http is not None:
            http.shutdown()
            http.server_close()
        catcher.stop()
    log.info("smtp catcher stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
