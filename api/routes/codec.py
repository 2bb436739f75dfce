"""The Temporal UI's codec server (SPEC.md §7): `/codec/encode` and `/codec/decode`.

The UI (or `temporal workflow show --codec-endpoint …`) posts `{"payloads": [...]}` in the
protobuf JSON form and gets the same form back, decrypted (or encrypted) with the worker's key
ring. Admins only: the decoded payloads hold names and e-mail addresses. Payloads encrypted
with a customer's data key (core/codec.py) are decrypted with that key from the database; a
payload whose customer was erased comes back as a JSON note saying it is unreadable
(metadata `mahnwerk-erased`), so the rest of the event still shows. `/codec/encode` has no
workflow context and encrypts with the master key.

The browser calls us from the UI's origin, so `/codec/*` — and only `/codec/*` — answers CORS
for that origin (`MAHNWERK_TEMPORAL_UI_URL`), credentials allowed. Without a codec key the
endpoints answer with the payloads unchanged, so the UI works the same in a dev setup.

**Logging in from the UI.** The Temporal UI cannot send our API key: it sends either its own
OIDC token or, with "Include cross-origin credentials" on, the browser's cookies. So an admin
logs in once at `GET /codec/login` (a small form; `POST /codec/login` with the admin key),
which sets a session cookie — `HttpOnly`, `SameSite=Strict`, `Path=/codec`, 12 hours — and
`/codec/encode|decode` accept that cookie as well as `Authorization: Bearer <admin key>`.

The cookie is an opaque token `v1.<key name>.<expiry>.<nonce>.<HMAC>`, never the key: the HMAC
key is derived from the admin key it was issued for (and the codec key ring), so it is valid in
every API process, survives restarts, and dies when that admin key is removed, demoted or
changed. Logging out deletes the browser's cookie; a copied cookie stays valid until it
expires (12 h) or the admin key changes.

`SameSite=Strict` works because the UI and the API are the *same site*: a site is scheme plus
host name, ports do not count, so `http://localhost:8233` (UI) → `http://localhost:8000`
(codec) is a same-site request and carries Strict cookies. `localhost` and `127.0.0.1` are two
different sites, which is why `mahnwerk dev` spells both URLs with `localhost`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from google.protobuf import json_format
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import BearerDoc, Caller, StateDep, require
from api.errors import ApiError, error_body
from core.codec import (
    CUSTOMER_KEY_PREFIX,
    KEY_ID_META,
    CodecError,
    EncryptionCodec,
    ShreddedKeyError,
    parse_key_ring,
)
from core.customer_keys import CustomerKeyStore
from core.settings import ApiKey, Settings

log = logging.getLogger("mahnwerk.codec")

router = APIRouter(prefix="/codec", tags=["codec"])

PREFIX = "/codec/"
# Marks the note that replaces a payload of an erased customer in /codec/decode's answer.
ERASED_META = "mahnwerk-erased"
CORS_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]

_EXAMPLE = {
    "payloads": [
        {
            "metadata": {
                "encoding": "YmluYXJ5L2VuY3J5cHRlZA==",
                "encryption-key-id": "azIwMjYxMTI3",
            },
            "data": "…base64…",
        }
    ]
}
# Temporal's `Payloads` in protobuf JSON form (metadata values and data base64).
_PAYLOADS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "payloads": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "data": {"type": "string"},
                },
            },
        }
    },
    "required": ["payloads"],
}
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"payloads": {"type": "array", "items": {"type": "object"}}},
                    "required": ["payloads"],
                },
                "example": _EXAMPLE,
            }
        },
    },
    "responses": {
        "200": {
            "description": "The payloads, converted, in the same protobuf JSON form.",
            "content": {"application/json": {"schema": _PAYLOADS_SCHEMA, "example": _EXAMPLE}},
        }
    },
}


_AUTH_NOTE = (
    "Admins only: `Authorization: Bearer <admin key>`, or the session cookie an admin gets at "
    "`/codec/login` (the Temporal UI sends it with *Include cross-origin credentials* on)."
)


@functools.lru_cache(maxsize=4)
def _codec(raw_ring: str, sessions: sessionmaker[Session]) -> EncryptionCodec:
    # The customer data keys live in the ledger database (core/customer_keys.py).
    ring = parse_key_ring(raw_ring)
    return EncryptionCodec(ring, CustomerKeyStore(ring, sessions))


def _unreadable(exc: ShreddedKeyError) -> Payload:
    """What the UI shows for a payload of an erased customer: a readable note, not an
    error for the whole batch (the event's other payloads still decode)."""
    note = {"unreadable": "personal data erased (Art. 17 GDPR)", "detail": str(exc)}
    return Payload(
        metadata={"encoding": b"json/plain", ERASED_META: b"true"},
        data=json.dumps(note).encode(),
    )


async def _decode_one(codec: EncryptionCodec, payload: Payload) -> Payload:
    try:
        (out,) = await codec.decode([payload])
    except ShreddedKeyError as exc:
        return _unreadable(exc)
    return out


def _read(body: bytes) -> list[Payload]:
    try:
        msg = json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:  # ValueError: not UTF-8
        raise ApiError(
            422, "invalid_input", f"payloads: not a Temporal Payloads JSON object ({exc})"
        ) from None
    return list(msg.payloads)


def _answer(payloads: list[Payload]) -> Response:
    text = json_format.MessageToJson(Payloads(payloads=payloads), indent=None)
    return Response(content=text, media_type="application/json")


# Marks the note that replaces a payload outside a seller-scoped key's seller (issue 14).
OUT_OF_SCOPE_META = "mahnwerk-out-of-scope"


def _out_of_scope(seller: str) -> Payload:
    note = {"unreadable": f"not a payload of seller {seller}'s contracts"}
    return Payload(
        metadata={"encoding": b"json/plain", OUT_OF_SCOPE_META: b"true"},
        data=json.dumps(note).encode(),
    )


def _in_scope(sessions: sessionmaker[Session], seller: str, key_ids: set[str]) -> set[str]:
    """The customer data keys (metadata form) whose customer has a contract of `seller`."""
    from sqlalchemy import select

    from core.models import Contract, CustomerKey

    bare = {k.removeprefix(CUSTOMER_KEY_PREFIX) for k in key_ids}
    with sessions() as s:
        rows = s.execute(
            select(CustomerKey.id)
            .join(Contract, Contract.customer_id == CustomerKey.customer_id)
            .where(CustomerKey.id.in_(bare), Contract.seller_id == seller)
        )
        return {CUSTOMER_KEY_PREFIX + r[0] for r in rows}


async def _convert(
    request: Request, state: StateDep, *, encode: bool, caller: Caller | None = None
) -> Response:
    payloads = _read(await request.body())
    raw_ring = state.settings.codec_key_ring
    if not raw_ring:  # no encryption configured: the UI shows payloads as they are
        return _answer(payloads)
    codec = _codec(raw_ring, state.sessions)
    try:
        if encode:  # no workflow context here: the master key encrypts
            return _answer(await codec.encode(payloads))
        if caller is None or caller.seller is None:
            return _answer([await _decode_one(codec, p) for p in payloads])
        # A seller-scoped admin (issue 14) reads the payloads of its seller's customers
        # only: those encrypted with the data key of a customer with a contract of that
        # seller. Anything else (another seller's customer, the master key) stays closed.
        ids = {
            p.metadata[KEY_ID_META].decode("utf-8", "replace")
            for p in payloads
            if KEY_ID_META in p.metadata
        }
        allowed = await run_in_threadpool(
            _in_scope,
            state.sessions,
            caller.seller,
            {i for i in ids if i.startswith(CUSTOMER_KEY_PREFIX)},
        )
        out = []
        for p in payloads:
            key_id = p.metadata.get(KEY_ID_META, b"").decode("utf-8", "replace")
            if key_id in allowed:
                out.append(await _decode_one(codec, p))
            else:
                out.append(_out_of_scope(caller.seller))
        return _answer(out)
    except CodecError as exc:
        raise ApiError(422, "undecodable", str(exc)) from None


# -- sessions for the Temporal UI (a cookie instead of the API key) ----------------------------

SESSION_COOKIE = "mahnwerk_codec_session"
SESSION_TTL = 12 * 3600  # seconds
_SESSION_VERSION = "v1"
_SESSION_CONTEXT = b"mahnwerk codec session v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _session_mac(settings: Settings, key: ApiKey, body: str) -> str:
    # Per admin key: changing or removing the key ends its sessions. The codec key ring is
    # mixed in so that a captured cookie is no help in guessing a short API key offline.
    secret = hmac.new(
        _SESSION_CONTEXT,
        f"{key.role}\0{key.name}\0{key.key}\0{settings.codec_key_ring or ''}".encode(),
        hashlib.sha256,
    ).digest()
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def issue_session(settings: Settings, key: ApiKey, now: float | None = None) -> tuple[str, int]:
    """A session token for an admin key and its expiry (unix seconds)."""
    expires = int(time.time() if now is None else now) + SESSION_TTL
    body = f"{_SESSION_VERSION}.{_b64(key.name.encode())}.{expires}.{secrets.token_urlsafe(12)}"
    return f"{body}.{_session_mac(settings, key, body)}", expires


def session_caller(settings: Settings, token: str, now: float | None = None) -> Caller:
    """The admin a session token belongs to; ApiError 401 if it is forged, altered, expired
    or its key is no longer an admin key."""
    invalid = ApiError(401, "unauthorized", "codec session invalid: log in again at /codec/login")
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != _SESSION_VERSION:
        raise invalid
    body, mac = ".".join(parts[:4]), parts[4]
    try:
        name = _unb64(parts[1]).decode()
        expires = int(parts[2])
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise invalid from None
    for key in settings.parsed_api_keys:
        if key.role != "admin" or key.name != name:
            continue
        if hmac.compare_digest(_session_mac(settings, key, body), mac):
            if expires <= (time.time() if now is None else now):
                raise ApiError(
                    401, "unauthorized", "codec session expired: log in again at /codec/login"
                )
            return Caller("admin", key.name, key.seller)
    raise invalid


def codec_admin(request: Request, state: StateDep, _doc: BearerDoc = None) -> Caller:
    """An admin, by the session cookie of `/codec/login` (the Temporal UI) or by the
    `Authorization: Bearer <admin key>` header (CLI, scripts)."""
    token = request.cookies.get(SESSION_COOKIE)
    header = request.headers.get("authorization", "")
    if token:
        try:
            caller = session_caller(state.settings, token)
        except ApiError:
            if not header:
                raise
        else:
            request.state.caller = caller
            return caller
    if not header and not token:
        raise ApiError(
            401,
            "unauthorized",
            "missing bearer API key (from the Temporal UI: log in at /codec/login)",
        )
    return require("admin")(request, state)


CodecAdmin = Annotated[Caller, Depends(codec_admin)]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mahnwerk codec login</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}
input[type=password]{{width:100%;padding:.4em;font:inherit}}button{{font:inherit;padding:.3em 1em}}
.err{{color:#b00020}}.ok{{color:#0a6b2d}}code{{background:#f2f2f2;padding:0 .2em}}</style>
</head><body><h1>Mahnwerk — decrypted data in the Temporal UI</h1>{content}</body></html>
"""

_FORM = """{message}
<form method="post" action="login">
<p><label for="key">Admin API key</label><br>
<input type="password" id="key" name="key" autocomplete="current-password" required autofocus></p>
<p><button type="submit">Log in</button></p></form>
<p>This page does not keep the key: you get a session cookie for <code>{endpoint}</code>
(HttpOnly, 12 hours).</p>"""

_LOGOUT = """<form method="post" action="logout"><p><button type="submit">Log out</button></p>
</form>"""

_STEPS = """<p>In the Temporal UI, open the <em>Codec Server</em> settings (the button at the top of
a workflow's page), choose <em>Use my browser setting and ignore Cluster-level setting</em>,
enter <code>{endpoint}</code> and enable <em>Include cross-origin credentials</em>. The cookie
belongs to this host name (<code>{host}</code>): the endpoint must use it, and the UI must be
opened on the same site (<code>localhost</code> and <code>127.0.0.1</code> are two sites).</p>"""


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _endpoint(request: Request) -> str:
    """The codec endpoint as the browser reaches it (…/codec), from this page's URL."""
    path = request.url.path
    return str(request.url.replace(path=path[: path.rindex("/")], query="", fragment=""))


def _page(status: int, content: str) -> HTMLResponse:
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(_PAGE.format(content=content), status_code=status, headers=headers)


def _form(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    message = f'<p class="err">{html.escape(error)}</p>' if error else ""
    endpoint = html.escape(_endpoint(request))
    return _page(status, _FORM.format(message=message, endpoint=endpoint))


def _refused(request: Request, status: int, code: str, message: str) -> Response:
    if _wants_html(request):
        return _form(request, status, message)
    return JSONResponse(error_body(code, message), status_code=status)


async def _submitted_key(request: Request) -> str:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return ""
        value = data.get("key") if isinstance(data, dict) else None
        return value.strip() if isinstance(value, str) else ""
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return ""
    return (fields.get("key") or [""])[0].strip()


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
async def login_form(request: Request, state: StateDep) -> Response:
    """The login page; says so if this browser is already logged in."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            caller = session_caller(state.settings, token)
        except ApiError as exc:
            return _form(request, error=exc.message)
        endpoint = _endpoint(request)
        content = (
            f'<p class="ok">Logged in as <strong>{html.escape(caller.name)}</strong>.</p>'
            + _STEPS.format(endpoint=html.escape(endpoint), host=html.escape(request.url.netloc))
            + _LOGOUT
        )
        return _page(200, content)
    return _form(request)


@router.post("/login", include_in_schema=False)
async def login(request: Request, state: StateDep) -> Response:
    """Form field (or JSON member) `key`: an admin API key → the session cookie."""
    submitted = await _submitted_key(request)
    if not submitted:
        return _refused(request, 422, "invalid_input", "key: enter the admin API key")
    for key in state.settings.parsed_api_keys:
        if hmac.compare_digest(key.key.encode(), submitted.encode()):
            if key.role != "admin":
                log.warning("codec login refused: key %s has role %s", key.name, key.role)
                return _refused(
                    request,
                    403,
                    "forbidden",
                    f"role {key.role!r} may not read decrypted payloads (needs admin)",
                )
            break
    else:
        log.warning("codec login refused: unknown key")
        return _refused(request, 401, "unauthorized", "unknown API key")
    token, expires = issue_session(state.settings, key)
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    endpoint = _endpoint(request)
    response: Response
    if _wants_html(request):
        content = (
            f'<p class="ok"><strong>Logged in — reload the Temporal UI.</strong> '
            f"(as {html.escape(key.name)}, until {until})</p>"
            + _STEPS.format(endpoint=html.escape(endpoint), host=html.escape(request.url.netloc))
            + _LOGOUT
        )
        response = _page(200, content)
    else:
        response = JSONResponse(
            {
                "status": "logged_in",
                "name": key.name,
                "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
                "codec_endpoint": endpoint,
            }
        )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL,
        path="/codec",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("codec login by %s (session until %s)", key.name, until)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """Delete this browser's session cookie."""
    response: Response
    if _wants_html(request):
        response = _page(
            200, '<p class="ok">Logged out.</p><p><a href="login">Log in again</a></p>'
        )
    else:
        response = JSONResponse({"status": "logged_out"})
    response.delete_cookie(
        SESSION_COOKIE,
        path="/codec",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


# -- the codec endpoints ------------------------------------------------------------------------


@router.post(
    "/decode",
    summary="Decrypt payloads for the Temporal UI (admin)",
    description=_AUTH_NOTE,
    response_class=Response,
    openapi_extra=_OPENAPI,
)
async def decode(request: Request, caller: CodecAdmin, state: StateDep) -> Response:
    response = await _convert(request, state, encode=False, caller=caller)
    log.info(
        "codec decode by %s (namespace %s)", caller.name, request.headers.get("x-namespace", "-")
    )
    return response


@router.post(
    "/encode",
    summary="Encrypt payloads for the Temporal UI (admin)",
    description=_AUTH_NOTE,
    response_class=Response,
    openapi_extra=_OPENAPI,
)
async def encode(request: Request, caller: CodecAdmin, state: StateDep) -> Response:
    return await _convert(request, state, encode=True)


# -- CORS, for /codec/* only -------------------------------------------------------------------


def ui_origins(settings: Settings) -> list[str]:
    """The Temporal UI's origin; on a loopback host also its twin (localhost ⇄ 127.0.0.1),
    because people open either and the browser sends what is in its address bar."""
    url = urlsplit(settings.temporal_ui_url)
    if not url.scheme or not url.hostname:
        return []
    port = f":{url.port}" if url.port else ""
    origins = [f"{url.scheme}://{url.hostname}{port}"]
    twin = {"localhost": "127.0.0.1", "127.0.0.1": "localhost"}.get(url.hostname)
    if twin:
        origins.append(f"{url.scheme}://{twin}{port}")
    return origins


class CodecCORS:
    """Starlette's CORSMiddleware, applied to `/codec/*` only: the UI's origin may call the
    codec endpoints from the browser, not the rest of the API."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=CORS_HEADERS,
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
