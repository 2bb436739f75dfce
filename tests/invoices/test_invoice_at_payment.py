"""MAHNWERK_INVOICE_TIMING=at_payment (issue 15): an installment is invoiced once paid, not
when it falls due — a declined one has no invoice until a settlement pays it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.settings import Settings
from tests.conftest import SUPPORT
from tests.stack import Stack

LOST = "pm_card_visa_chargeDeclinedLostCard"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"invoice_timing": "at_payment", "seller_tax_number": "21/815/08150"}
    )


async def test_invoiced_once_paid(stack: Stack) -> None:
    cid, _ = await stack.start(count=1, payment_method=LOST)
    await stack.env.sleep(timedelta(days=2))
    resp = await stack.http.get(f"/v1/contracts/{cid}/invoices", headers=SUPPORT)
    assert resp.json()["data"] == []  # declined: nothing paid, nothing invoiced
    total = (await stack.contract(cid))["claim"]["total"]  # principal, interest, fees
    paid = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": total, "method": "bank_transfer", "reference": "Überweisung"},
        headers=SUPPORT,
    )
    assert paid.status_code == 200, paid.text
    rest = paid.json()["overdue_amount"]  # interest up to the workflow's own clock
    if rest:
        paid = await stack.http.post(
            f"/v1/contracts/{cid}/settlements",
            json={"amount": rest, "method": "bank_transfer", "reference": "Rest"},
            headers=SUPPORT,
        )
        assert paid.status_code == 200, paid.text
    await stack.env.sleep(timedelta(hours=1))
    (invoice,) = (await stack.http.get(f"/v1/contracts/{cid}/invoices", headers=SUPPORT)).json()[
        "data"
    ]
    assert invoice["installment"] == 1 and invoice["gross"] == 9900
    assert invoice["issue_date"] == await stack.today()  # issued on payment, not on the due day


async def test_invoicing_off_issues_none(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # MAHNWERK_INVOICING=false in the API's settings (the same object): pinned at checkout
    monkeypatch.setitem(stack.settings.__dict__, "invoicing", False)
    cid, handle = await stack.start(count=1)
    await stack.result(handle)
    assert len(stack.debits(cid)) == 1  # debited as always
    resp = await stack.http.get(f"/v1/contracts/{cid}/invoices", headers=SUPPORT)
    assert resp.json()["data"] == []
