"""Request ids and one log line per request.

The id is taken from the caller's `X-Request-Id` (so a platform can follow its own id through
our logs) or generated, answered in the `X-Request-Id` response header and set in the
context variable that `core.logging` adds to every record logged while the request runs.

A plain ASGI middleware (not BaseHTTPMiddleware): the context variable is set in the task
that runs the route, and streamed responses pass through untouched.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from core.logging import request_id_var
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
