"""Input limits (issue 13 item 6), from the outside: HTTP requests through the app.

Bodies are bounded and callers authenticated before a body is read (413 / 401), money is a
JSON integer, schedules have bounds, every out-of-range value is a 422 naming the field (and
never a 500), names and addresses carry no control or bidi characters, e-mail addresses are
parsed by a real validator, ids keep to their character set.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from google.protobuf import json_format
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.models import Contract
from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client, contract_body, start_test_server

MiB = 1024 * 1024


@pytest.fixture(scope="module")
async def limits_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_test_server() as env:
        yield env


@pytest.fixture
def app(
    limits_env: WorkflowEnvironment, settings: Settings, sessions: sessionmaker[Session]
) -> Any:
    # The production default for back-dating (the shared fixture widens it for fixed dates).
    app = create_app(settings.model_copy(update={"max_backdate_days": 31}), sessions)
    app.state.mahnwerk._client = limits_env.client
    return app


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app) as client:
        yield client


class Counting:
    """A request body that counts how much of it the server pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            piece = b"x" * min(self.chunk, self.total - self.sent)
            self.sent += len(piece)
            yield piece


def field_error(resp: httpx.Response, field: str) -> str:
    """The 422's message for `field` (asserting the format of SPEC.md §4)."""
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_input"
    fields = [d["field"] for d in err["details"]]
    assert field in fields, (field, err)
    assert err["message"].startswith(f"{fields[0]}: ")
    return str(next(d["message"] for d in err["details"] if d["field"] == field))


# -- body size and authentication before the body ------------------------------------------


async def test_fifty_megabytes_without_a_key_are_refused_unread(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key-at-all"}):
        body = Counting(50 * MiB)
        resp = await http.post(
            "/v1/contracts",
            content=body,
            headers={
                **headers,
                "Content-Type": "application/json",
                "Content-Length": str(50 * MiB),
            },
        )
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "unauthorized"
        assert body.sent <= 64 * 1024, body.sent  # at most what the transport pre-reads


async def test_a_declared_oversized_body_is_413_before_it_is_read(
    http: httpx.AsyncClient,
) -> None:
    body = Counting(65 * 1024 + 1)
    resp = await http.post(
        "/v1/contracts",
        content=body,
        headers={
            **PLATFORM,
            "Content-Type": "application/json",
            "Content-Length": str(65 * 1024 + 1),
        },
    )
    assert resp.status_code == 413, resp.text
    err = resp.json()["error"]
    assert err["code"] == "payload_too_large" and "65536" in err["message"]
    assert body.sent <= 64 * 1024


async def test_a_streamed_body_is_cut_off_at_the_limit(http: httpx.AsyncClient) -> None:
    body = Counting(10 * MiB, chunk=16 * 1024)  # no Content-Length: chunked
    resp = await http.post(
        "/v1/contracts/x/pause",
        content=body,
        headers={**SUPPORT, "Content-Type": "application/json"},
    )
    assert resp.status_code == 413, resp.text
    assert body.sent <= 64 * 1024 + 2 * 16 * 1024  # the limit, plus the chunk in flight


async def test_a_checkout_padded_past_the_limit_is_413(http: httpx.AsyncClient) -> None:
    body = contract_body()
    body["customer"]["name"] = "E" * (70 * 1024)
    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 413, resp.text


async def test_codec_takes_larger_bodies_up_to_its_own_limit(
    limits_env: WorkflowEnvironment, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    ring = "k1:" + base64.b64encode(b"k" * 32).decode()
    app = create_app(
        settings.model_copy(update={"max_codec_body_bytes": 1 * MiB}).model_copy(
            update={"codec_key": SecretStr(ring)}
        ),
        sessions,
    )
    payloads = [Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"p" * 1000 + b'"')]
    batch = json_format.MessageToJson(Payloads(payloads=payloads * 200))  # ~250 KiB
    assert 64 * 1024 < len(batch) < MiB
    async with api_client(app) as http:
        ok = await http.post(
            "/codec/encode", content=batch, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert ok.status_code == 200, ok.text[:300]
        assert len(ok.json()["payloads"]) == 200
        big = json_format.MessageToJson(Payloads(payloads=payloads * 1200))  # > 1 MiB
        too_big = await http.post(
            "/codec/encode", content=big, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert too_big.status_code == 413, too_big.text[:300]
        # Without a credential the codec refuses before reading, like the API.
        anon = await http.post(
            "/codec/decode", content=batch, headers={"Content-Type": "application/json"}
        )
        assert anon.status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_over_real_http_a_50_mb_upload_without_key_gets_401_after_the_headers(
    app: Any,
) -> None:
    """Through uvicorn: the client announces 50 MB, sends 64 KiB of it and already has its
    401; the server closes the connection instead of reading the rest."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/contracts HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {50 * MiB}\r\n\r\n".encode()
            + b"{" * (64 * 1024)
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 401"), head
        assert b"connection: close" in head.lower()
        rest = await asyncio.wait_for(reader.read(), 10)  # EOF: the server hung up
        assert b"unauthorized" in rest
        writer.close()
    finally:
        server.should_exit = True
        await serving


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["schlüssel-ä-123", "\u202eadmin-key-123", "ключ"])
async def test_non_ascii_bearer_token_is_401_not_500(app: Any, token: str) -> None:
    async with api_client(app) as http:
        raw = f"Bearer {token}".encode()
        for method, path in (("GET", "/v1/contracts/x"), ("POST", "/v1/contracts")):
            resp = await http.request(
                method,
                path,
                headers=[(b"authorization", raw), (b"content-type", b"application/json")],
                content=b"{}" if method == "POST" else None,
            )
            assert resp.status_code == 401, (method, resp.text)


# -- money: JSON integers only -----------------------------------------------------------------


@pytest.mark.parametrize("amount", [True, 1.5, 100.0, "100", "9900", None])
async def test_money_is_a_strict_integer(http: httpx.AsyncClient, amount: Any) -> None:
    body = contract_body()
    body["installments"]["amount"] = amount
    field_error(
        await http.post("/v1/contracts", json=body, headers=PLATFORM), "installments.amount"
    )
    sub = contract_body(kind="subscription")
    sub["subscription"]["amount"] = amount
    field_error(await http.post("/v1/contracts", json=sub, headers=PLATFORM), "subscription.amount")
    settle = {"amount": amount, "method": "bank_transfer", "reference": "Überweisung"}
    field_error(
        await http.post("/v1/contracts/ord-x/settlements", json=settle, headers=SUPPORT), "amount"
    )


@pytest.mark.parametrize("count", [True, 2.0, "6"])
async def test_installment_count_is_a_strict_integer(http: httpx.AsyncClient, count: Any) -> None:
    body = contract_body()
    body["installments"]["count"] = count
    field_error(await http.post("/v1/contracts", json=body, headers=PLATFORM), "installments.count")


# -- schedules ---------------------------------------------------------------------------------


def _today(delta_days: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=delta_days)).date().isoformat()


SCHEDULES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "one-second interval on a real policy",
        lambda b: b["installments"].update(interval="PT1S"),
        "installments.interval",
    ),
    (
        "PT1S × 600",
        lambda b: b["installments"].update(interval="PT1S", count=600),
        "installments.count",
    ),
    ("23 hours", lambda b: b["installments"].update(interval="PT23H"), "installments.interval"),
    (
        "an interval of two years",
        lambda b: b["installments"].update(interval="P2Y"),
        "installments.interval",
    ),
    ("121 installments", lambda b: b["installments"].update(count=121), "installments.count"),
    (
        "ends more than 10 years after it starts",
        lambda b: b["installments"].update(count=120, interval="P1Y", first_due=_today()),
        "installments.count",
    ),
    (
        "first due 1900",
        lambda b: b["installments"].update(first_due="1900-01-01"),
        "installments.first_due",
    ),
    (
        "first due 40 days ago (limit 31)",
        lambda b: b["installments"].update(first_due=_today(-40)),
        "installments.first_due",
    ),
    (
        "first due in 9999",
        lambda b: b["installments"].update(first_due="9999-12-31"),
        "installments.first_due",
    ),
    (
        "first due at the edge of datetime",
        lambda b: b["installments"].update(first_due="0001-01-01T00:00:00+14:00"),
        "installments.first_due",
    ),
    (
        "first due beyond datetime",
        lambda b: b["installments"].update(first_due="9999-12-31T23:59:59-14:00"),
        "installments.first_due",
    ),
    (
        "first due six years ahead",
        lambda b: b["installments"].update(first_due=_today(6 * 366)),
        "installments.first_due",
    ),
    (
        "terms accepted in 1900",
        lambda b: b["terms"].update(accepted_at="1900-01-01T00:00:00Z"),
        "terms.accepted_at",
    ),
    (
        "terms accepted next year",
        lambda b: b["terms"].update(accepted_at=f"{_today(400)}T00:00:00Z"),
        "terms.accepted_at",
    ),
    (
        "terms accepted at the end of time",
        lambda b: b["terms"].update(accepted_at="9999-12-31T23:59:59-14:00"),
        "terms.accepted_at",
    ),
]


@pytest.mark.parametrize(("what", "change", "field"), SCHEDULES, ids=[s[0] for s in SCHEDULES])
async def test_out_of_range_schedules_are_422_naming_the_field(
    http: httpx.AsyncClient, what: str, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    body = contract_body()
    change(body)
    message = field_error(await http.post("/v1/contracts", json=body, headers=PLATFORM), field)
    assert message, what


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"start": "1900-01-01"}, "subscription.start"),
        ({"start": "9999-12-31"}, "subscription.start"),
        ({"interval": "PT10S"}, "subscription.interval"),
        ({"minimum_term": "P100Y"}, "subscription.minimum_term"),
    ],
)
async def test_subscription_bounds(
    http: httpx.AsyncClient, change: dict[str, str], field: str
) -> None:
    body = contract_body(kind="subscription")
    body["subscription"].update(change)
    field_error(await http.post("/v1/contracts", json=body, headers=PLATFORM), field)


async def test_short_intervals_only_on_a_policy_marked_demo(http: httpx.AsyncClient) -> None:
    body = contract_body(policy="demo", count=3, first_due=_today())
    body["installments"]["interval"] = "PT30S"
    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text  # policies/demo.yaml says `demo: true`
    body = contract_body(policy="default", count=3, first_due=_today())
    body["installments"]["interval"] = "PT30S"
    message = field_error(
        await http.post("/v1/contracts", json=body, headers=PLATFORM), "installments.interval"
    )
    assert "demo" in message and "default" in message
    # A day is the shortest interval of a real plan.
    body = contract_body(policy="default", count=3, first_due=_today())
    body["installments"]["interval"] = "P1D"
    assert (await http.post("/v1/contracts", json=body, headers=PLATFORM)).status_code == 201


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("pause", {"until": "9999-12-31T23:59:59Z", "reason": "x"}, "until"),
        ("pause", {"until": "0001-01-01T00:00:00+14:00", "reason": "x"}, "until"),
        ("deferral", {"until": "9999-12-31", "reason": "x"}, "until"),
        ("deferral", {"until": "1900-01-01", "reason": "x"}, "until"),
        (
            "settlements",
            {
                "amount": 100,
                "method": "cash",
                "reference": "r",
                "received_at": "2999-01-01T00:00:00Z",
            },
            "received_at",
        ),
        ("waivers", {"fees": "yes", "interest": False, "reason": "x"}, "fees"),
        ("waivers", {"fees": 1, "interest": False, "reason": "x"}, "fees"),
        ("contest", {"reason": "bestritten\u202e"}, "reason"),
        ("settlements", {"amount": 100, "method": "cash", "reference": "a\r\nb"}, "reference"),
    ],
)
async def test_support_action_bounds(
    http: httpx.AsyncClient, action: str, body: dict[str, Any], field: str
) -> None:
    resp = await http.post(f"/v1/contracts/ord-x/{action}", json=body, headers=SUPPORT)
    field_error(resp, field)


# -- names, addresses, e-mail, ids -------------------------------------------------------------


TEXT_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "CR/LF in the name",
        lambda b: b["customer"].update(name="Erika\r\nBcc: x@evil.example"),
        "customer.name",
    ),
    (
        "a tab in the name",
        lambda b: b["customer"].update(name="Erika\tMustermann"),
        "customer.name",
    ),
    (
        "bidi override in the name",
        lambda b: b["customer"].update(name="Erika \u202eannamretsuM"),
        "customer.name",
    ),
    (
        "line separator in the street",
        lambda b: b["customer"]["address"].update(line1="Musterstr.\u20281"),
        "customer.address.line1",
    ),
    (
        "bidi isolate in the city",
        lambda b: b["customer"]["address"].update(city="Berlin\u2067"),
        "customer.address.city",
    ),
    (
        "newline in the product name",
        lambda b: b["product"].update(name="Kurs X\nBcc: a@b.c"),
        "product.name",
    ),
    (
        "two recipients",
        lambda b: b["customer"].update(email="a,b<c@evil.example"),
        "customer.email",
    ),
    (
        "a display name",
        lambda b: b["customer"].update(email="Erika <erika@example.org>"),
        "customer.email",
    ),
    ("no domain dot", lambda b: b["customer"].update(email="erika@localhost"), "customer.email"),
    ("an IP literal", lambda b: b["customer"].update(email="erika@[127.0.0.1]"), "customer.email"),
    (
        "an e-mail as customer id",
        lambda b: b["customer"].update(id="erika@example.org"),
        "customer.id",
    ),
    ("spaces in the product id", lambda b: b["product"].update(id="course x"), "product.id"),
    (
        "not a Stripe customer",
        lambda b: b["payment"].update(stripe_customer="erika@example.org"),
        "payment.stripe_customer",
    ),
]


@pytest.mark.parametrize(("what", "change", "field"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
async def test_bad_text_is_422_naming_the_field(
    http: httpx.AsyncClient, what: str, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    body = contract_body()
    change(body)
    message = field_error(await http.post("/v1/contracts", json=body, headers=PLATFORM), field)
    assert message, what


async def test_a_valid_international_checkout_is_accepted(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    body = contract_body(first_due=_today(), email=f"Jürgen.{uuid.uuid4().hex[:6]}@Exämple.de")
    body["customer"]["name"] = "Jürgen Groß-Öztürk"
    body["customer"]["address"].update(line1="Straße des 17. Juni 1", city="Düsseldorf")
    body["product"]["name"] = "Kurs „Steuern“ — Teil 2"
    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    # The domain part is normalised (lower case): what notices are addressed to.
    with sessions() as s:
        row = s.get(Contract, resp.json()["contract_id"])
        assert row is not None
        assert row.customer["email"].startswith("Jürgen.")
        assert row.customer["email"].endswith("@exämple.de")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/contracts/bad%20id", "contract_id"),
        ("/v1/contracts/" + "x" * 65, "contract_id"),
        ("/v1/contracts/%E2%80%AEx/events", "contract_id"),
        ("/v1/access/erika@example.org/course-x", "customer_id"),
        ("/v1/access/cus-1/course%0Ax", "product_id"),
    ],
)
async def test_ids_in_paths_keep_to_their_character_set(
    http: httpx.AsyncClient, path: str, field: str
) -> None:
    resp = await http.get(path, headers=ADMIN)
    field_error(resp, field)


async def test_json_body_that_is_not_an_object_is_422_not_500(http: httpx.AsyncClient) -> None:
    for raw in (b"[]", b"null", b"12", json.dumps("x").encode()):
        resp = await http.post(
            "/v1/contracts", content=raw, headers={**PLATFORM, "Content-Type": "application/json"}
        )
        assert resp.status_code == 422, resp.text
