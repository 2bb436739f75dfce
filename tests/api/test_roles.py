"""API hygiene: the three roles of SPEC.md §4 on every route (no key → 401, a wrong role →
403), the OpenAPI document, request ids in answers and logs.

The routes are walked from the app itself, so a route added without an entry in ROLES
below fails here until someone decides who may use it.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.logging import configure_logging
from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client

KEYS = {"platform": PLATFORM, "support": SUPPORT, "admin": ADMIN}
PUBLIC = "public"  # no API key: health probes, metrics; the Stripe webhook (signature instead)

# Who may use each route, as SPEC.md §4 has it. The admin may do everything; "support" reads
# contracts (and their timeline) as well as the platform does.
ROLES: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/contracts"): {"platform"},
    ("GET", "/v1/contracts/{contract_id}"): {"platform", "support"},
    ("GET", "/v1/contracts/{contract_id}/events"): {"platform", "support"},
    ("GET", "/v1/access/{customer_id}/{product_id}"): {"platform"},
    ("GET", "/v1/contracts"): {"support"},
    ("GET", "/v1/contracts/{contract_id}/notices"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/pause"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/resume"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/settlements"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/payment-method"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/deferral"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/waivers"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/contest"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/cancel"): {"platform", "support"},
    ("POST", "/v1/contracts/{contract_id}/address"): {"support"},
    ("POST", "/v1/contracts/{contract_id}/write-off"): {"admin"},
    ("POST", "/v1/contracts/{contract_id}/approve-handoff"): {"admin"},
    ("POST", "/v1/contracts/{contract_id}/retry-debit"): {"admin"},
    ("POST", "/v1/contracts/{contract_id}/recall"): {"admin"},
    ("POST", "/v1/contracts/{contract_id}/case-status"): {"admin"},
    ("GET", "/v1/contracts/{contract_id}/actions/{key}"): {"support"},
    ("GET", "/v1/contracts/{contract_id}/collection-case"): {"admin"},
    ("GET", "/v1/reports/receivables"): {"admin"},
    ("GET", "/v1/contracts/{contract_id}/invoices"): {"platform", "support"},
    ("GET", "/v1/invoices/{number}"): {"platform", "support"},
    ("GET", "/v1/exports/datev"): {"admin"},
    ("POST", "/v1/customers/{customer_id}/erase"): {"admin"},
    ("POST", "/v1/sellers"): {"platform"},
    ("GET", "/v1/sellers"): {"platform"},
    ("GET", "/v1/sellers/{seller_id}"): {"platform"},
    ("PATCH", "/v1/sellers/{seller_id}"): {"admin"},
    ("POST", "/codec/encode"): {"admin"},
    ("POST", "/codec/decode"): {"admin"},
    ("POST", "/v1/webhooks/stripe"): {PUBLIC},
    ("POST", "/v1/webhooks/stripe/sellers/{seller_id}"): {PUBLIC},
    ("POST", "/v1/webhooks/collection"): {PUBLIC},  # the partner's signature instead
    ("GET", "/healthz"): {PUBLIC},
    ("GET", "/readyz"): {PUBLIC},
    ("GET", "/metrics"): {PUBLIC},
}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves.

    From the OpenAPI document, not `app.routes`: since FastAPI 0.137 an included router sits
    in `app.routes` as one opaque entry, and a walk over it would find nothing and prove
    nothing. The floor below keeps this enumeration from ever going quiet.
    """
    found = [
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    ]
    assert len(found) >= 23 and ("POST", "/v1/contracts") in found, found
    return found


@pytest.fixture
async def app(settings: Settings, sessions: sessionmaker[Session]) -> FastAPI:
    app = create_app(settings, sessions)
    # Auth is decided before any Temporal call; a client that must never be used proves it.
    app.state.mahnwerk._client = object()
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app) as client:
        yield client


def test_every_route_has_an_entry(app: FastAPI) -> None:
    missing = [r for r in routes(app) if r not in ROLES]
    assert not missing, f"routes without a role entry in ROLES: {missing}"


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-id", path)


async def _call(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str] | None
) -> httpx.Response:
    # An empty JSON body: the key is checked before the body is validated.
    body: Any = {} if method in ("POST", "PUT", "PATCH") else None
    return await http.request(method, _url(path), json=body, headers=headers or {})


def _guarded(app: FastAPI) -> list[tuple[str, str]]:
    return [r for r in routes(app) if PUBLIC not in ROLES.get(r, {PUBLIC})]


async def test_every_route_without_a_key_is_401(app: FastAPI, http: httpx.AsyncClient) -> None:
    for method, path in _guarded(app):
        for headers in (None, {"Authorization": "Bearer not-a-key-of-ours"}, {"Authorization": ""}):
            resp = await _call(http, method, path, headers)
            assert resp.status_code == 401, (method, path, headers, resp.text)
            assert resp.json()["error"]["code"] == "unauthorized"


async def test_every_route_refuses_other_roles_with_403(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    for method, path in _guarded(app):
        allowed = ROLES[(method, path)] | {"admin"}
        for role, headers in KEYS.items():
            resp = await _call(http, method, path, headers)
            if role in allowed:
                # past auth: the unknown contract, the empty body or an empty answer
                assert resp.status_code not in (401, 403), (method, path, role, resp.text)
            else:
                assert resp.status_code == 403, (method, path, role, resp.text)
                err = resp.json()["error"]
                assert err["code"] == "forbidden" and role in err["message"]


async def test_auth_comes_before_query_validation(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/contracts?limit=0")).status_code == 401
    assert (await http.get("/v1/contracts?limit=0", headers=PLATFORM)).status_code == 403
    resp = await http.get("/v1/contracts?limit=0", headers=SUPPORT)
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("limit")


async def test_openapi_documents_summaries_examples_and_errors(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert set(schemas["ErrorOut"]["properties"]) == {"error"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            if path.startswith("/v1/") and not path.startswith("/v1/webhooks/"):
                for status in ("401", "403"):
                    ref = op["responses"][status]["content"]["application/json"]["schema"]
                    assert ref == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body and "$ref" in body.get("schema", {}):
                name = body["schema"]["$ref"].rsplit("/", 1)[-1]
                assert schemas[name].get("examples"), (method, path, name)
            # input that can be invalid (string path parameters cannot): 422 as ErrorOut
            if body or any(p["in"] == "query" for p in op.get("parameters", [])):
                responses = op["responses"]
                assert "422" in responses, (method, path)
                schema = responses["422"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)


# -- request ids and the request log line ---------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("INFO", stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_request_id_is_answered_and_logged(
    http: httpx.AsyncClient, log_stream: io.StringIO
) -> None:
    resp = await http.get("/v1/contracts/ord-1/events", headers={**SUPPORT, "X-Request-Id": "r-42"})
    assert resp.status_code == 404 and resp.headers["x-request-id"] == "r-42"
    generated = (await http.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # an id that would break the log line is replaced, not echoed
    resp = await http.get("/healthz", headers={"X-Request-Id": 'a b"c'})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
    # a line logged inside a route carries the request id too
    await http.post(
        "/codec/decode", json={"payloads": []}, headers={**ADMIN, "X-Request-Id": "r-43"}
    )

    lines = log_stream.getvalue().splitlines()
    request = [line for line in lines if "msg=request" in line and "request_id=r-42" in line]
    assert len(request) == 1, lines
    fields = dict(part.split("=", 1) for part in request[0].split(" "))
    assert fields["method"] == "GET" and fields["path"] == "/v1/contracts/ord-1/events"
    assert fields["status"] == "404" and fields["caller"] == "anna"
    assert fields["contract_id"] == "ord-1" and fields["workflow_id"] == "contract-ord-1"
    assert float(fields["duration_ms"]) >= 0 and fields["level"] == "info"
    assert any(f"request_id={generated}" in line for line in lines)
    inside = [line for line in lines if "codec decode by root" in line]
    assert inside and "request_id=r-43" in inside[0], lines


async def test_unexpected_error_is_500_in_the_error_format_with_the_request_id(
    app: FastAPI, log_stream: io.StringIO
) -> None:
    @app.get("/boom-for-the-test")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        resp = await client.get("/boom-for-the-test", headers={"X-Request-Id": "r-500"})
    assert resp.status_code == 500 and resp.headers["x-request-id"] == "r-500"
    assert resp.json()["error"]["code"] == "internal_error"
    line = next(x for x in log_stream.getvalue().splitlines() if "request_id=r-500" in x)
    assert "level=error" in line and "status=500" in line and "RuntimeError" in line
    assert "\n" not in line
