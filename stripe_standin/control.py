"""Stand-in extensions under `/_standin/` (JSON, no auth): what tests need to look inside or
to make time pass, and what real Stripe only offers through its dashboard.

- `GET  /_standin/ledger`              successful debits of every account, each with its
                                       `account` (`?metadata_key=&metadata_value=`,
                                       `?customer=`, `?payment_intent=`, `?account=`)
- `GET|POST /_standin/accounts`        the accounts; POST creates one: `{"id": "acct_…"?,
                                       "type": "connected"|"standalone", "api_key" (own key of
                                       a standalone account), "creditor_id", "webhook_url",
                                       "webhook_secret" (a standalone account's endpoint)}`
- `GET|POST /_standin/config`          read or change settings (StandinConfig fields;
                                       `webhook_url` takes a URL, a list or null)
- `POST /_standin/reset`               forget all state
- `GET  /_standin/webhooks`            delivery log (`?event=`, `?type=`, `?status=`)
- `GET  /_standin/events`              every event of every account, oldest first (`?type=`,
                                       `?account=`)
- `POST /_standin/payment_intents/{id}/dispute`       open a dispute now (`reason`, `amount`)
- `POST /_standin/payment_intents/{id}/settle`        settle a processing SEPA debit now
                                       (`{"failure_code": null|"insufficient_funds"|...,
                                       "dispute": bool}`)
- `POST /_standin/payment_intents/{id}/authenticate`  finish 3-D Secure (`{"succeed": bool}`)
- `POST /_standin/payment_intents/{id}/cancel`  cancel as in the Dashboard
                                       (`{"cancellation_reason": ...}`) -> `payment_intent.canceled`
- `POST /_standin/payment_intents/{id}/refund`  refund its charge as in the Dashboard
- `POST /_standin/charges/{id}/refund`  refund as in the Dashboard (`{"amount": int|null,
                                       "reason": ...}`) -> `refund.created`, `charge.refunded`
- `POST /_standin/charges/{id}/dispute`  open a dispute on a succeeded charge, at any time
                                       (`{"reason", "amount"}`) -> `charge.dispute.created`,
                                       `charge.dispute.funds_withdrawn`
- `POST /_standin/disputes/{id}/close`  `{"outcome": "won"|"lost"}` -> `charge.dispute.closed`
                                       (+ `charge.dispute.funds_reinstated` when won)
- `POST /_standin/mandates/{id}/revoke`  mandate `inactive` -> `mandate.updated`
- `POST /_standin/clock`               `{"advance": seconds}` moves the stand-in clock
- `GET  /_standin/health`              readiness and counters
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .charges import close_dispute, dispute_charge, get_charge, get_pi, open_dispute, revoke_mandate
from .engine import NO_REQUEST, Account, Engine
from .errors import StripeError, invalid_request
from .http import KEY_PREFIXES
from .ids import new_id
from .payments import authenticate, cancel
from .refunds import refund_charge
from .sepa import settle_sepa
from .store import Obj


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request_error", "message": message}}, status)


async def ledger(request: Request) -> JSONResponse:
    engine = _engine(request)
    q = request.query_params
    key, value = q.get("metadata_key"), q.get("metadata_value")
    customer, pi = q.get("customer"), q.get("payment_intent")
    account = q.get("account")
    rows = [
        e.to_json()
        for e in engine.store.ledger
        if (
            key is None
            or (e.metadata.get(key) == value if value is not None else key in e.metadata)
        )
        and (customer is None or e.customer == customer)
        and (pi is None or e.payment_intent == pi)
        and (account is None or e.account == account)
    ]
    return JSONResponse(rows)


async def accounts(request: Request) -> JSONResponse:
    """The accounts (GET), or a new one (POST): a *connected* account (Connect: the
    platform's key with `Stripe-Account`) or a *standalone* one with a key of its own."""
    engine = _engine(request)
    if request.method == "POST":
        try:
            body = await _json_body(request)
            kind = body.get("type", "connected")
            if kind not in ("connected", "standalone"):
                raise ValueError("type must be connected or standalone")
            acct_id = body.get("id") or new_id("acct", 16)
            if not isinstance(acct_id, str) or not acct_id.startswith("acct_"):
                raise ValueError("id must start with acct_")
            api_key = body.get("api_key")
            if api_key is not None and (
                kind != "standalone" or not str(api_key).startswith(KEY_PREFIXES)
            ):
                raise ValueError("api_key: a standalone account's own sk_test_… key")
            url = body.get("webhook_url")
            created = engine.add_account(
                Account(
                    acct_id,
                    kind,
                    api_key=api_key,
                    creditor_id=body.get("creditor_id"),
                    webhook_urls=[url] if isinstance(url, str) and url else [],
                    webhook_secret=body.get("webhook_secret"),
                )
            )
        except ValueError as exc:
            return _error(str(exc))
        return JSONResponse(created.to_json())
    return JSONResponse([a.to_json() for a in engine.accounts.values()])


async def config(request: Request) -> JSONResponse:
    engine = _engine(request)
    if request.method == "POST":
        try:
            engine.config = engine.config.updated(await _json_body(request))
            for acct_id in engine.config.accounts:
                if acct_id not in engine.accounts:
                    engine.add_account(Account(acct_id, "connected"))
        except ValueError as exc:
            return _error(str(exc))
    return JSONResponse(engine.config.public())


async def reset(request: Request) -> JSONResponse:
    _engine(request).reset()
    return JSONResponse({"reset": True})


async def webhooks(request: Request) -> JSONResponse:
    q = request.query_params
    rows = [
        d.to_json()
        for d in _engine(request).webhooks.log
        if (q.get("event") is None or d.event_id == q["event"])
        and (q.get("type") is None or d.type == q["type"])
        and (q.get("status") is None or d.status == q["status"])
    ]
    return JSONResponse(rows)


async def events(request: Request) -> JSONResponse:
    engine = _engine(request)
    wanted = request.query_params.get("type")
    account = request.query_params.get("account")
    stores = [engine.stores[account]] if account in engine.stores else []
    if account is None:
        stores = list(engine.stores.values())
    keep: set[str] = set()
    for store in stores:
        idx = store.indexes.get(f"event:type:{wanted}" if wanted else "event")
        if idx is not None:
            keep.update(idx.newest_first())
    # `engine.events` is in creation order across accounts
    return JSONResponse([engine.event(i) for i in engine.events if i in keep])


async def scenarios(request: Request) -> JSONResponse:
    """Script the next outcomes of card debits whose metadata match (stand-in extension):
    `{"metadata": {"contract_id": "c-1", "installment": "3"}, "outcomes": ["insufficient_funds",
    "succeed"]}` — each matching confirm takes the next outcome; afterwards the payment
    method's own behaviour applies again."""
    engine = _engine(request)
    body = await _json_body(request)
    match = body.get("metadata")
    outcomes = body.get("outcomes")
    if not isinstance(match, dict) or not match or not isinstance(outcomes, list):
        return _error("expected {metadata: {key: value, ...}, outcomes: [code, ...]}")
    engine.store.scripts.append(
        ({str(k): str(v) for k, v in match.items()}, [str(o) for o in outcomes])
    )
    return JSONResponse({"metadata": match, "outcomes": outcomes})


def _on_owner(request: Request) -> Engine:
    """The engine, acting (for the rest of this request) on the account holding `{id}`."""
    engine = _engine(request)
    engine.enter(engine.locate(request.path_params["id"]))
    return engine


async def dispute(request: Request) -> JSONResponse:
    engine = _on_owner(request)
    try:
        body = await _json_body(request)
        dp = open_dispute(
            engine, request.path_params["id"], body.get("reason") or "general", body.get("amount")
        )
    except StripeError as err:
        return JSONResponse(err.to_json(), err.status)
    except ValueError as exc:
        return _error(str(exc))
    return JSONResponse(dp)


async def settle(request: Request) -> JSONResponse:
    engine = _on_owner(request)
    try:
        body = await _json_body(request)
        pi = get_pi(engine, request.path_params["id"])
        if pi["status"] != "processing":
            return _error(f"PaymentIntent {pi['id']} is {pi['status']}, not processing.")
        dispute_flag = body.get("dispute")
        settle_sepa(engine, pi["id"], body.get("failure_code"), dispute_flag)
    except StripeError as err:
        return JSONResponse(err.to_json(), err.status)
    except ValueError as exc:
        return _error(str(exc))
    return JSONResponse(pi)


async def authenticate_route(request: Request) -> JSONResponse:
    engine = _on_owner(request)
    try:
        body = await _json_body(request)
        pi = authenticate(engine, request.path_params["id"], bool(body.get("succeed", True)))
    except StripeError as err:
        return JSONResponse(err.to_json(), err.status)
    except ValueError as exc:
        return _error(str(exc))
    return JSONResponse(pi)


Action = Callable[[Engine, str, dict[str, Any]], Obj]


def _action(fn: Action) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A control route acting on the object `{id}`: JSON body in, the object out, errors in
    Stripe's shape."""

    async def handle(request: Request) -> JSONResponse:
        engine = _on_owner(request)
        try:
            body = await _json_body(request)
            return JSONResponse(fn(engine, request.path_params["id"], body))
        except StripeError as err:
            return JSONResponse(err.to_json(), err.status)
        except (ValueError, TypeError) as exc:
            return _error(str(exc))

    return handle


def _amount(body: dict[str, Any]) -> int | None:
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ValueError("amount must be an integer (smallest currency unit) or null")
    return amount


def _refund_charge(engine: Engine, ch_id: str, body: dict[str, Any]) -> Obj:
    ch = get_charge(engine, ch_id)
    return refund_charge(engine, ch, _amount(body), body.get("reason"), {}, NO_REQUEST)


def _refund_pi(engine: Engine, pi_id: str, body: dict[str, Any]) -> Obj:
    pi = get_pi(engine, pi_id)
    if not pi["latest_charge"]:
        raise invalid_request(f"PaymentIntent {pi_id} has no charge to refund.")
    return _refund_charge(engine, pi["latest_charge"], body)


def _dispute_charge(engine: Engine, ch_id: str, body: dict[str, Any]) -> Obj:
    reason = body.get("reason") or "general"
    return dispute_charge(engine, get_charge(engine, ch_id), reason, _amount(body))


def _close_dispute(engine: Engine, dp_id: str, body: dict[str, Any]) -> Obj:
    return close_dispute(engine, dp_id, str(body.get("outcome")))


def _cancel(engine: Engine, pi_id: str, body: dict[str, Any]) -> Obj:
    reason = body.get("cancellation_reason")
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer", "abandoned"):
        raise ValueError(f"invalid cancellation_reason {reason!r}")
    return cancel(engine, pi_id, reason, NO_REQUEST)


def _revoke(engine: Engine, mandate_id: str, body: dict[str, Any]) -> Obj:
    return revoke_mandate(engine, mandate_id)


async def clock(request: Request) -> JSONResponse:
    engine = _engine(request)
    if request.method == "POST":
        try:
            body = await _json_body(request)
            engine.clock.advance(float(body.get("advance", 0)))
        except (ValueError, TypeError) as exc:
            return _error(str(exc))
    return JSONResponse({"now": engine.clock.now(), "offset": engine.clock.offset})


async def idempotency_state(request: Request) -> JSONResponse:
    """`GET /_standin/idempotency/{key}`: {"in_flight": bool, "saved": bool}."""
    return JSONResponse(_engine(request).idempotency.state(request.path_params["key"]))


async def health(request: Request) -> JSONResponse:
    engine = _engine(request)
    return JSONResponse(
        {
            "ok": True,
            "objects": engine.object_count(),
            "events": len(engine.events),
            "ledger": len(engine.store.ledger),
            "accounts": len(engine.accounts),
            "timers_pending": engine.scheduler.pending,
            "webhooks_pending": engine.webhooks.pending(),
            # Stripe's rate limits (--rate-limit): requests refused with 429, per endpoint
            # (`POST /v1/payment_intents`), and admitted, per account
            "rate_limited": dict(engine.rate_limiter.limited),
            "rate_admitted": dict(engine.rate_limiter.counted),
        }
    )


CONTROL_ROUTES = [
    Route("/_standin/ledger", ledger, methods=["GET"]),
    Route("/_standin/accounts", accounts, methods=["GET", "POST"]),
    Route("/_standin/config", config, methods=["GET", "POST"]),
    Route("/_standin/reset", reset, methods=["POST"]),
    Route("/_standin/webhooks", webhooks, methods=["GET"]),
    Route("/_standin/events", events, methods=["GET"]),
    Route("/_standin/scenarios", scenarios, methods=["POST"]),
    Route("/_standin/payment_intents/{id}/dispute", dispute, methods=["POST"]),
    Route("/_standin/payment_intents/{id}/settle", settle, methods=["POST"]),
    Route("/_standin/payment_intents/{id}/authenticate", authenticate_route, methods=["POST"]),
    Route("/_standin/payment_intents/{id}/cancel", _action(_cancel), methods=["POST"]),
    Route("/_standin/payment_intents/{id}/refund", _action(_refund_pi), methods=["POST"]),
    Route("/_standin/charges/{id}/refund", _action(_refund_charge), methods=["POST"]),
    Route("/_standin/charges/{id}/dispute", _action(_dispute_charge), methods=["POST"]),
    Route("/_standin/disputes/{id}/close", _action(_close_dispute), methods=["POST"]),
    Route("/_standin/mandates/{id}/revoke", _action(_revoke), methods=["POST"]),
    Route("/_standin/clock", clock, methods=["GET", "POST"]),
    Route("/_standin/idempotency/{key}", idempotency_state, methods=["GET"]),
    Route("/_standin/health", health, methods=["GET"]),
]
