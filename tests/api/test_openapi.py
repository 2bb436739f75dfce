"""The API explains itself (issue 16 item 3): the OpenAPI document validates, declares the
Bearer scheme, has a schema for every response of every operation and stable operation ids,
documents every event the workflows emit as a webhook; `/docs` and `/redoc` reference only
the API's own URLs; the typed reads describe exactly what a real contract's reads answer
(nothing dropped, renamed or undescribed); error bodies carry the request id."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from api.docs import ASSETS_URL
from api.main import create_app
from api.responses import (
    ActionStatusOut,
    CollectionCaseOut,
    ContractOut,
    TimelineOut,
)
from api.routes.contracts import contract_out
from api.routes.reads import ContractPage, NoticesOut, ReceivablesOut
from api.schemas import AccessOut, ActionOut
from api.webhook_events import EVENT_MODELS
from core.settings import PROJECT_ROOT, Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs

LOST = "pm_card_visa_chargeDeclinedLostCard"


@pytest.fixture
async def app(settings: Settings, sessions: sessionmaker[Session]) -> FastAPI:
    app = create_app(settings, sessions)
    app.state.mahnwerk._client = object()  # no read here needs Temporal
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app) as client:
        yield client


async def _doc(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.get("/openapi.json")
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


async def test_openapi_validates_and_declares_the_bearer_scheme(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    doc = await _doc(http)
    validate(doc)  # raises on an invalid OpenAPI 3.1 document
    schemes = doc["components"]["securitySchemes"]
    assert schemes == {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "API key",
            "description": schemes["apiKey"]["description"],
        }
    }
    for method, path, op in _operations(doc):
        keyed = path.startswith("/v1/") and not path.startswith("/v1/webhooks/")  # signed
        keyed = keyed or path in ("/codec/decode", "/codec/encode")
        if keyed:
            assert op.get("security") == [{"apiKey": []}], (method, path)
        else:
            assert "security" not in op, (method, path)


async def test_every_response_of_every_operation_has_a_schema(http: httpx.AsyncClient) -> None:
    doc = await _doc(http)
    for method, path, op in _operations(doc):
        assert op["responses"], (method, path)
        for status, response in op["responses"].items():
            content = response.get("content")
            assert content, (method, path, status, "no content")
            for media, body in content.items():
                schema = body.get("schema")
                assert schema, (method, path, status, media, "no schema")
                if media == "application/json" and not status.startswith("4"):
                    # a described object, not a bare `object` / `{}`
                    assert "$ref" in schema or schema.get("properties"), (method, path, status)


async def test_operation_ids_are_stable_and_unique(http: httpx.AsyncClient) -> None:
    doc = await _doc(http)
    ids = {(m, p): op["operationId"] for m, p, op in _operations(doc)}
    assert len(set(ids.values())) == len(ids), sorted(ids.values())
    for key, op_id in ids.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", op_id), (key, op_id)
    # the names client generators build their methods from (docs/api.md lists them)
    assert ids[("POST", "/v1/contracts")] == "contracts_create"
    assert ids[("GET", "/v1/contracts/{contract_id}")] == "contracts_get"
    assert ids[("GET", "/v1/contracts/{contract_id}/events")] == "contracts_get_events"
    assert ids[("GET", "/v1/contracts")] == "contracts_list"
    assert ids[("POST", "/v1/contracts/{contract_id}/pause")] == "contracts_pause"
    assert ids[("GET", "/v1/access/{customer_id}/{product_id}")] == "access_get"
    assert ids[("GET", "/v1/reports/receivables")] == "reports_receivables"


async def test_statuses_and_stages_are_enumerated(http: httpx.AsyncClient) -> None:
    schemas = (await _doc(http))["components"]["schemas"]
    contract = schemas["ContractOut"]["properties"]
    assert set(contract["status"]["enum"]) == {
        "active",
        "in_dunning",
        "completed",
        "cancelled",
        "handed_off",
        "written_off",
        "failed",
    }
    assert set(contract["access"]["enum"]) == {"granted", "locked", "none"}
    assert set(contract["kind"]["enum"]) == {"one_off", "installments", "subscription"}
    stage = schemas["DunningOut"]["properties"]["stage"]
    assert {"enum": ["none", "retrying", "needs_address"], "type": "string"} in stage["anyOf"]
    installment = schemas["InstallmentOut"]["properties"]["status"]["enum"]
    assert {"scheduled", "processing", "paid", "open", "stalled", "refunded"} <= set(installment)
    # the error object documents the request id
    assert "request_id" in schemas["ErrorBody"]["properties"]


def _emitted_event_types() -> set[str]:
    found: set[str] = set()
    for path in (PROJECT_ROOT / "workflows").glob("*.py"):
        found |= set(re.findall(r'event="([a-z_.]+)"', path.read_text()))
    # written straight to the outbox with the invoice, not by a workflow fact (issue 15)
    invoicing = (PROJECT_ROOT / "core" / "invoicing.py").read_text()
    found |= set(re.findall(r'"((?:invoice|credit_note)\.issued)"', invoicing))
    return found


async def test_every_emitted_event_is_documented_as_a_webhook(http: httpx.AsyncClient) -> None:
    doc = await _doc(http)
    emitted = _emitted_event_types()
    assert len(emitted) >= 20, emitted  # the grep finds the workflows' events
    assert set(doc["webhooks"]) == emitted
    assert set(EVENT_MODELS) == emitted
    schemas = doc["components"]["schemas"]
    for event_type, item in doc["webhooks"].items():
        op = item["post"]
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        assert headers == {
            "Mahnwerk-Signature",
            "Mahnwerk-Event-Id",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }, event_type
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = schemas[ref.rsplit("/", 1)[-1]]
        assert body["properties"]["type"]["const"] == event_type
        assert {"id", "type", "created", "contract_id", "customer_id", "data"} <= set(
            body["required"]
        )
        assert "422" not in op["responses"]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


async def test_docs_pages_reference_only_the_api_itself(http: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        resp = await http.get(page)
        assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
        refs = _Refs()
        refs.feed(resp.text)
        assert refs.urls, page
        for url in refs.urls:
            assert url.startswith("/"), (page, url)  # same origin, no CDN
            asset = await http.get(url)
            assert asset.status_code == 200, (page, url)
        assert not re.search(r"https?://(?!www\.w3\.org)", resp.text), page
        assert "openapi.json" in resp.text
    js = await http.get(f"{ASSETS_URL}/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 500_000
    assert "javascript" in js.headers["content-type"]


async def test_error_bodies_carry_the_request_id(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/contracts/nope", headers={**PLATFORM, "X-Request-Id": "req-42"})
    assert resp.status_code == 404
    assert resp.json()["error"]["request_id"] == "req-42" == resp.headers["X-Request-Id"]
    # refused before the route (RequestGuard: no key) and by validation (422)
    resp = await http.post("/v1/contracts", json={})
    assert resp.status_code == 401
    assert resp.json()["error"]["request_id"] == resp.headers["X-Request-Id"]
    resp = await http.post("/v1/contracts", json={}, headers=PLATFORM)
    assert resp.status_code == 422
    assert resp.json()["error"]["request_id"] == resp.headers["X-Request-Id"]


# -- the typed reads describe what a real contract answers ---------------------------------------


def _undescribed(value: Any, where: str = "") -> list[str]:
    """Keys a response carried that its model does not describe (anywhere in the tree)."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{where}.{k}" for k in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _undescribed(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += _undescribed(item, f"{where}[{n}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            found += _undescribed(item, f"{where}.{k}")
    return found


def _described(model: type[BaseModel], body: Any) -> None:
    parsed = model.model_validate(body)
    assert not _undescribed(parsed), (model.__name__, _undescribed(parsed))


async def test_reads_of_a_handed_off_contract_match_their_models(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    """A contract through the whole ladder (declines, fees, interest, a partial settlement
    with an Idempotency-Key, hand-off): every read validates against its documented model,
    with no field the model does not describe, and the typed route answers exactly the
    dict it always built (field names unchanged)."""
    await stack.pin_date(6, 15)  # no holiday moves the rungs
    ladder = rungs(date.fromisoformat(await stack.today()))
    email = unique_email()
    cid, handle = await stack.start(count=2, payment_method=LOST, email=email)
    await stack.sleep_until(after(ladder["mahnung_1"]))
    await stack.env.sleep(timedelta(days=1))
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": 1000, "method": "bank_transfer", "reference": "Teilzahlung"},
        headers={**SUPPORT, "Idempotency-Key": "openapi-settle-1"},
    )
    assert resp.status_code == 200, resp.text
    _described(ActionOut, resp.json())
    locked = await stack.http.get(f"/v1/contracts/{cid}", headers=PLATFORM)
    _described(ContractOut, locked.json())
    assert locked.json()["claim"]["fee_items"]  # the first Mahnung's fee

    assert (await stack.settled(handle, "handed_off")).status == "handed_off"

    reads: list[tuple[type[BaseModel], str, dict[str, str]]] = [
        (ContractOut, f"/v1/contracts/{cid}", PLATFORM),
        (TimelineOut, f"/v1/contracts/{cid}/events", PLATFORM),
        (NoticesOut, f"/v1/contracts/{cid}/notices", SUPPORT),
        (CollectionCaseOut, f"/v1/contracts/{cid}/collection-case", ADMIN),
        (ActionStatusOut, f"/v1/contracts/{cid}/actions/openapi-settle-1", SUPPORT),
        (ContractPage, "/v1/contracts?limit=5", SUPPORT),
        (ReceivablesOut, "/v1/reports/receivables", ADMIN),
    ]
    bodies: dict[str, Any] = {}
    for model, url, headers in reads:
        resp = await stack.http.get(url, headers=headers)
        assert resp.status_code == 200, (url, resp.text)
        _described(model, resp.json())
        bodies[model.__name__] = resp.json()
    contract = bodies["ContractOut"]
    access = await stack.http.get(
        f"/v1/access/{contract['customer_id']}/{contract['product_id']}", headers=PLATFORM
    )
    _described(AccessOut, access.json())

    # The route answers exactly the dict it always built: nothing dropped, renamed or added.
    raw = contract_out(sessions, stack.settings, cid)
    raw_json = json.loads(json.dumps(raw, default=str))
    raw_json["claim"].pop("as_of")  # computed as of the request's day, as the API's
    answered = dict(contract)
    answered["claim"] = {k: v for k, v in contract["claim"].items() if k != "as_of"}
    assert answered == raw_json
    assert {e["type"] for e in bodies["TimelineOut"]["data"]} >= {
        "payment.failed",
        "dunning.stage_changed",
        "settlement.recorded",
        "contract.handed_off",
    }
    assert bodies["CollectionCaseOut"]["route"] in ("court", "inkasso")
