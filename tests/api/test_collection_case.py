"""GET /v1/contracts/{id}/collection-case from the outside: admin only, 404 before hand-off.

The route reads the ledger only (no Temporal), so the case rows are written directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.db import transaction
from core.models import CollectionCase
from core.settings import load_settings
from tests.activities.test_collection import make_contract
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client

KEYS = "platform:shop:platform-key-123,support:anna:support-key-123,admin:root:admin-key-123"


@pytest.fixture
async def http(db_url: str, sessions: sessionmaker[Session]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(database_url=db_url, api_keys=KEYS), sessions)
    async with api_client(app) as client:
        yield client


def add_case(sessions: sessionmaker[Session], cid: str, case_no: int, route: str) -> int:
    with transaction(sessions) as s:
        row = CollectionCase(
            contract_id=cid,
            case_no=case_no,
            route=route,
            file={"schema": "mahnwerk.collection_case.v1", "case_no": case_no, "route": route},
            created_at=datetime(2025, 10, 1, 8, 0, tzinfo=UTC),
            delivery_attempts=0,
        )
        s.add(row)
        s.flush()
        return row.id


async def test_collection_case(http: httpx.AsyncClient, sessions: sessionmaker[Session]) -> None:
    cid = make_contract(sessions)
    url = f"/v1/contracts/{cid}/collection-case"

    # before the hand-off: 404 with a message that says why
    resp = await http.get(url, headers=ADMIN)
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"] == {
        "code": "not_found",
        "message": "no collection case for this contract",
        "details": None,
        "request_id": resp.headers["X-Request-Id"],
    }

    add_case(sessions, cid, 1, "inkasso")
    latest = add_case(sessions, cid, 2, "court")

    resp = await http.get(url, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == latest  # the latest case of the contract
    assert (body["contract_id"], body["case_no"], body["route"]) == (cid, 2, "court")
    assert body["file"] == {"schema": "mahnwerk.collection_case.v1", "case_no": 2, "route": "court"}
    assert body["delivered_at"] is None and body["delivery_attempts"] == 0

    for other in (SUPPORT, PLATFORM):
        resp = await http.get(url, headers=other)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "forbidden"
    assert (await http.get(url)).status_code == 401


async def test_unknown_contract_is_404(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/contracts/no-such-contract/collection-case", headers=ADMIN)
    assert resp.status_code == 404, resp.text
    err = resp.json()["error"]
    assert err["code"] == "not_found" and "no-such-contract" in err["message"]
