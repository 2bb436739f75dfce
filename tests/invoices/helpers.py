"""Contracts in the ledger for the invoice tests (rows as the API writes them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.models import Contract

BERLIN_ADDRESS = {
    "line1": "Musterstr. 1",
    "postal_code": "10115",
    "city": "Berlin",
    "country": "DE",
}


def add_contract(
    sessions: sessionmaker[Session],
    *,
    kind: str = "installments",
    customer: dict[str, Any] | None = None,
    product: dict[str, Any] | None = None,
    count: int = 6,
    amount: int = 9900,
    first_due: str = "2026-12-01",
) -> str:
    cid = f"inv-{uuid.uuid4().hex[:10]}"
    cust = {
        "id": "cus-42",
        "name": "Erika Mustermann",
        "email": "erika@example.org",
        "locale": "de",
        "type": "consumer",
        "address": dict(BERLIN_ADDRESS),
        **(customer or {}),
    }
    prod = {"id": "course-x", "name": "Kurs X", **(product or {})}
    part: dict[str, Any]
    if kind == "installments":
        part = {"count": count, "amount": amount, "interval": "P1M", "first_due": first_due}
    elif kind == "subscription":
        part = {"amount": amount, "interval": "P1M", "start": first_due}
    else:
        part = {"amount": amount, "due": first_due}
    with sessions() as s, s.begin():
        s.add(
            Contract(
                id=cid,
                kind=kind,
                policy_name="default",
                policy={"name": "default"},
                customer_id=cust["id"],
                customer=cust,
                product_id=prod["id"],
                product=prod,
                currency="eur",
                terms={"version": "agb-2026-10"},
                payment={"stripe_customer": "cus_test", "payment_method": "pm_card_visa"},
                request={"contract_id": cid, "kind": kind, kind: part},
                request_hash="0" * 64,
                workflow_id=f"contract-{cid}",
                created_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
            )
        )
    return cid
