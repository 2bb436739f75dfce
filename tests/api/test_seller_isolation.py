"""Issue 14 part 3: API keys scoped to a seller see and act on that seller's contracts only.

Every route that names a contract is walked from the OpenAPI document (so a route added later
is covered without a new test): with the key of seller A, seller B's contract is 404 — the
very answer an id that does not exist gets — for every role the route admits, before any
body is read or Temporal is asked. The listing, the receivables report, the access check,
the sellers and the codec show A's rows only."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import json_format
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import WorkflowSerializationContext

from api.main import create_app
from api.routes.codec import OUT_OF_SCOPE_META
from core.codec import EncryptionCodec, parse_key_ring
from core.customer_keys import CustomerKeyStore
from core.db import transaction
from core.models import (
    AccessState,
    CollectionCase,
    Contract,
    Installment,
    Notice,
    Seller,
    SupportActionRequest,
    TimelineEvent,
)
from core.settings import Settings
from tests.api.test_roles import routes
from tests.conftest import ADMIN, STACK_CODEC_KEY
from workflows.types import workflow_id_for

ROLES = ("platform", "support", "admin")


@dataclass
class World:
    seller_a: str
    seller_b: str
    contract_a: str
    contract_b: str
    keys: dict[str, dict[str, str]]  # role -> headers of seller A's scoped key
    action_key: str


def _contract(s: Session, cid: str, seller: str, overdue: int) -> None:
    now = datetime.now(UTC)
    s.add(
        Contract(
            id=cid,
            seller_id=seller,
            kind="installments",
            policy_name="default",
            policy={},
            customer_id=f"cus-{cid}",
            customer={"id": f"cus-{cid}", "name": "Erika", "email": "e@example.org"},
            product_id=f"prod-{cid}",
            product={"id": f"prod-{cid}", "name": "Kurs"},
            currency="eur",
            terms={},
            payment={},
            request={},
            request_hash="h",
            workflow_id=workflow_id_for(cid),
            status="in_dunning",
            stage="mahnung_1",
            overdue_amount=overdue,
            case_no=1,
            case_opened_at=now - timedelta(days=20),
        )
    )
    s.flush()
    s.add(
        Installment(
            contract_id=cid,
            seq=1,
            due_at=now - timedelta(days=30),
            amount=overdue,
            status="open",
        )
    )
    s.add(
        TimelineEvent(
            contract_id=cid,
            key=f"{cid}:started",
            type="contract.started",
            occurred_at=now,
            data={},
        )
    )
    s.add(
        Notice(
            contract_id=cid,
            case_no=1,
            stage="reminder",
            notice_number=f"N-{cid}",
            locale="de",
            recipient="e@example.org",
            subject="Erinnerung",
            text="…",
            html="…",
            message_id=f"<{cid}@mahnwerk>",
        )
    )
    s.add(CollectionCase(contract_id=cid, case_no=1, route="court", file={"contract": cid}))
    s.add(
        AccessState(
            customer_id=f"cus-{cid}",
            product_id=f"prod-{cid}",
            contract_id=cid,
            access="locked",
        )
    )


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    tag = uuid.uuid4().hex[:8]
    seller_a, seller_b = f"iso-a-{tag}", f"iso-b-{tag}"
    contract_a, contract_b = f"ord-a-{tag}", f"ord-b-{tag}"
    action_key = f"key-{tag}"
    with transaction(sessions) as s:
        for sid in (seller_a, seller_b):
            s.add(Seller(id=sid, source="api", name=sid))
        _contract(s, contract_a, seller_a, 11100)
        _contract(s, contract_b, seller_b, 22200)
        for cid in (contract_a, contract_b):
            s.add(
                SupportActionRequest(
                    contract_id=cid,
                    idempotency_key=action_key,
                    action="pause",
                    request_hash="x",
                    actor="anna",
                    state="done",
                    http_status=200,
                    response={"contract_id": cid},
                )
            )
    keys = {
        role: {"Authorization": f"Bearer {role}-of-a-{tag}"} for role in ROLES
    }  # role:name:key:seller
    return World(seller_a, seller_b, contract_a, contract_b, keys, action_key)


@pytest.fixture
def scoped_settings(settings: Settings, world: World) -> Settings:
    tag = world.seller_a.removeprefix("iso-a-")
    scoped = ",".join(f"{role}:{role}-a:{role}-of-a-{tag}:{world.seller_a}" for role in ROLES)
    keys = settings.api_keys.get_secret_value() + "," + scoped
    return settings.model_copy(
        update={"api_keys": SecretStr(keys), "codec_key": SecretStr(STACK_CODEC_KEY)}
    )


@pytest.fixture
async def app(scoped_settings: Settings, sessions: sessionmaker[Session]) -> FastAPI:
    app = create_app(scoped_settings, sessions)
    app.state.mahnwerk._client = object()  # never used: the scope is decided before Temporal
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def _contract_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = [(m, p) for m, p in routes(app) if "{contract_id}" in p]
    # the floor keeps the walk from going quiet if the document changes shape
    assert len(found) >= 17, found
    return found


def _url(path: str, contract_id: str, world: World) -> str:
    path = path.replace("{contract_id}", contract_id).replace("{key}", world.action_key)
    assert not re.search(r"\{[^}]+\}", path), path  # a new path parameter: fill it in here
    return path


async def _call(
    http: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
) -> httpx.Response:
    body: Any = {} if method in ("POST", "PUT", "PATCH") else None
    return await http.request(method, url, json=body, headers=headers)


async def test_every_contract_route_is_404_for_another_sellers_contract(
    app: FastAPI, http: httpx.AsyncClient, world: World
) -> None:
    checked = 0
    for method, path in _contract_routes(app):
        for role, headers in world.keys.items():
            other = await _call(http, method, _url(path, world.contract_b, world), headers)
            own = await _call(http, method, _url(path, world.contract_a, world), headers)
            missing = await _call(http, method, _url(path, "no-such-contract", world), headers)
            where = (method, path, role)
            if own.status_code == 403:
                # the role may not use the route at all: the same 403 whoever's contract
                assert other.status_code == 403 == missing.status_code, where
                continue
            assert own.status_code != 404, (where, own.text)  # the key reaches its own
            assert other.status_code == 404, (where, other.text)
            err = other.json()["error"]
            assert err["code"] == "not_found", where
            # word for word the answer for an id that does not exist: nothing leaks
            assert missing.status_code == 404, (where, missing.text)
            assert err["message"].replace(world.contract_b, "X") == missing.json()["error"][
                "message"
            ].replace("no-such-contract", "X"), where
            assert world.seller_b not in other.text
            checked += 1
    assert checked >= 17  # the admin key alone reaches every route
    # the unscoped keys still reach both sellers' contracts
    for cid in (world.contract_a, world.contract_b):
        resp = await http.get(f"/v1/contracts/{cid}", headers=ADMIN)
        assert resp.status_code == 200 and resp.json()["seller_id"] in (
            world.seller_a,
            world.seller_b,
        )


async def test_nothing_was_changed_for_the_other_seller(
    http: httpx.AsyncClient, world: World, sessions: sessionmaker[Session]
) -> None:
    """The 404 comes before the action is recorded: no support-action row, no key used."""
    key = {"Idempotency-Key": f"fresh-{uuid.uuid4().hex[:8]}"}
    for action in ("pause", "contest", "write-off"):
        resp = await http.post(
            f"/v1/contracts/{world.contract_b}/{action}",
            json={"reason": "x"},
            headers={**world.keys["admin"], **key},
        )
        assert resp.status_code == 404
    with sessions() as s:
        assert s.get(SupportActionRequest, (world.contract_b, key["Idempotency-Key"])) is None


async def test_listing_receivables_access_and_sellers_show_one_seller(
    http: httpx.AsyncClient, world: World
) -> None:
    support, admin, platform = (world.keys[r] for r in ("support", "admin", "platform"))
    listed: list[dict[str, Any]] = []
    url: str | None = "/v1/contracts?limit=200"
    while url:
        page = (await http.get(url, headers=support)).json()
        listed += page["data"]
        url = (
            f"/v1/contracts?limit=200&cursor={page['next_cursor']}" if page["next_cursor"] else None
        )
    ids = {c["contract_id"] for c in listed}
    assert world.contract_a in ids and world.contract_b not in ids
    assert {c["seller_id"] for c in listed} == {world.seller_a}
    # naming the other seller lists nothing; an unscoped key filters by seller
    other = await http.get(f"/v1/contracts?seller_id={world.seller_b}", headers=support)
    assert other.status_code == 200 and other.json()["data"] == []
    only_b = (await http.get(f"/v1/contracts?seller_id={world.seller_b}", headers=ADMIN)).json()
    assert [c["contract_id"] for c in only_b["data"]] == [world.contract_b]

    report = (await http.get("/v1/reports/receivables", headers=admin)).json()
    assert report["total"] == {"count": 1, "amount": 11100}, report
    everyone = (await http.get("/v1/reports/receivables", headers=ADMIN)).json()
    assert everyone["total"]["count"] >= 2  # an unscoped admin counts every seller's

    mine = await http.get(
        f"/v1/access/cus-{world.contract_a}/prod-{world.contract_a}", headers=platform
    )
    theirs = await http.get(
        f"/v1/access/cus-{world.contract_b}/prod-{world.contract_b}", headers=platform
    )
    assert mine.json()["access"] == "locked" and mine.json()["contract_id"] == world.contract_a
    assert theirs.json() == {
        "access": "none",
        "contract_id": None,
        "customer_id": f"cus-{world.contract_b}",
        "product_id": f"prod-{world.contract_b}",
    }

    sellers = (await http.get("/v1/sellers", headers=platform)).json()["data"]
    assert [s["id"] for s in sellers] == [world.seller_a]
    assert (await http.get(f"/v1/sellers/{world.seller_b}", headers=platform)).status_code == 404
    assert (await http.get(f"/v1/sellers/{world.seller_a}", headers=platform)).status_code == 200
    patch = await http.patch(f"/v1/sellers/{world.seller_b}", json={"name": "x"}, headers=admin)
    assert patch.status_code == 404
    create = await http.post("/v1/sellers", json={"id": "x"}, headers=platform)
    assert create.status_code == 403
    erase = await http.post(f"/v1/customers/cus-{world.contract_b}/erase", headers=admin)
    assert erase.status_code == 403


async def test_a_scoped_checkout_is_its_sellers(http: httpx.AsyncClient, world: World) -> None:
    from tests.conftest import contract_body

    body = contract_body(first_due="2026-12-01")
    body["seller_id"] = world.seller_b
    resp = await http.post("/v1/contracts", json=body, headers=world.keys["platform"])
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["message"] == f"seller_id: unknown seller {world.seller_b!r}"


async def test_the_codec_decodes_the_sellers_own_customers_only(
    http: httpx.AsyncClient, world: World, sessions: sessionmaker[Session]
) -> None:
    ring = parse_key_ring(STACK_CODEC_KEY)
    codec = EncryptionCodec(ring, CustomerKeyStore(ring, sessions))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps("Erika").encode())
    sealed = []
    for cid in (world.contract_a, world.contract_b):
        ctx = WorkflowSerializationContext(namespace="default", workflow_id=workflow_id_for(cid))
        sealed += await codec.with_context(ctx).encode([plain])
    sealed += await codec.encode([plain])  # no workflow: the master key
    body = json_format.MessageToJson(Payloads(payloads=sealed))
    headers = {**world.keys["admin"], "Content-Type": "application/json"}
    resp = await http.post("/codec/decode", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    out = json_format.Parse(resp.content, Payloads()).payloads
    assert out[0] == plain  # seller A's customer
    for p in out[1:]:  # seller B's customer, and what only the master key opens
        assert OUT_OF_SCOPE_META in p.metadata and b"Erika" not in p.data
    # an unscoped admin reads them all
    full = await http.post(
        "/codec/decode", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert list(json_format.Parse(full.content, Payloads()).payloads) == [plain] * 3


async def test_an_unknown_query_parameter_is_422_after_auth(
    http: httpx.AsyncClient, world: World
) -> None:
    """A misspelt `?seller_id=` must not silently count every seller."""
    assert (await http.get("/v1/reports/receivables?sellerid=x")).status_code == 401
    resp = await http.get("/v1/reports/receivables?sellerid=x", headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("sellerid: ")
    resp = await http.get("/v1/contracts?status=active&sellerid=x", headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("sellerid: ")
    assert (await http.get("/v1/contracts?status=active", headers=ADMIN)).status_code == 200


async def test_the_receivables_report_per_seller(http: httpx.AsyncClient, world: World) -> None:
    """Issue 14 part 5: `?seller_id=` counts one seller's receivables; a seller-scoped key
    its own only (another seller's id is the 404 an unknown one gets); an unscoped admin
    also gets the report broken down `by_seller`."""
    admin = world.keys["admin"]
    url = "/v1/reports/receivables"
    own = await http.get(f"{url}?seller_id={world.seller_a}", headers=admin)
    assert own.status_code == 200, own.text
    assert own.json()["seller_id"] == world.seller_a and own.json()["by_seller"] is None
    assert own.json()["total"] == {"count": 1, "amount": 11100}
    assert sum(b["amount"] for b in own.json()["by_age"].values()) == 11100
    implicit = (await http.get(url, headers=admin)).json()
    assert implicit["seller_id"] == world.seller_a and implicit["by_seller"] is None
    theirs = await http.get(f"{url}?seller_id={world.seller_b}", headers=admin)
    unknown = await http.get(f"{url}?seller_id=no-such-{world.seller_b}", headers=admin)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert world.seller_b in theirs.json()["error"]["message"]
    # an admin of the whole platform: any one seller, or all with the breakdown
    only_b = (await http.get(f"{url}?seller_id={world.seller_b}", headers=ADMIN)).json()
    assert only_b["seller_id"] == world.seller_b and only_b["by_seller"] is None
    assert only_b["total"] == {"count": 1, "amount": 22200}
    assert only_b["by_stage"] == {"mahnung_1": {"count": 1, "amount": 22200}}, only_b
    everyone = (await http.get(url, headers=ADMIN)).json()
    assert everyone["seller_id"] is None
    per_seller = everyone["by_seller"]
    assert per_seller[world.seller_a]["total"] == {"count": 1, "amount": 11100}
    assert per_seller[world.seller_b]["total"] == {"count": 1, "amount": 22200}
    for field in ("count", "amount"):
        assert sum(p["total"][field] for p in per_seller.values()) == everyone["total"][field]
    for age, bucket in everyone["by_age"].items():
        assert sum(p["by_age"][age]["amount"] for p in per_seller.values()) == bucket["amount"]
    missing = await http.get(f"{url}?seller_id=no-such-seller-{world.seller_a}", headers=ADMIN)
    assert missing.status_code == 404
    bad = await http.get(f"{url}?seller_id=a%20b", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("seller_id")
    assert (await http.get(url, headers=world.keys["support"])).status_code == 403


async def test_invoices_and_the_export_are_the_sellers_own(
    http: httpx.AsyncClient, world: World, sessions: sessionmaker[Session]
) -> None:
    """Issue 15's reads under issue 14's scope: an invoice of seller B is 404 to A's key
    (by its number, which is not secret), and A's key exports A's bookings only."""
    from core.models import Invoice

    number = f"RE-{uuid.uuid4().hex[:8]}"
    with transaction(sessions) as s:
        s.add(
            Invoice(
                key=f"inv:{world.contract_b}:1",
                seller_key=world.seller_b,
                series="invoice",
                sequence=1,
                number=number,
                kind="invoice",
                contract_id=world.contract_b,
                seq=1,
                issue_date="2026-12-01",
                currency="eur",
                net=22200,
                tax=0,
                gross=22200,
                document={},
                sha256="0" * 64,
            )
        )
    for role in ("support", "admin"):
        resp = await http.get(f"/v1/invoices/{number}", headers=world.keys[role])
        assert resp.status_code == 404, resp.text
        resp = await http.get(
            f"/v1/invoices/{number}?seller_id={world.seller_b}", headers=world.keys[role]
        )
        assert resp.status_code == 404, resp.text
    admin = world.keys["admin"]
    other = await http.get(
        f"/v1/exports/datev?month=2026-12&seller_id={world.seller_b}", headers=admin
    )
    assert other.status_code == 404
    own = await http.get("/v1/exports/datev?month=2026-12", headers=admin)
    assert (
        own.status_code == 200
        and f"buchungen-{world.seller_a}-" in own.headers["content-disposition"]
    )
