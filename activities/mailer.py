"""Send one e-mail over SMTP with the standard library (``MAHNWERK_SMTP_URL``).

URL forms: ``smtp://host:port`` (plain; the embedded stack's catcher), ``smtps://host:port``
(implicit TLS, default port 465) and ``smtp+starttls://host:port`` (STARTTLS, default 587),
each optionally with ``user:password@`` (percent-encoded) for AUTH.

SMTP has no idempotency key: a message accepted by the server cannot be recalled, and a
retry after a lost reply sends it again. The caller therefore passes a fixed ``Message-ID``
— the same on every retry — which mail servers, archives and our own catcher use to spot
duplicates (RFC 5322 §3.6.4). See ``activities.notices`` for how the window is kept small.

Errors are split the way a retry policy needs them: a permanent (5xx) rejection of the
recipient raises :class:`PermanentDeliveryError` (retrying cannot help), a temporary (4xx)
one :class:`TemporaryDeliveryError`; everything else — connection refused, timeouts, a
dropped connection — propagates unchanged so the activity is retried. No exception raised
here names the recipient: exception messages end up in logs.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from core.logging import redact_personal

if TYPE_CHECKING:
    from activities.notice_render import InlineImage

# CRLF line endings, as SMTP requires. Headers fold only beyond RFC 5322's hard limit of 998
# characters: Python's folder may fold an encoded Subject at the space in "99,00 €", and
# whitespace between two encoded words is dropped on decoding (RFC 2047 § 6.2), so the
# customer would read "99,00€". Bodies are quoted-printable and wrap at 76 anyway.
SMTP_POLICY = SMTP.clone(max_line_length=998)

DEFAULT_TIMEOUT = 20.0  # seconds; below SQLite's 30 s busy timeout (see activities.notices)

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


class PermanentDeliveryError(Exception):
    """The server permanently refused the recipient (5xx): the address will not work.

    Its message carries no address (the server's reply is redacted: it usually quotes the
    recipient): exception messages end up in logs and in Temporal failures."""

    def __init__(self, recipient: str, code: int, message: str) -> None:
        self.recipient = recipient
        self.code = code
        self.message = redact_personal(message)
        super().__init__(f"recipient refused: {code} {self.message}")


class TemporaryDeliveryError(smtplib.SMTPRecipientsRefused):
    """The server refused the recipient for now (4xx: greylisting, mailbox busy): retried.

    An `SMTPRecipientsRefused` without the address: smtplib's own puts the recipient into
    its message, which the Temporal SDK logs on every retry."""

    def __init__(self, code: int, message: str) -> None:
        smtplib.SMTPException.__init__(
            self, f"recipient temporarily refused: {code} {redact_personal(message)}"
        )
        self.recipients: dict[str, tuple[int, bytes]] = {}
        self.code = code
        self.message = redact_personal(message)


def _reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def sanitized(exc: BaseException) -> BaseException | None:
    """An equivalent of an SMTP error from the mailer without personal data in its message,
    or None when `exc` carries none (connection errors, timeouts)."""
    if isinstance(exc, PermanentDeliveryError | TemporaryDeliveryError):
        return None
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        if 500 <= code < 600:
            return PermanentDeliveryError("", code, _reply_text(reply))
        return TemporaryDeliveryError(code, _reply_text(reply))
    if isinstance(exc, smtplib.SMTPResponseException):
        text = redact_personal(_reply_text(exc.smtp_error))
        clean = smtplib.SMTPResponseException(exc.smtp_code, text)
        return clean if text != _reply_text(exc.smtp_error) else None
    return None


def build_message(
    *,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    headers: Mapping[str, str] | None = None,
    inline_images: Sequence[InlineImage] = (),
) -> EmailMessage:
    """A multipart/alternative message (text first, HTML preferred by capable clients).

    With ``inline_images`` the HTML part becomes multipart/related (RFC 2387) holding the
    HTML and the images it shows by ``cid:`` (RFC 2392):

        multipart/alternative
        ├── text/plain
        └── multipart/related
            ├── text/html
            └── image/png   (Content-ID, Content-Disposition: inline)

    CID images are shown by Gmail, Outlook, Apple Mail and Thunderbird; ``data:`` URIs in
    ``<img>`` are dropped by Gmail and Outlook, which is why the GiroCode travels this way.
    """
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id
    # RFC 3834: tells vacation responders not to answer a machine-sent notice.
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        if name in msg:
            del msg[name]
        msg[name] = value
    # Quoted-printable keeps umlauts and "€" intact through servers without 8BITMIME.
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    if inline_images:
        html_part = msg.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)  # the part added just above
        for image in inline_images:
            maintype, _, subtype = image.content_type.partition("/")
            html_part.add_related(
                image.data,
                maintype=maintype,
                subtype=subtype,
                cid=f"<{image.cid}>",
                disposition="inline",
                filename=f"{image.cid.partition('@')[0]}.{subtype}",
            )
    return msg


def _connect(smtp_url: str, timeout: float) -> smtplib.SMTP:
    url = urlsplit(smtp_url)
    scheme = url.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not url.hostname:
        raise ValueError(f"unsupported SMTP URL {smtp_url!r} (smtp://, smtps://, smtp+starttls://)")
    host, port = url.hostname, url.port or _DEFAULT_PORTS[scheme]
    server: smtplib.SMTP
    if scheme == "smtps":
        server = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(host, port, timeout=timeout)
    try:
        server.ehlo()
        if scheme == "smtp+starttls":
            server.starttls(context=ssl.create_default_context())
            server.ehlo()
        if url.username:
            server.login(unquote(url.username), unquote(url.password or ""))
    except BaseException:
        server.close()
        raise
    return server


def send_email(
    smtp_url: str,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    inline_images: Sequence[InlineImage] = (),
) -> None:
    """Deliver one message to `to` (``addr`` or ``Name <addr>``) via the SMTP server.

    Returns once the server has accepted the message (250 after DATA).
    """
    msg = build_message(
        mail_from=mail_from,
        to=to,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        headers=headers,
        inline_images=inline_images,
    )
    envelope_from = parseaddr(mail_from)[1] or mail_from
    envelope_to = parseaddr(to)[1] or to
    server = _connect(smtp_url, timeout)
    try:
        try:
            refused = server.send_message(msg, from_addr=envelope_from, to_addrs=[envelope_to])
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients
        for rcpt, (code, reply) in refused.items():
            if 500 <= code < 600:
                raise PermanentDeliveryError(rcpt, code, _reply_text(reply))
            # 4xx: temporary (greylisting, mailbox busy) — let the activity retry.
            raise TemporaryDeliveryError(code, _reply_text(reply))
    finally:
        try:
            server.quit()
        except (smtplib.SMTPException, OSError):
            server.close()
