"""The request pipeline every `/v1` endpoint runs through, in Stripe's order.

auth (401) -> rate limits (429, ratelimit.py) -> decode form/query params -> parameter check
against the route's `stripe` SDK params type (400 `parameter_unknown` ..., sdkparams.py) ->
Idempotency-Key (replay / 400 / 409) -> fault hooks (faults.py: latency, injected 429 / 500 /
timeouts; never for `/_standin/*`) -> endpoint -> `expand[]` -> JSON with `Request-Id` and
`Stripe-Version`.
Endpoints are plain synchronous functions `(engine, call, **path_params) -> dict` that
raise `StripeError`; anything else becomes a 500 `api_error`, saved for replay like Stripe's.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import sdkparams
from .engine import NO_REQUEST, PLATFORM_ACCOUNT, Engine, RequestRef
from .errors import StripeError, api_error, authentication, invalid_request, no_account_access
from .faults import rate_limited
from .formparse import parse_form, parse_pairs
from .idempotency import request_fingerprint
from .ids import new_id
from .objects import expand
from .params import Params
from .store import Obj

log = logging.getLogger("stripe_standin")

Endpoint = Callable[..., Obj]
KEY_PREFIXES = ("sk_test_", "rk_test_")


@dataclass
class Call:
    method: str
    path: str
    params: Params
    api_key: str
    request_id: str
    idempotency_key: str | None
    stripe_version: str | None
    base_url: str = ""  # how the client reached the stand-in (hosted pages' URLs)

    @property
    def ref(self) -> RequestRef:
        if not self.request_id:
            return NO_REQUEST  # an action of the customer on a hosted page
        return RequestRef(self.request_id, self.idempotency_key)


def _api_key(header: str | None) -> str:
    """Bearer (what the SDK sends) or Basic `key:` (what `curl -u sk_test_...:` sends)."""
    if not header:
        raise authentication(
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details."
        )
    scheme, _, value = header.partition(" ")
    key = value.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key.startswith(KEY_PREFIXES):
        masked = f"{key[:8]}{'*' * 8}{key[-4:]}" if len(key) > 12 else key
        raise authentication(f"Invalid API Key provided: {masked}")
    return key


def _account(engine: Engine, api_key: str, header: str | None) -> str:
    """The account a request acts on: the `Stripe-Account` header's (Connect: only the
    platform's keys, only for accounts connected to it), else the key's own account."""
    own = engine.account_for_key(api_key)
    if not header:
        return own
    acct = engine.accounts.get(header)
    if own != PLATFORM_ACCOUNT or acct is None or acct.kind not in ("connected", "platform"):
        raise no_account_access(api_key, header)
    return acct.id


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(
    status: int, body: bytes, request_id: str, version: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {"Request-Id": request_id, "Stripe-Version": version}
    if extra:
        headers.update(extra)
    if status >= 500:
        # A saved 500 is replayed to a retry with the same key; an unsaved one (injected by
        # fault_5xx before the endpoint ran, see faults.py) is worth retrying.
        headers.setdefault("Stripe-Should-Retry", "false")
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(err: StripeError, request_id: str, version: str) -> Response:
    return _response(err.status, _json(err.to_json()), request_id, version)


def api(
    endpoint: Endpoint, params_type: str, endpoint_key: str
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint function into a Starlette endpoint running the pipeline.

    `params_type` names the `stripe.params` class its parameters are checked against;
    `endpoint_key` (`POST /v1/payment_intents`) is its per-endpoint rate-limit bucket.
    """
    sdkparams.compile_params(params_type)  # fail at start-up, not at the first request

    async def handle(request: Request) -> Response:
        engine: Engine = request.app.state.engine
        with engine.acting_as(PLATFORM_ACCOUNT):  # `serve` moves on to the request's account
            return await serve(engine, request)

    async def serve(engine: Engine, request: Request) -> Response:
        request_id = new_id("req", 15)
        version = request.headers.get("stripe-version") or engine.config.api_version
        try:
            api_key = _api_key(request.headers.get("authorization"))
            account = _account(engine, api_key, request.headers.get("stripe-account"))
            # Limits per account: a connected or standalone account's own; the platform's
            # keys each count as before (one bucket per key).
            limited = api_key if account == PLATFORM_ACCOUNT else account
            reason = engine.rate_limiter.admit(limited, endpoint_key)
            if reason is not None:
                # Refused before anything ran: safe to retry, the key stays unused.
                return _response(
                    429,
                    _json(rate_limited().to_json()),
                    request_id,
                    version,
                    {"Stripe-Should-Retry": "true"},
                )
            if request.method == "POST":
                data = parse_form(await request.body())
            else:
                data = parse_pairs(request.query_params.multi_items())
            sdkparams.check(params_type, data)
        except StripeError as err:
            return error_response(err, request_id, version)

        # Everything from here on (the endpoint, the timers it schedules, the events it emits)
        # happens on `account`.
        engine.enter(account)
        key = (request.headers.get("idempotency-key") or None) if request.method == "POST" else None
        # Stripe scopes idempotency keys per account (and key).
        scope = api_key if account == PLATFORM_ACCOUNT else f"{api_key}|{account}"
        call = Call(
            request.method,
            request.url.path,
            Params(data),
            api_key,
            request_id,
            key,
            request.headers.get("stripe-version"),
            str(request.base_url).rstrip("/"),
        )
        echo = {"Idempotency-Key": key} if key else None
        if key is None:
            status, body, replayable = await _run(engine, endpoint, call, request.path_params)
            hint = _retry_hint(echo, status, replayable)
            return _response(status, body, request_id, version, hint)

        fingerprint = request_fingerprint(call.method, call.path, data)
        try:
            saved = engine.idempotency.claim(scope, key, fingerprint)
        except StripeError as err:
            return error_response(err, request_id, version)
        if saved is not None:
            headers = {
                "Idempotency-Key": key,
                "Idempotent-Replayed": "true",
                "Original-Request": saved.request_id,
            }
            return _response(saved.status, saved.body, request_id, version, headers)
        result: tuple[int, bytes, str] | None = None
        try:
            status, body, replayable = await _run(engine, endpoint, call, request.path_params)
            if replayable:
                result = (status, body, request_id)
        finally:
            engine.idempotency.finish(scope, key, fingerprint, result)
        hint = _retry_hint(echo, status, result is not None)
        return _response(status, body, request_id, version, hint)

    return handle


def _retry_hint(
    headers: dict[str, str] | None, status: int, replayable: bool
) -> dict[str, str] | None:
    """`Stripe-Should-Retry: true` on a 5xx that was not saved (the key stays free)."""
    if status < 500 or replayable:
        return headers
    return {**(headers or {}), "Stripe-Should-Retry": "true"}


async def _run(
    engine: Engine, endpoint: Endpoint, call: Call, path_params: dict[str, Any]
) -> tuple[int, bytes, bool]:
    """Execute an endpoint: (status, body, whether an idempotent replay may reuse it)."""
    try:
        await engine.faults.before_request(call)
        obj = endpoint(engine, call, **path_params)
        paths = call.params.expand()
        if paths:
            obj = expand(engine.store, obj, paths)
        return 200, _json(obj), True
    except StripeError as err:
        return err.status, _json(err.to_json()), err.replayable
    except Exception:
        log.exception("stand-in endpoint %s %s failed", call.method, call.path)
        failure = api_error()
        return failure.status, _json(failure.to_json()), True


async def unknown_route(request: Request) -> Response:
    """Stripe's answer to a URL it does not serve."""
    err = invalid_request(
        f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        status=404,
    )
    engine: Engine = request.app.state.engine
    return error_response(err, new_id("req", 15), engine.config.api_version)
