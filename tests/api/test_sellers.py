"""Issue 14 part 1: sellers as data, `/v1/sellers`, and the checkout naming its seller.

Every bad detail is a 422 naming its field; the default seller is the settings' one and
cannot be changed through the API; secrets are references, never values."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.models import Seller
from core.seller import creditor_id_check_digits, parse_creditor_id
from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client, contract_body


def seller_body(seller_id: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": seller_id or f"sel-{uuid.uuid4().hex[:8]}",
        "name": "Kursschmiede",
        "legal_form": "gmbh",
        "address": "Hauptstraße 5, 80331 München",
        "register_court": "Amtsgericht München",
        "register_number": "HRB 123456",
        "managing_directors": "Erika Beispiel",
        "vat_id": "DE 999 999 995",
        "iban": "DE89 3704 0044 0532 0130 00",
        "bic": "COBADEFFXXX",
        "creditor_id": "de98 zzz0 9999 9999 99",
        "mail_from": "Kursschmiede <billing@kursschmiede.example>",
        "reply_to": "support@kursschmiede.example",
        "locale": "de",
        "state": "by",
        "policies": ["default"],
        "stripe_account": "acct_1Kursschmiede",
    }
    body.update(changes)
    return body


@pytest.fixture
async def app(settings: Settings, sessions: sessionmaker[Session]) -> FastAPI:
    app = create_app(settings, sessions)
    app.state.mahnwerk._client = object()  # nothing here may reach Temporal
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app) as client:
        yield client


def test_creditor_id_check_digits() -> None:
    # the Bundesbank's example, and ids whose check digits were changed
    assert creditor_id_check_digits("DE98ZZZ09999999999") == 98
    assert parse_creditor_id("de98 zzz0 9999 9999 99") == "DE98ZZZ09999999999"
    assert parse_creditor_id("AT61ZZZ01234567890") == "AT61ZZZ01234567890"
    for bad in ("DE97ZZZ09999999999", "DE02ZZZ01234567890"):
        with pytest.raises(ValueError, match="check digits"):
            parse_creditor_id(bad)


async def test_create_read_list_and_replay(
    http: httpx.AsyncClient, sessions: sessionmaker[Session], settings: Settings
) -> None:
    body = seller_body()
    resp = await http.post("/v1/sellers", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    out = resp.json()
    # normalised as the notices print them
    assert out["legal_form"] == "GmbH" and out["iban"] == "DE89370400440532013000"
    assert out["creditor_id"] == "DE98ZZZ09999999999" and out["vat_id"] == "DE999999995"
    assert out["state"] == "BY" and out["source"] == "api"
    assert out["stripe_mode"] == "connect" and out["stripe_account"] == "acct_1Kursschmiede"
    assert out["webhook_path"] == "/v1/webhooks/stripe"
    with sessions() as s:
        row = s.get(Seller, body["id"])
        assert row is not None and row.iban == "DE89370400440532013000"
    # the same body again: 200 with the same seller; other details: 409
    again = await http.post("/v1/sellers", json=body, headers=ADMIN)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    other = await http.post("/v1/sellers", json={**body, "name": "Andere"}, headers=PLATFORM)
    assert other.status_code == 409, other.text
    got = await http.get(f"/v1/sellers/{body['id']}", headers=PLATFORM)
    assert got.status_code == 200 and got.json() == out
    listed = (await http.get("/v1/sellers", headers=PLATFORM)).json()["data"]
    ids = [s["id"] for s in listed]
    assert ids[0] == "default" and body["id"] in ids
    default = listed[0]
    assert default["source"] == "settings" and default["name"] == settings.seller_name
    assert default["creditor_id"] == settings.seller_creditor_id
    assert default["stripe_mode"] == "platform"
    assert (await http.get("/v1/sellers/no-such-seller", headers=PLATFORM)).status_code == 404
    # support reads contracts, not sellers
    assert (await http.get("/v1/sellers", headers=SUPPORT)).status_code == 403


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"iban": "DE89370400440532013001"}, "iban", "IBAN"),
        ({"creditor_id": "DE97ZZZ09999999999"}, "creditor_id", "check digits"),
        ({"creditor_id": "DE98ZZZ0999"}, "creditor_id", "18 characters"),
        ({"vat_id": "DE999999996"}, "vat_id", "check digit"),
        ({"legal_form": "Ltd"}, "legal_form", "unknown legal form"),
        ({"register_number": "123"}, "register_number", "register number"),
        ({"bic": "NOTABIC"}, "bic", "BIC"),
        ({"state": "XX"}, "state", "Land"),
        ({"reply_to": "not-an-address"}, "reply_to", "e-mail"),
        ({"mail_from": "Shop <@x>"}, "mail_from", "sender"),
        ({"managing_directors": None}, "managing_directors", "§ 35a GmbHG"),
        ({"register_court": None}, "register_court", "§ 35a GmbHG"),
        ({"iban": None}, "iban", "account to transfer to"),
        ({"account_holder": "x" * 71}, "account_holder", "70"),
        ({"stripe_account": "cus_123"}, "stripe_account", "acct_"),
        ({"stripe_account": None, "stripe_api_key_ref": "sk_test_abc"}, "stripe_api_key_ref",
         "never the secret"),
        ({"stripe_api_key_ref": "env:SELLER_KEY", "stripe_webhook_secret_ref": "env:SELLER_WH"},
         "stripe_api_key_ref", "not both"),
        ({"stripe_account": None, "stripe_api_key_ref": "env:SELLER_KEY"},
         "stripe_webhook_secret_ref", "webhook signing secret"),
        ({"policies": ["default", "no-such-policy"]}, "policies[1]", "no usable policy"),
        ({"policies": ["default", "default"]}, "policies", "twice"),
        ({"templates": "../etc"}, "templates", "pattern"),
        ({"templates": "mine"}, "templates", "MAHNWERK_SELLER_TEMPLATE_ROOT"),
        ({"collection_url": "ftp://x"}, "collection_url", "http"),
        ({"id": "default"}, "body", "default"),
        ({"id": "a b"}, "id", "pattern"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        # its tax settings, with the checks the MAHNWERK_SELLER_* / invoice settings get
        ({"tax_number": "12/34"}, "tax_number", "10 to 13 digits"),
        ({"tax_number": "21-815-08150"}, "tax_number", "digits and '/'"),
        ({"phone": "call me"}, "phone", "telephone number"),
        ({"invoice_prefix": "RE/"}, "invoice_prefix", "at most 16"),
        ({"credit_note_prefix": "x" * 17}, "credit_note_prefix", "at most 16"),
        ({"credit_note_series": "mixed"}, "credit_note_series", "'own' or 'invoice'"),
        ({"invoice_prefix": "KS-", "credit_note_prefix": "KS-"}, "credit_note_prefix",
         "own prefix"),
        ({"small_business": "yes please"}, "small_business", "boolean"),
        ({"vat_id": None}, "tax_number", "§ 14 Abs. 4 Nr. 2 UStG"),
        ({"vat_id": None, "tax_number": "21/815/08150", "oss": True}, "vat_id", "OSS"),
        ({"address": "Hauptstraße 5 in München", "seat": "München"}, "address", "postal code"),
    ],
)  # fmt: skip
async def test_bad_details_are_422_naming_the_field(
    http: httpx.AsyncClient, changes: dict[str, Any], field: str, words: str
) -> None:
    resp = await http.post("/v1/sellers", json=seller_body(**changes), headers=PLATFORM)
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_input"
    assert err["message"].startswith(f"{field}: "), err
    assert words.lower() in err["message"].lower(), err


async def test_patch_changes_details_and_keeps_the_seller_complete(
    http: httpx.AsyncClient,
) -> None:
    body = seller_body()
    sid = body["id"]
    assert (await http.post("/v1/sellers", json=body, headers=PLATFORM)).status_code == 201
    resp = await http.patch(
        f"/v1/sellers/{sid}",
        json={"iban": "DE02 1203 0000 0000 2020 51", "stripe_account": None, "policies": []},
        headers=ADMIN,
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["iban"] == "DE02120300000000202051" and out["stripe_mode"] == "platform"
    assert out["policies"] == [] and out["name"] == "Kursschmiede"
    # an own key: both references, shown as references
    own = await http.patch(
        f"/v1/sellers/{sid}",
        json={"stripe_api_key_ref": "env:KS_STRIPE_KEY", "stripe_webhook_secret_ref": "env:KS_WH"},
        headers=ADMIN,
    )
    assert own.status_code == 200, own.text
    assert own.json()["stripe_mode"] == "own_key"
    assert own.json()["webhook_path"] == f"/v1/webhooks/stripe/sellers/{sid}"
    # what the legal form requires cannot be cleared; bad values are 422 naming the field
    for patch, field in (
        ({"managing_directors": None}, "managing_directors"),
        ({"vat_id": "DE999999996"}, "vat_id"),
        ({"legal_form": "AG"}, "supervisory_board_chair"),
        ({"stripe_webhook_secret_ref": None}, "stripe_webhook_secret_ref"),
    ):
        bad = await http.patch(f"/v1/sellers/{sid}", json=patch, headers=ADMIN)
        assert bad.status_code == 422, (patch, bad.text)
        assert bad.json()["error"]["message"].startswith(f"{field}: "), bad.text
    still = (await http.get(f"/v1/sellers/{sid}", headers=PLATFORM)).json()
    assert still["managing_directors"] == "Erika Beispiel" and still["legal_form"] == "GmbH"
    # the default seller is the settings'; unknown sellers are 404
    default = await http.patch("/v1/sellers/default", json={"name": "X"}, headers=ADMIN)
    assert default.status_code == 409 and "MAHNWERK_SELLER_" in default.json()["error"]["message"]
    missing = await http.patch("/v1/sellers/nope", json={"name": "X"}, headers=ADMIN)
    assert missing.status_code == 404
    # the platform creates sellers but cannot redirect their money
    platform = await http.patch(f"/v1/sellers/{sid}", json={"iban": None}, headers=PLATFORM)
    assert platform.status_code == 403


async def test_tax_settings_are_stored_shown_and_kept_complete(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    body = seller_body(
        vat_id=None,
        tax_number="21 / 815 / 08150",
        phone="+49  89 123456",
        small_business=True,
        education_exempt=True,
        invoice_prefix="KS-",
        credit_note_series="invoice",
    )
    resp = await http.post("/v1/sellers", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert (out["tax_number"], out["phone"]) == ("21/815/08150", "+49 89 123456")
    assert out["small_business"] and out["education_exempt"] and not out["oss"]
    assert out["invoicing"] is True
    assert (out["invoice_prefix"], out["credit_note_series"]) == ("KS-", "invoice")
    # not named: the settings' prefix, pinned with the seller
    assert out["credit_note_prefix"] == settings.credit_note_prefix
    sid = body["id"]
    # the tax number is the only tax id: it cannot go unless invoicing does
    cleared = await http.patch(f"/v1/sellers/{sid}", json={"tax_number": None}, headers=ADMIN)
    assert cleared.status_code == 422 and cleared.json()["error"]["message"].startswith(
        "tax_number: missing, and no vat_id"
    ), cleared.text
    own = await http.patch(
        f"/v1/sellers/{sid}", json={"tax_number": None, "invoicing": False}, headers=ADMIN
    )
    assert own.status_code == 200, own.text
    assert own.json()["tax_number"] == "" and own.json()["invoicing"] is False
    # null sets a flag back to its default
    flags = await http.patch(
        f"/v1/sellers/{sid}",
        json={"small_business": None, "invoicing": None, "vat_id": "DE999999995"},
        headers=ADMIN,
    )
    assert flags.status_code == 200, flags.text
    assert flags.json()["small_business"] is False and flags.json()["invoicing"] is True
    series = await http.patch(
        f"/v1/sellers/{sid}",
        json={"credit_note_series": "own", "credit_note_prefix": "KS-"},
        headers=ADMIN,
    )
    assert series.status_code == 422
    assert series.json()["error"]["details"][0]["field"] == "credit_note_prefix"
    # the default seller shows the settings' tax settings
    default = (await http.get("/v1/sellers/default", headers=PLATFORM)).json()
    assert default["tax_number"] == settings.seller_tax_number
    assert default["invoice_prefix"] == settings.invoice_prefix
    assert default["invoicing"] is settings.invoicing


async def test_checkout_names_a_seller_that_exists_and_a_policy_it_uses(
    http: httpx.AsyncClient,
) -> None:
    body = contract_body(first_due="2026-12-01")
    body["seller_id"] = "no-such-seller"
    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["message"].startswith("seller_id: unknown seller")
    seller = seller_body(policies=["demo"])
    assert (await http.post("/v1/sellers", json=seller, headers=PLATFORM)).status_code == 201
    body["seller_id"] = seller["id"]  # its policies: demo only; the body asks for default
    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["message"].startswith("policy: seller ")
    body["seller_id"] = "bad id"
    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("seller_id")
