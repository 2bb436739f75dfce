"""Reads answered from the ledger, against the real workflow on a time-skipping server:
the contract listing (filters, cursor pagination), the notices of a contract and the
receivables report."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.db import transaction
from core.models import Contract
from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client, contract_body
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after as after_rung
from tests.workflows.ladder import rungs

LOST = "pm_card_visa_chargeDeclinedLostCard"


async def start(stack: Stack, customer: str, product: str, payment_method: str) -> str:
    body = contract_body(payment_method=payment_method, count=2, first_due=await stack.today())
    body["customer"]["id"] = customer
    body["customer"]["email"] = unique_email()
    body["product"]["id"] = product
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid: str = body["contract_id"]
    stack.started.append(cid)
    return cid


async def listing(stack: Stack, **params: Any) -> dict[str, Any]:
    resp = await stack.http.get("/v1/contracts", params=params, headers=SUPPORT)
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    return page


async def walk(stack: Stack, **params: Any) -> list[list[str]]:
    """Every page of a listing, following next_cursor: the contract ids per page."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await listing(stack, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([c["contract_id"] for c in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "the cursor does not advance"


async def receivables(stack: Stack) -> dict[str, Any]:
    resp = await stack.http.get("/v1/reports/receivables", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    report: dict[str, Any] = resp.json()
    return report


def delta(after: dict[str, Any], before: dict[str, Any], *path: str) -> tuple[int, int]:
    a, b = after, before
    for key in path:
        a = a.get(key, {"count": 0, "amount": 0})
        b = b.get(key, {"count": 0, "amount": 0})
    return a["count"] - b["count"], a["amount"] - b["amount"]


async def test_listing_notices_and_receivables(stack: Stack) -> None:
    # The ledger is shared with earlier tests: the report is compared before and after, the
    # listing is narrowed to a customer of this test.
    before = await receivables(stack)
    customer = f"cus-reads-{uuid.uuid4().hex[:8]}"
    await stack.pin_date(6, 15)  # no Berlin holiday moves the rungs in the weeks ahead
    ladder = rungs(date.fromisoformat(await stack.today()))
    failing = [await start(stack, customer, f"course-f{i}", LOST) for i in range(3)]
    paying = [await start(stack, customer, f"course-p{i}", "pm_card_visa") for i in range(2)]
    # lost card: no retries; reminder at due + 3 d, Mahnung 1 (fee) at due + 14 d, the lock
    # after its deadline at due + 21 d
    await stack.sleep_until(after_rung(ladder["lock"]))

    # -- listing: newest first, filtered ---------------------------------------------------
    mine = await listing(stack, customer_id=customer)
    assert [c["contract_id"] for c in mine["data"]] == list(reversed(failing + paying))
    assert mine["next_cursor"] is None
    first = next(c for c in mine["data"] if c["contract_id"] == failing[0])
    assert first["kind"] == "installments" and first["status"] == "in_dunning"
    assert first["stage"] == "lock" and first["access"] == "locked"
    assert first["overdue_amount"] >= 9900 + 250 and first["currency"] == "eur"
    assert first["customer_id"] == customer and first["product_id"] == "course-f0"
    assert first["temporal_ui"].endswith(f"/workflows/contract-{failing[0]}")
    assert first["created_at"]
    paid = next(c for c in mine["data"] if c["contract_id"] == paying[0])
    assert paid["status"] == "active" and paid["stage"] == "none" and paid["overdue_amount"] == 0

    in_dunning = await listing(stack, customer_id=customer, status="in_dunning")
    assert {c["contract_id"] for c in in_dunning["data"]} == set(failing)
    active = await listing(stack, customer_id=customer, status="active")
    assert {c["contract_id"] for c in active["data"]} == set(paying)
    staged = await listing(stack, customer_id=customer, stage="lock")
    assert {c["contract_id"] for c in staged["data"]} == set(failing)
    assert (await listing(stack, customer_id=customer, stage="mahnung_2"))["data"] == []
    # across all customers: every row has the stage, ours among them
    everywhere = [cid for page in await walk(stack, stage="lock", limit=200) for cid in page]
    assert set(failing) <= set(everywhere)
    assert not set(paying) & set(everywhere)

    # -- pagination: limit=2 walks all pages, in order, without duplicates -----------------
    pages = await walk(stack, customer_id=customer, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [cid for p in pages for cid in p] == list(reversed(failing + paying))
    pages = await walk(stack, customer_id=customer, status="in_dunning", limit=2)
    assert [cid for p in pages for cid in p] == list(reversed(failing))
    # the whole listing, two at a time: each contract exactly once
    every = [cid for p in await walk(stack, limit=2) for cid in p]
    assert len(every) == len(set(every)) and set(failing + paying) <= set(every)
    assert len(every) == len([cid for p in await walk(stack, limit=200) for cid in p])

    # -- notices ----------------------------------------------------------------------------
    resp = await stack.http.get(f"/v1/contracts/{failing[0]}/notices", headers=SUPPORT)
    assert resp.status_code == 200, resp.text
    notices = resp.json()["data"]
    stages = [n["stage"] for n in notices]
    # a lost card: the customer is told at once (issue 12), then the ladder's notices
    assert stages == ["payment_failed_1", "reminder", "mahnung_1", "lock"], stages
    reminder, mahnung = notices[1], notices[2]
    assert (
        reminder["subject"].startswith("Zahlungserinnerung") and failing[0] in reminder["subject"]
    )
    assert mahnung["subject"].startswith("1. Mahnung") and failing[0] in mahnung["subject"]
    assert "Mahngebühren" in mahnung["text"] and "2,50" in mahnung["text"]
    assert "Mahngebühren" not in reminder["text"]
    for n in notices:
        assert n["channel"] == "email" and n["status"] == "sent" and n["sent_at"]
        assert n["recipient"].endswith("@example.org") and n["html"].lstrip().startswith("<")
        assert n["notice_number"] and n["message_id"] and n["created_at"]
    mails = stack.mails(reminder["recipient"])
    assert {m["Subject"] for m in mails} >= {reminder["subject"], mahnung["subject"]}
    resp = await stack.http.get(f"/v1/contracts/{paying[0]}/notices", headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["data"] == []
    resp = await stack.http.get("/v1/contracts/no-such-contract/notices", headers=SUPPORT)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"

    # -- receivables: the failing contracts, locked, due less than 31 days ago ---------------
    after = await receivables(stack)
    claims = sum(c["overdue_amount"] for c in staged["data"])
    assert after["currency"] == "eur" and after["as_of"]
    assert delta(after, before, "by_stage", "lock") == (3, claims)
    assert delta(after, before, "by_age", "0-30") == (3, claims)
    for bucket in ("31-60", "61-90", "90+"):
        assert delta(after, before, "by_age", bucket) == (0, 0)
    assert delta(after, before, "total") == (3, claims)
    assert set(after["by_age"]) == {"0-30", "31-60", "61-90", "90+"}
    assert sum(b["amount"] for b in after["by_stage"].values()) == after["total"]["amount"]
    assert sum(b["count"] for b in after["by_age"].values()) == after["total"]["count"]


async def test_reads_refuse_wrong_roles_and_bad_input(stack: Stack) -> None:
    cid = await start(stack, f"cus-reads-{uuid.uuid4().hex[:8]}", "course-x", "pm_card_visa")
    forbidden = [
        ("/v1/contracts", PLATFORM),
        (f"/v1/contracts/{cid}/notices", PLATFORM),
        ("/v1/reports/receivables", PLATFORM),
        ("/v1/reports/receivables", SUPPORT),
    ]
    for url, key in forbidden:
        resp = await stack.http.get(url, headers=key)
        assert resp.status_code == 403, (url, resp.text)
        assert resp.json()["error"]["code"] == "forbidden"
    for url in ("/v1/contracts", f"/v1/contracts/{cid}/notices", "/v1/reports/receivables"):
        assert (await stack.http.get(url)).status_code == 401

    bad: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "bogus"}, "status"),
        ({"stage": "Mahnung 1"}, "stage"),
        ({"customer_id": ""}, "customer_id"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # base64 of "[]"
    ]
    for params, field in bad:
        resp = await stack.http.get("/v1/contracts", params=params, headers=SUPPORT)
        assert resp.status_code == 422, (params, resp.text)
        err = resp.json()["error"]
        assert err["code"] == "invalid_input" and err["message"].startswith(field), (params, err)
        assert err["details"][0]["field"] == field


async def test_pagination_is_stable_when_contracts_share_a_creation_time(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """Bulk imports create many contracts in the same microsecond: the cursor carries the id
    too, so no page repeats or skips one of them."""
    customer = f"cus-tie-{uuid.uuid4().hex[:8]}"
    at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    ids = [f"ord-tie-{uuid.uuid4().hex[:8]}-{n}" for n in range(7)]
    with transaction(sessions) as s:
        for cid in ids:
            s.add(
                Contract(
                    id=cid,
                    kind="one_off",
                    policy_name="default",
                    policy={},
                    customer_id=customer,
                    customer={},
                    product_id="course-x",
                    product={},
                    currency="eur",
                    terms={},
                    payment={},
                    request={},
                    request_hash="x" * 64,
                    workflow_id=f"contract-{cid}",
                    created_at=at,
                )
            )
    app = create_app(settings, sessions)
    async with api_client(app) as http:
        seen: list[str] = []
        cursor = None
        for _ in range(len(ids)):
            params: dict[str, Any] = {"customer_id": customer, "limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/v1/contracts", params=params, headers=SUPPORT)).json()
            seen += [c["contract_id"] for c in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == sorted(ids, reverse=True)
