"""Request ids and one log line per request.

The id is taken from the caller's `X-Request-Id` (so a platform can follow its own id through
our logs) or generated, answered in the `X-Request-Id` response header and set in the
context variable that `core.logging` adds to every record logged while the request runs.

A plain ASGI middleware (not BaseHTTPMiddleware): the context variable is set in the task
that runs the route, and streamed responses pass through untouched.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_body
from core.logging import request_id_var
from core.settings import ApiKey, Settings
from workflows.types import workflow_id_for

log = logging.getLogger("mahnwerk.api")

HEADER = "X-Request-Id"
# What we accept from outside: it ends up in log lines, so no spaces, quotes or newlines.
_VALID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            return text if _VALID.fullmatch(text) else None
    return None


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # The traceback is logged once, by the server the exception is re-raised to; this
            # line ties it to the request. Only the type: messages of database errors quote
            # the statement's parameters (names, e-mail addresses).
            self._log(scope, 500, started, error=type(exc).__qualname__)
            if not response_started:
                # The same answer as the app's own 500 handler, but with the request id, so a
                # caller can quote it.
                await _send_500(send, request_id)
            raise
        else:
            self._log(scope, status, started)
        finally:
            request_id_var.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int, started: float, error: str | None = None) -> None:
        extra: dict[str, Any] = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        # Set by api.deps.require() on request.state, which lives in scope["state"].
        caller = (scope.get("state") or {}).get("caller")
        if caller is not None:
            extra["caller"] = getattr(caller, "name", None)
        # The router fills in path_params on this same scope while routing.
        contract_id = (scope.get("path_params") or {}).get("contract_id")
        if contract_id:
            extra["contract_id"] = contract_id
            extra["workflow_id"] = workflow_id_for(contract_id)
        if error is not None:
            extra["error"] = error
        level = logging.ERROR if status >= 500 else logging.INFO
        log.log(level, "request", extra=extra)


async def _send_500(send: Send, request_id: str) -> None:
    body = json.dumps(error_body("internal_error", "internal error; nothing was changed")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (HEADER.lower().encode(), request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- request bodies: authenticated first, bounded, then read -------------------------------------

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Stripe's events are ours to read whatever their size within reason: an event embeds the
# object (a PaymentIntent with its charges, a dispute with evidence fields), more than our own
# request bodies. Unauthenticated (the signature is checked after reading), so still bounded.
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
_WEBHOOK_PATH = "/v1/webhooks/stripe"
# The collection partner's reports (issue 12): signed with Mahnwerk-Signature, no API key.
COLLECTION_WEBHOOK_PATH = "/v1/webhooks/collection"
_CODEC_CONVERT = ("/codec/encode", "/codec/decode")


def _is_webhook(path: str) -> bool:
    """Stripe's endpoints: the platform's, and each own-key seller's (issue 14)."""
    return path == _WEBHOOK_PATH or path.startswith(_WEBHOOK_PATH + "/sellers/")


def bearer_matches(header: str, keys: list[ApiKey]) -> ApiKey | None:
    """The configured key the `Authorization: Bearer …` header carries, compared in constant
    time as bytes (a non-ASCII token is an unknown key, not a TypeError → 500)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    given = token.encode("utf-8", "surrogateescape")
    found = None
    for key in keys:
        if hmac.compare_digest(key.key.encode("utf-8"), given):
            found = key
    return found


class RequestGuard:
    """Before a request body is read: the caller is authenticated and the body is bounded.

    FastAPI reads and parses the body before any dependency (the API-key check among them)
    runs, so without this a 50 MB body was read and parsed for a caller without a key. Here:

    - a request with a body to an authenticated route (`/v1/…` but the signed webhooks, and
      `/codec/encode|decode`) needs a known credential first (any role; the route checks the
      role): 401 without reading a byte;
    - a declared `Content-Length` over the limit is 413 at once; a body without one is read
      up to the limit and 413 beyond it (never buffered past it);
    - limits: MAHNWERK_MAX_BODY_BYTES (64 KiB), MAHNWERK_MAX_CODEC_BODY_BYTES for /codec/*,
      1 MiB for the Stripe webhook.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.mahnwerk.settings
        path: str = scope.get("path", "")
        if path.startswith("/codec/"):
            limit = settings.max_codec_body_bytes
        elif _is_webhook(path):
            limit = max(settings.max_body_bytes, WEBHOOK_MAX_BODY_BYTES)
        else:
            limit = settings.max_body_bytes
        headers = Headers(scope=scope)
        if self._needs_credential(path):
            problem = self._credential_problem(headers, settings, path)
            if problem is not None:
                await _send_error(send, 401, "unauthorized", problem)
                return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _send_too_large(send, limit)
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _send_too_large(send, limit)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)

    @staticmethod
    def _needs_credential(path: str) -> bool:
        if path.startswith("/v1/"):
            return not _is_webhook(path) and path != COLLECTION_WEBHOOK_PATH
        return path in _CODEC_CONVERT

    @staticmethod
    def _credential_problem(headers: Headers, settings: Settings, path: str) -> str | None:
        """None if the request carries a known credential, else why not (the 401's message,
        as the route's own check would word it)."""
        header = headers.get("authorization", "")
        if bearer_matches(header, settings.parsed_api_keys) is not None:
            return None
        if not path.startswith("/codec/"):
            return "unknown API key" if header else "missing bearer API key"
        # The Temporal UI's codec requests carry the admin's session cookie instead.
        from api.routes.codec import SESSION_COOKIE, session_caller

        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except CookieError:
            pass
        morsel = cookies.get(SESSION_COOKIE)
        if morsel is not None:
            try:
                session_caller(settings, morsel.value)
                return None
            except ApiError as exc:
                if not header:
                    return exc.message
        if header:
            return "unknown API key"
        return "missing bearer API key (from the Temporal UI: log in at /codec/login)"


async def _send_too_large(send: Send, limit: int) -> None:
    await _send_error(send, 413, "payload_too_large", f"request body larger than {limit} bytes")


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot carry another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
