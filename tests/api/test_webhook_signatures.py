"""POST /v1/webhooks/stripe with bad signatures and bad bodies (issue 6, "Bad input").

Forged, expired and plain duplicate deliveries are covered by
tests/api/test_contracts_api.py::test_webhook_signature_checked_and_duplicates_ignored;
here: a signature replayed on another body, several `v1=` entries, a missing header, an
empty or non-UTF-8 body. Every rejection is a 400 in SPEC.md §4's format and records
nothing (the event id is not marked as processed, so a later genuine delivery still counts).
"""

from __future__ import annotations

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
from core.models import WebhookEvent
from core.settings import Settings
from tests.conftest import api_client, start_test_server

URL = "/v1/webhooks/stripe"


@pytest.fixture(scope="module")
async def hook_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_test_server() as env:
        yield env


@pytest.fixture
async def http(
    hook_env: WorkflowEnvironment, settings: Settings, sessions: sessionmaker[Session]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, sessions)
    app.state.mahnwerk._client = hook_env.client
    async with api_client(app) as client:
        yield client


def _event() -> str:
    return json.dumps(
        {
            "id": f"evt_sig_{time.time_ns()}",
            "object": "event",
            # a type the endpoint acts on (others are acknowledged unrecorded), for a
            # PaymentIntent no contract knows
            "type": "payment_intent.payment_failed",
            "data": {"object": {"id": "pi_sig_1", "object": "payment_intent", "metadata": {}}},
        }
    )


def _sig(payload: str | bytes, secret: str, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    digest: str = stripe.WebhookSignature._compute_signature(f"{t}.{text}", secret)
    return digest


def _header(payload: str, secret: str, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    return f"t={t},v1={_sig(payload, secret, t)}"


def _assert_400(resp: httpx.Response, code: str) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == code and err["message"] and "details" in err
    return err


def _recorded(sessions: sessionmaker[Session], payload: str) -> bool:
    with sessions() as s:
        return s.get(WebhookEvent, json.loads(payload)["id"]) is not None


async def test_signature_replayed_on_another_body_is_rejected(
    http: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    genuine = _event()
    header = _header(genuine, settings.stripe_webhook_secret.get_secret_value())
    tampered = genuine.replace("payment_intent.payment_failed", "payment_intent.succeeded")
    other = _event()  # a different event id under the captured signature
    for body in (tampered, other, genuine + " "):
        resp = await http.post(URL, content=body, headers={"Stripe-Signature": header})
        _assert_400(resp, "bad_signature")
    assert not _recorded(sessions, other)
    # The genuine delivery with the same header still goes through, once.
    ok = await http.post(URL, content=genuine, headers={"Stripe-Signature": header})
    assert ok.status_code == 200 and ok.json() == {"received": True, "duplicate": False}
    assert _recorded(sessions, genuine)


async def test_types_we_do_not_act_on_are_acknowledged_without_a_record(
    http: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """Two of Stripe's three events per card debit (`payment_intent.created`,
    `charge.succeeded`) change nothing here: 200 at once, nothing written — but only once
    the signature holds."""
    for type_ in ("payment_intent.created", "charge.succeeded", "customer.created"):
        payload = _event().replace("payment_intent.payment_failed", type_)
        forged = await http.post(
            URL, content=payload, headers={"Stripe-Signature": _header(payload, "whsec_wrong")}
        )
        _assert_400(forged, "bad_signature")
        header = _header(payload, settings.stripe_webhook_secret.get_secret_value())
        for _ in range(2):
            ok = await http.post(URL, content=payload, headers={"Stripe-Signature": header})
            assert ok.status_code == 200, ok.text
            assert ok.json() == {"received": True, "duplicate": False, "ignored": True}
        assert not _recorded(sessions, payload)


async def test_several_v1_entries_one_valid_is_accepted_like_stripe(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Stripe sends one v1 per active secret while a secret is being rolled: any match counts."""
    payload = _event()
    t = int(time.time())
    secret = settings.stripe_webhook_secret.get_secret_value()
    header = f"t={t},v1={_sig(payload, 'whsec_old_rolled', t)},v1={_sig(payload, secret, t)}"
    # The reference: Stripe's own library accepts this header.
    assert (
        stripe.Webhook.construct_event(payload, header, secret)["id"] == json.loads(payload)["id"]
    )
    ok = await http.post(URL, content=payload, headers={"Stripe-Signature": header})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"received": True, "duplicate": False}


async def test_several_v1_entries_none_valid_or_only_other_schemes_rejected(
    http: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    payload = _event()
    t = int(time.time())
    good = _sig(payload, settings.stripe_webhook_secret.get_secret_value(), t)
    headers = [
        f"t={t},v1={_sig(payload, 'whsec_a', t)},v1={_sig(payload, 'whsec_b', t)}",
        f"t={t},v0={good}",  # the right digest under a scheme Stripe does not verify
        f"v1={good}",  # no timestamp
        f"t={t}",
        f"t=not-a-number,v1={good}",
        "garbage",
    ]
    for header in headers:
        resp = await http.post(URL, content=payload, headers={"Stripe-Signature": header})
        _assert_400(resp, "bad_signature")
    assert not _recorded(sessions, payload)


async def test_missing_or_empty_header_is_400(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    payload = _event()
    _assert_400(await http.post(URL, content=payload), "bad_signature")
    _assert_400(
        await http.post(URL, content=payload, headers={"Stripe-Signature": ""}), "bad_signature"
    )
    assert not _recorded(sessions, payload)


async def test_empty_body_is_400(http: httpx.AsyncClient, settings: Settings) -> None:
    _assert_400(await http.post(URL, content=b""), "bad_signature")  # and no header
    # Correctly signed, but nothing to parse.
    header = _header("", settings.stripe_webhook_secret.get_secret_value())
    _assert_400(
        await http.post(URL, content=b"", headers={"Stripe-Signature": header}), "bad_request"
    )


async def test_non_utf8_or_non_event_body_is_400(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    secret = settings.stripe_webhook_secret.get_secret_value()
    raw = b'{"id": "evt_\xff\xfe"}'
    resp = await http.post(URL, content=raw, headers={"Stripe-Signature": _header("x", secret)})
    assert resp.status_code == 400, resp.text
    # Signed, valid JSON, but no Stripe event (these answered 500 before the fix).
    for body in (
        "[]",
        '"evt"',
        "null",
        "{}",
        '{"id": "evt_no_type"}',
        '{"id": 7, "type": []}',
        '{"id": "evt_no_data", "type": "payment_intent.succeeded"}',
        '{"id": "evt_bad_data", "type": "charge.dispute.created", "data": {"object": 3}}',
    ):
        resp = await http.post(
            URL, content=body, headers={"Stripe-Signature": _header(body, secret)}
        )
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        assert resp.json()["error"]["message"]
