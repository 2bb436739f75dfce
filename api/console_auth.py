"""The support console's session and CSRF tokens (issue 16 item 2; docs/console.md).

**Session.** Signing in at `/console/login` with a `support` or `admin` key sets the cookie
`mahnwerk_console` (`HttpOnly`, `SameSite=Strict`, `Path=/console`, `Secure` when the
request came over https, 8 hours):

    v1.<base64url(key name)>.<expiry, unix seconds>.<nonce>.<base64url(HMAC-SHA256)>

never the key itself. The HMAC key is derived from the API key the session was issued for
(role, name, key) and MAHNWERK_EVENTS_SECRET, so every API process verifies it without a
session store, it survives restarts, and it dies at once when that API key is removed,
demoted or changed. The caller it yields has the key's role and seller scope, exactly as a
`Bearer` request with that key. Signing out deletes the browser's cookie; a copied cookie
stays valid until it expires (8 h) or the key changes (as the codec's session,
api/routes/codec.py).

**CSRF.** Every form carries `csrf`: an HMAC of the session token under the same derived
key, so only a page served to this session can know it. Before sign-in, the login form
carries a random value that must equal the `mahnwerk_console_login` cookie (double submit).
A POST without the right token is refused with a 403 page before anything is done.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from api.deps import Caller
from core.settings import ApiKey, Settings

COOKIE = "mahnwerk_console"
LOGIN_COOKIE = "mahnwerk_console_login"
PATH = "/console"
TTL = 8 * 3600
ROLES = ("support", "admin")
_VERSION = "v1"
_CONTEXT = b"mahnwerk console session v1"


class SessionError(Exception):
    """No valid session: the message says why (shown on the sign-in page)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret(settings: Settings, key: ApiKey) -> bytes:
    material = (
        f"{key.role}\0{key.name}\0{key.key}\0{key.seller or ''}\0"
        f"{settings.events_secret.get_secret_value()}"
    )
    return hmac.new(_CONTEXT, material.encode(), hashlib.sha256).digest()


def _mac(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def find_key(settings: Settings, submitted: str) -> ApiKey | None:
    """The configured key equal to `submitted` (constant-time per key), or None."""
    given = submitted.encode("utf-8", "surrogateescape")
    found = None
    for key in settings.parsed_api_keys:
        if hmac.compare_digest(key.key.encode("utf-8"), given):
            found = key
    return found


def issue(settings: Settings, key: ApiKey, now: float | None = None) -> tuple[str, int]:
    """A session token for `key` and its expiry (unix seconds)."""
    expires = int(time.time() if now is None else now) + TTL
    body = f"{_VERSION}.{_b64(key.name.encode())}.{expires}.{secrets.token_urlsafe(12)}"
    return f"{body}.{_mac(_secret(settings, key), body)}", expires


def verify(settings: Settings, token: str, now: float | None = None) -> tuple[Caller, ApiKey]:
    """The caller a session token belongs to; SessionError if it is forged, altered,
    expired, or its key is gone or no longer a support/admin key."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != _VERSION:
        raise SessionError("Please sign in.")
    body, mac = ".".join(parts[:4]), parts[4]
    try:
        name = _unb64(parts[1]).decode()
        expires = int(parts[2])
    except (binascii.Error, ValueError):
        raise SessionError("Please sign in.") from None
    for key in settings.parsed_api_keys:
        if key.name != name or key.role not in ROLES:
            continue
        if hmac.compare_digest(_mac(_secret(settings, key), body), mac):
            if expires <= (time.time() if now is None else now):
                raise SessionError("Your session has expired: please sign in again.")
            return Caller(key.role, key.name, key.seller), key
    raise SessionError("Your session is no longer valid: please sign in again.")


def csrf_token(settings: Settings, key: ApiKey, session_token: str) -> str:
    """The CSRF token of a session: only pages served to that session carry it."""
    return _mac(_secret(settings, key), f"csrf\0{session_token}")[:32]


def csrf_ok(expected: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(
        expected.encode(), (submitted or "").encode("utf-8", "surrogateescape")
    )
