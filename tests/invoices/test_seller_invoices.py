"""Per-seller invoices (issue 14 × issue 15) from the outside: two sellers created through
`/v1/sellers` with their own tax settings; a contract of each runs on the real worker; each
seller's invoices are numbered gapless in its own series and carry its own details (the
JSON document and the PDF's text), and its § 19 status decides the VAT."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from pypdf import PdfReader

from core.settings import Settings
from tests.api.test_sellers import seller_body
from tests.conftest import ADMIN, PLATFORM, SUPPORT
from tests.stack import Stack
from tests.workflows.test_sellers import start
from workflows.types import ContractView, workflow_id_for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The default seller invoices too, in the settings' series `RE-`."""
    return settings.model_copy(
        update={"seller_vat_id": "DE999999995", "seller_tax_number": "21/815/08150"}
    )


def _tag() -> str:
    return uuid.uuid4().hex[:4].upper()


async def _seller(stack: Stack, **changes: Any) -> dict[str, Any]:
    # on the platform's own Stripe account: the test cards work there
    body = seller_body(stripe_account=None, **changes)
    resp = await stack.http.post("/v1/sellers", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _invoices(stack: Stack, cid: str) -> list[dict[str, Any]]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/invoices", headers=SUPPORT)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def _pdf_text(stack: Stack, number: str, seller_id: str) -> str:
    resp = await stack.http.get(
        f"/v1/invoices/{number}?seller_id={seller_id}",
        headers={**PLATFORM, "Accept": "application/pdf"},
    )
    assert resp.status_code == 200, resp.text
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(resp.content)).pages)


async def test_each_sellers_contract_is_invoiced_in_its_own_series_with_its_details(
    stack: Stack,
) -> None:
    tag = _tag()
    a = await _seller(
        stack,
        name=f"Kursschmiede {tag}",
        address="Hauptstraße 5, 80331 München",
        tax_number="143/123/45678",
        phone="+49 89 123456",
        invoice_prefix=f"KS{tag}-",
        credit_note_prefix=f"KSK{tag}-",
    )
    b = await _seller(
        stack,
        name=f"Yogaraum {tag}",
        legal_form="Einzelunternehmen",
        register_court=None,
        register_number=None,
        managing_directors="Jana Beispiel",
        address="Lindenallee 7, 50667 Köln",
        vat_id=None,
        tax_number="2181508150",
        small_business=True,
        iban="DE02120300000000202051",
        bic=None,
        # the settings' series prefix `RE-`, as the default seller: its own counter
    )
    assert a["invoice_prefix"] == f"KS{tag}-" and a["tax_number"] == "143/123/45678"
    assert b["invoice_prefix"] == "RE-" and b["small_business"] is True
    cid_a = await start(stack, a["id"], count=2, amount=9900)
    cid_b = await start(stack, b["id"], count=2, amount=4900)
    cid_default = await start(stack, None, kind="one_off", amount=1900)
    for cid in (cid_a, cid_b, cid_default):
        handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
        assert (await stack.result(handle)).status == "completed"

    inv_a, inv_b = await _invoices(stack, cid_a), await _invoices(stack, cid_b)
    # gapless from 1 in each seller's own series, whatever the other sellers issued
    assert [i["number"] for i in inv_a] == [f"KS{tag}-000001", f"KS{tag}-000002"]
    assert [i["number"] for i in inv_b] == ["RE-000001", "RE-000002"]
    assert {i["seller_id"] for i in inv_a} == {a["id"]}
    assert {i["seller_id"] for i in inv_b} == {b["id"]}
    # A charges 19 %; B is a § 19 small business and charges none
    assert [(i["net"], i["tax"], i["gross"]) for i in inv_a] == [(8319, 1581, 9900)] * 2
    assert [(i["net"], i["tax"], i["gross"]) for i in inv_b] == [(4900, 0, 4900)] * 2

    # JSON: the document names the contract's seller
    doc_a = (await stack.http.get(f"/v1/invoices/{inv_a[0]['number']}", headers=PLATFORM)).json()[
        "document"
    ]
    assert doc_a["seller"]["name"] == f"Kursschmiede {tag} GmbH"
    assert doc_a["seller"]["tax_number"] == "143/123/45678"
    assert doc_a["seller"]["vat_id"] == "DE999999995"
    assert doc_a["seller"]["phone"] == "+49 89 123456"
    assert doc_a["seller"]["address"]["city"] == "München"
    assert doc_a["seller"]["iban"] == "DE89370400440532013000"
    # B's numbers are the default seller's too: the number alone is ambiguous once the
    # default seller has issued RE-000001 (the one-off above made sure it has)
    default_numbers = [i["number"] for i in await _invoices(stack, cid_default)]
    assert default_numbers and default_numbers[0].startswith("RE-")
    ambiguous = await stack.http.get("/v1/invoices/RE-000001", headers=PLATFORM)
    assert ambiguous.status_code == 422, ambiguous.text
    assert ambiguous.json()["error"]["details"][0]["field"] == "seller_id"
    got_b = await stack.http.get(f"/v1/invoices/RE-000001?seller_id={b['id']}", headers=PLATFORM)
    assert got_b.status_code == 200, got_b.text
    doc_b = got_b.json()["document"]
    assert doc_b["contract_id"] == cid_b
    assert doc_b["seller"]["name"] == f"Yogaraum {tag}"
    assert doc_b["seller"]["tax_number"] == "2181508150" and doc_b["seller"]["vat_id"] == ""
    assert doc_b["seller"]["iban"] == "DE02120300000000202051"
    assert doc_b["seller"]["small_business"] is True

    # the PDFs
    text_a = await _pdf_text(stack, inv_a[1]["number"], a["id"])
    assert f"Rechnung KS{tag}-000002" in text_a
    assert f"Kursschmiede {tag} GmbH" in text_a and "80331 München" in text_a
    assert "143/123/45678" in text_a and "DE999999995" in text_a
    assert "Yogaraum" not in text_a
    text_b = await _pdf_text(stack, "RE-000002", b["id"])
    assert "Rechnung RE-000002" in text_b and cid_b in text_b
    assert f"Yogaraum {tag}" in text_b and "50667 Köln" in text_b
    assert "2181508150" in text_b and "§ 19 UStG" in text_b
    assert "Kursschmiede" not in text_b and "143/123/45678" not in text_b


async def test_a_seller_that_issues_its_own_invoices_gets_none(stack: Stack) -> None:
    own = await _seller(stack, vat_id=None, invoicing=False)
    assert own["invoicing"] is False and own["tax_number"] == ""
    cid = await start(stack, own["id"], kind="one_off", amount=2900)
    handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
    assert (await stack.result(handle)).status == "completed"
    assert len(stack.debits(cid)) == 1
    assert await _invoices(stack, cid) == []
