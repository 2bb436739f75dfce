"""The HTTP API from the outside: auth, validation, idempotent checkout, webhooks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client, contract_body, start_test_server
from worker import build_worker


@pytest.fixture(scope="module")
async def api_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own: contracts started here sleep until 2026-12-01 and would
    wake up (with no worker left) while other modules skip time on a shared server."""
    async with await start_test_server() as env:
        yield env


@pytest.fixture
async def http(
    api_env: WorkflowEnvironment, settings: Settings, sessions: sessionmaker[Session]
) -> AsyncIterator[httpx.AsyncClient]:
    parts = build_worker(api_env.client, settings, session_factory=sessions)
    app = create_app(settings, sessions)
    app.state.mahnwerk._client = api_env.client
    async with parts.worker, api_client(app) as client:
        yield client
    parts.executor.shutdown(wait=False)


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["message"]
    return err


async def test_missing_or_unknown_key_is_401(http: httpx.AsyncClient) -> None:
    assert_error(await http.post("/v1/contracts", json=contract_body()), 401, "unauthorized")
    bad = {"Authorization": "Bearer nope-nope-nope"}
    assert_error(await http.get("/v1/contracts/x", headers=bad), 401, "unauthorized")


async def test_wrong_role_is_403(http: httpx.AsyncClient) -> None:
    err = assert_error(
        await http.post("/v1/contracts", json=contract_body(), headers=SUPPORT), 403, "forbidden"
    )
    assert "support" in err["message"]
    resp = await http.post(
        "/v1/contracts/x/settlements",
        json={"amount": 100, "method": "cash", "reference": "r"},
        headers=PLATFORM,
    )
    assert_error(resp, 403, "forbidden")


async def test_checkout_without_terms_is_422_naming_terms(http: httpx.AsyncClient) -> None:
    body = contract_body()
    del body["terms"]
    err = assert_error(
        await http.post("/v1/contracts", json=body, headers=PLATFORM), 422, "invalid_input"
    )
    assert err["message"].startswith("terms")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(contract_id="bad id!"), "contract_id"),
        (lambda b: b["installments"].update(amount=-5), "installments.amount"),
        (lambda b: b["installments"].update(interval="monthly"), "installments.interval"),
        (lambda b: b["installments"].update(first_due="1.12.2026"), "installments.first_due"),
        (lambda b: b["customer"].update(email="not-an-email"), "customer.email"),
        (
            lambda b: b.update(
                subscription={"amount": 1, "interval": "P1M", "start": "2026-12-01"}
            ),
            "body",
        ),
        (lambda b: b["terms"].update(text_sha256="xyz"), "terms.text_sha256"),
        (lambda b: b.update(policy="no-such-policy"), "policy"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    http: httpx.AsyncClient, mutate: Any, field: str
) -> None:
    body = contract_body()
    mutate(body)
    err = assert_error(
        await http.post("/v1/contracts", json=body, headers=PLATFORM), 422, "invalid_input"
    )
    assert err["message"].startswith(field), err


async def test_checkout_replay_200_and_conflict_409(http: httpx.AsyncClient) -> None:
    body = contract_body()
    body["consents"] = [  # two, to see their order kept
        {
            "kind": kind,
            "version": "consent-2026-10",
            "text_hash": "ab" * 32,
            "given_at": "2026-11-27T10:00:05+01:00",
            "ip": "203.0.113.7",
        }
        for kind in ("digital_content_early_start", "waiver_acknowledged")
    ]
    first = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert first.status_code == 201, first.text
    assert first.json()["temporal_ui"].endswith(f"/workflows/contract-{body['contract_id']}")
    replay = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert replay.status_code == 200 and replay.json()["contract_id"] == body["contract_id"]
    # the 201 is built from the rows as written, the 200 read back: the same contract
    assert replay.json() == first.json()
    assert [c["kind"] for c in first.json()["consents"]] == [
        "digital_content_early_start",
        "waiver_acknowledged",
    ]
    changed = json.loads(json.dumps(body))
    changed["installments"]["amount"] = 12300
    assert_error(await http.post("/v1/contracts", json=changed, headers=PLATFORM), 409, "conflict")


async def test_concurrent_replays_create_one_contract(http: httpx.AsyncClient) -> None:
    body = contract_body()
    answers = await asyncio.gather(
        *(http.post("/v1/contracts", json=body, headers=PLATFORM) for _ in range(5))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1 and codes.count(200) == 4, codes


async def test_unknown_contract_is_404(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/v1/contracts/nope", headers=ADMIN), 404, "not_found")
    resp = await http.post(
        "/v1/contracts/nope/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert_error(resp, 404, "not_found")


async def test_access_of_unknown_customer_is_none(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/access/nobody/nothing", headers=PLATFORM)
    assert resp.status_code == 200
    assert resp.json()["access"] == "none" and resp.json()["contract_id"] is None


def _signed(payload: str, secret: str, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    sig = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", secret)
    return f"t={t},v1={sig}"


async def test_webhook_signature_checked_and_duplicates_ignored(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    event = {
        "id": f"evt_test_{time.time_ns()}",
        "object": "event",
        "type": "payment_intent.succeeded",  # for a PaymentIntent no contract knows
        "data": {"object": {"id": "pi_nobody", "object": "payment_intent", "metadata": {}}},
    }
    payload = json.dumps(event)
    forged = await http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": _signed(payload, "whsec_wrong")},
    )
    assert_error(forged, 400, "bad_signature")
    expired = await http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": _signed(
                payload, settings.stripe_webhook_secret.get_secret_value(), 1000
            )
        },
    )
    assert_error(expired, 400, "bad_signature")
    ok = await http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": _signed(payload, settings.stripe_webhook_secret.get_secret_value())
        },
    )
    assert ok.status_code == 200 and ok.json() == {"received": True, "duplicate": False}
    dup = await http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": _signed(payload, settings.stripe_webhook_secret.get_secret_value())
        },
    )
    assert dup.json() == {"received": True, "duplicate": True}
    garbage = await http.post(
        "/v1/webhooks/stripe",
        content="{not json",
        headers={
            "Stripe-Signature": _signed(
                "{not json", settings.stripe_webhook_secret.get_secret_value()
            )
        },
    )
    assert_error(garbage, 400, "bad_request")


async def test_health(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
