"""The checkout's tax fields (issue 15): a business customer's VAT id, the product's tax
category and whether it is an electronically supplied service — bad input is a 422 naming
the field, before anything is started."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.settings import Settings
from tests.conftest import PLATFORM, api_client, contract_body


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"customer": {"type": "business", "vat_id": "DE123456789"}},
            "customer.vat_id",
            "check digit",
        ),
        ({"customer": {"type": "business", "vat_id": "12345"}}, "customer.vat_id", "pattern"),
        ({"customer": {"vat_id": "ATU12345678"}}, "customer", "only a business customer"),
        ({"product": {"tax_category": "luxury"}}, "product.tax_category", "standard"),
        ({"product": {"electronic_service": "yes"}}, "product.electronic_service", "boolean"),
    ],
)
async def test_bad_tax_fields_are_422(
    settings: Settings,
    sessions: sessionmaker[Session],
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    body = contract_body()
    for part, values in change.items():
        body[part] = {**body[part], **values}
    app = create_app(settings, sessions)
    app.state.mahnwerk._client = object()  # refused before Temporal is asked
    async with api_client(app) as http:
        resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["message"].startswith(field), err
    assert message in err["message"], err
