"""Signed, expiring tokens for the customer's payment page `/pay/{token}` (issue 16 item 1).

A notice's "Jetzt bezahlen" link used to carry the contract id (`/pay/ord-2026-0001`): anyone
could guess another customer's page. The token names the contract and when the link
expires, and carries an HMAC over both:

    <base64url(contract id)>.<expiry, unix seconds>.<base64url(HMAC-SHA256)[:22]>

The HMAC key is derived from MAHNWERK_EVENTS_SECRET (HMAC of a fixed context string), so no
new secret is needed and a page token never reveals, or verifies with, the events secret
itself. Changing the events secret invalidates the links in notices already sent (the page
then asks the customer to use the newest e-mail or contact the seller).

Notices are re-rendered for every send, so each carries a fresh link; TTL is how long a
link from an old e-mail keeps working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

TTL_SECONDS = 60 * 24 * 3600  # 60 days: past every deadline a notice names
_CONTEXT = b"mahnwerk pay link v1"
_CONTRACT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,96}\.[0-9]{1,12}\.[A-Za-z0-9_-]{22}")


class InvalidToken(ValueError):
    """Tampered, truncated or not a token at all."""


class ExpiredToken(ValueError):
    def __init__(self, contract_id: str, expired_at: int) -> None:
        super().__init__(f"payment link expired at {expired_at}")
        self.contract_id = contract_id
        self.expired_at = expired_at


@dataclass(frozen=True)
class PayLink:
    contract_id: str
    expires_at: int  # unix seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


def _mac(secret: str, cid_part: str, expires: int) -> str:
    signed = f"{cid_part}.{expires}".encode()
    return _b64(hmac.new(_key(secret), signed, hashlib.sha256).digest())[:22]


def issue(secret: str, contract_id: str, now: float | None = None, ttl: int = TTL_SECONDS) -> str:
    if not _CONTRACT_ID.fullmatch(contract_id):
        raise ValueError(f"not a contract id: {contract_id!r}")
    expires = int(time.time() if now is None else now) + ttl
    cid_part = _b64(contract_id.encode())
    return f"{cid_part}.{expires}.{_mac(secret, cid_part, expires)}"


def verify(secret: str, token: str, now: float | None = None) -> PayLink:
    """The link's contract, or InvalidToken / ExpiredToken (checked in that order: an
    expired link is only reported for a genuine token)."""
    if not _TOKEN.fullmatch(token):
        raise InvalidToken("not a payment link token")
    cid_part, expires_text, mac = token.split(".")
    expires = int(expires_text)
    if not hmac.compare_digest(_mac(secret, cid_part, expires), mac):
        raise InvalidToken("signature does not match")
    try:
        contract_id = _unb64(cid_part).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidToken("malformed contract id") from None
    if not _CONTRACT_ID.fullmatch(contract_id):
        raise InvalidToken("malformed contract id")
    if expires <= (time.time() if now is None else now):
        raise ExpiredToken(contract_id, expires)
    return PayLink(contract_id, expires)
