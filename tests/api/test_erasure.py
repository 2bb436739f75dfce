"""Erasing a customer (Art. 17 GDPR, issue 13 item 7), from the outside: contracts run on the
time-skipping stack (API → workflow → worker, payloads encrypted per customer), the admin
erases the customer over HTTP, and then

- the customer's name, e-mail, address and IP are in no row of any ledger table, while the
  amounts are what they were;
- the raw Temporal history (read without the codec) holds none of them, and decoding its
  payloads with the codec now fails for this customer — in a fresh codec, through
  `/codec/decode` and in the worker replaying the workflow — while another customer's
  history still decodes;
- the erase is refused while a contract is open and while the retention period runs.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format
from sqlalchemy import Engine, inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import WorkflowQueryFailedError

from api.main import create_app
from core.codec import KEY_ID_META, EncryptionCodec, ShreddedKeyError
from core.models import Contract, Installment, PaymentAttempt
from core.settings import Settings
from core.temporal import data_converter
from domain.schedule import BERLIN
from tests.conftest import ADMIN, PLATFORM, SUPPORT, api_client, contract_body
from tests.stack import Stack
from workflows.types import ContractView, workflow_id_for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The stack (and its API) erase without a retention period; the refusal while the
    # period runs is shown with a second app on the default of 10 years.
    return settings.model_copy(update={"retention_years": 0})


def _person(tag: str) -> dict[str, Any]:
    """A customer whose every personal value is unique to this test run."""
    return {
        "id": f"cus-erase-{tag}",
        "name": f"Erika Löschbar-{tag}",
        "email": f"loesch-{tag}@example.org",
        "locale": "de",
        "type": "consumer",
        "address": {
            "line1": f"Vergessensweg {tag}",
            "postal_code": "10115",
            "city": f"Löschstadt-{tag}",
            "country": "DE",
        },
    }


def _needles(person: dict[str, Any], ip: str) -> list[str]:
    return [
        person["name"],
        person["email"],
        person["address"]["line1"],
        person["address"]["city"],
        ip,
    ]


async def _start(stack: Stack, person: dict[str, Any], ip: str, **kw: Any) -> str:
    body = contract_body(first_due=await stack.today(), **kw)
    body["customer"] = person
    body["terms"]["ip"] = ip
    # consent evidence (issue 12): its IP is personal data too
    body["consents"] = [
        {
            "kind": "digital_content_early_start",
            "version": "consent-2026-10",
            "text_hash": "cd" * 32,
            "given_at": "2026-11-27T10:00:05+01:00",
            "ip": ip,
        }
    ]
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    stack.started.append(body["contract_id"])
    return str(body["contract_id"])


def _every_row(engine: Engine) -> str:
    """Every row of every ledger table, as text (JSON and binary columns included)."""
    out = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            if table == "alembic_version":
                continue
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(f"{table}: " + " | ".join(_cell(v) for v in row))
    return "\n".join(out)


def _cell(value: Any) -> str:
    """A column value as text a person would search: JSON that SQLite returns as a string
    (with non-ASCII characters escaped) is parsed and written out again unescaped."""
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _amounts(sessions: sessionmaker[Session], contract_ids: list[str]) -> list[tuple[Any, ...]]:
    with sessions() as s:
        rows: list[tuple[Any, ...]] = []
        for c in s.scalars(select(Contract).where(Contract.id.in_(contract_ids))):
            rows.append(("contract", c.id, c.status, c.overdue_amount, c.fees, c.currency))
        for i in s.scalars(select(Installment).where(Installment.contract_id.in_(contract_ids))):
            rows.append(("installment", i.contract_id, i.seq, i.amount, i.paid_amount, i.status))
        for a in s.scalars(
            select(PaymentAttempt).where(PaymentAttempt.contract_id.in_(contract_ids))
        ):
            rows.append(("attempt", a.idempotency_key, a.amount, a.status, a.payment_intent))
        return sorted(rows, key=repr)


async def _input_payload(stack: Stack, contract_id: str) -> Payload:
    """The workflow input as the server stores it (read without the codec)."""
    raw = await stack.env.client.get_workflow_handle(workflow_id_for(contract_id)).fetch_history()
    (payload,) = raw.events[0].workflow_execution_started_event_attributes.input.payloads
    return payload


def _body(payloads: list[Payload]) -> dict[str, Any]:
    return json.loads(json_format.MessageToJson(Payloads(payloads=payloads)))


async def test_erasure_anonymises_the_ledger_and_shreds_the_history(
    stack: Stack, sessions: sessionmaker[Session], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    tag = uuid.uuid4().hex[:10]
    erika, ip = _person(tag), f"198.51.100.{int(tag[:2], 16) % 250 + 1}"
    other, other_ip = _person(f"other-{tag}"), "192.0.2.44"

    # Erika: a lost card (notice, lock), then a new payment method pays; and a paid plan.
    dunned = await _start(
        stack, erika, ip, count=1, payment_method="pm_card_visa_chargeDeclinedLostCard"
    )
    await stack.env.sleep(timedelta(days=4))  # the reminder goes out at D+3
    assert stack.mails(erika["email"]), "the reminder reached Erika"

    # Refused while a contract is open: nothing is erased.
    resp = await stack.http.post(f"/v1/customers/{erika['id']}/erase", headers=ADMIN)
    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert err["details"]["reason"] == "contracts_open"
    assert err["details"]["contracts"] == [{"contract_id": dunned, "status": "in_dunning"}]
    assert dunned in err["message"]

    resp = await stack.http.post(
        f"/v1/contracts/{dunned}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    paid = await _start(stack, erika, ip, count=2, amount=4900)
    theirs = await _start(stack, other, other_ip, count=1, amount=1234)
    for cid in (dunned, paid, theirs):
        handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
        assert (await stack.result(handle)).status == "completed"
    mine = [dunned, paid]
    before = _amounts(sessions, mine)
    stored = _every_row(engine)
    for needle in _needles(erika, ip):
        assert needle in stored, f"the test should start with {needle!r} in the ledger"
    notices = await stack.http.get(f"/v1/contracts/{dunned}/notices", headers=SUPPORT)
    assert erika["name"] in json.dumps(notices.json(), ensure_ascii=False)

    # Refused while the retention period runs (the default 10 years), naming the date.
    kept = create_app(stack.settings.model_copy(update={"retention_years": 10}), sessions)
    async with api_client(kept) as http:
        resp = await http.post(f"/v1/customers/{erika['id']}/erase", headers=ADMIN)
        assert resp.status_code == 409, resp.text
        details = resp.json()["error"]["details"]
        last = datetime.fromisoformat(details["last_record_at"]).astimezone(BERLIN)
        assert details["reason"] == "retention_period"
        assert details["retain_until"] == date(last.year + 10, 12, 31).isoformat()
        assert details["retain_until"] in resp.json()["error"]["message"]
        # only admins may erase, and an unknown customer is a 404
        assert (
            await http.post(f"/v1/customers/{erika['id']}/erase", headers=SUPPORT)
        ).status_code == 403
        resp = await http.post("/v1/customers/cus-nobody-here/erase", headers=ADMIN)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert _every_row(engine) == stored, "a refused erasure changed the ledger"

    # Erased.
    resp = await stack.http.post(f"/v1/customers/{erika['id']}/erase", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["status"] == "erased" and sorted(result["contracts"]) == sorted(mine)
    assert len(result["shredded_keys"]) == 1 and result["erased_by"] == "root"
    again = await stack.http.post(f"/v1/customers/{erika['id']}/erase", headers=ADMIN)
    assert again.status_code == 200 and again.json() == result  # idempotent

    # The ledger: no personal value of Erika's in any row of any table; amounts unchanged.
    erased = _every_row(engine)
    for needle in _needles(erika, ip):
        assert needle.casefold() not in erased.casefold(), f"{needle!r} survived the erasure"
    for needle in _needles(other, other_ip):
        assert needle in erased, f"another customer's {needle!r} was erased too"
    assert _amounts(sessions, mine) == before
    view = (await stack.http.get(f"/v1/contracts/{paid}", headers=PLATFORM)).json()
    assert view["status"] == "completed" and view["customer_id"] == erika["id"]
    assert [i["paid_amount"] for i in view["schedule"]] == [4900, 4900]
    assert view["terms"]["ip"] == "[erased]" and view["terms"]["version"] == "agb-2026-10"
    assert view["consents"][0]["ip"] == "[erased]" and view["consents"][0]["text_hash"] == "cd" * 32
    shown = (await stack.http.get(f"/v1/contracts/{dunned}/notices", headers=SUPPORT)).json()
    assert shown["data"] and all(n["recipient"] == "erased@erased.invalid" for n in shown["data"])

    # Temporal: the raw history holds nothing in clear, and no codec reads it any more.
    for cid in mine:
        raw = await stack.env.client.get_workflow_handle(workflow_id_for(cid)).fetch_history()
        text_form = raw.to_json() + "".join(str(e.SerializeToString()) for e in raw.events)
        for needle in _needles(erika, ip):
            assert needle not in text_form, f"{needle!r} in clear in the history of {cid}"
    fresh = data_converter(stack.settings, sessions).payload_codec  # nothing cached
    assert isinstance(fresh, EncryptionCodec)
    for cid in mine:
        sealed = await _input_payload(stack, cid)
        assert sealed.metadata[KEY_ID_META].decode() in result["shredded_keys"]
        with pytest.raises(ShreddedKeyError, match="customer was erased"):
            await fresh.decode([sealed])
        with pytest.raises(ShreddedKeyError):  # the API's and worker's codec forgot it too
            await stack.temporal.data_converter.payload_codec.decode([sealed])  # type: ignore[union-attr]
    (decoded,) = await fresh.decode([await _input_payload(stack, theirs)])
    assert json.loads(decoded.data)["customer"]["email"] == other["email"]

    # The Temporal UI's codec endpoint: Erika's payload is a note, the other one decodes.
    resp = await stack.http.post(
        "/codec/decode",
        json=_body([await _input_payload(stack, dunned), await _input_payload(stack, theirs)]),
        headers=ADMIN,
    )
    assert resp.status_code == 200, resp.text
    note, clear = json_format.Parse(resp.text, Payloads()).payloads
    assert note.metadata["mahnwerk-erased"] == b"true"
    assert json.loads(note.data)["unreadable"].startswith("personal data erased")
    assert erika["email"] not in resp.text
    assert json.loads(clear.data)["customer"]["name"] == other["name"]

    # The worker replaying Erika's closed workflow (a query) fails that task with a clear
    # error and carries on: the other customer's workflow still answers.
    # (The query's own failure message is encoded, as every failure is: the reason is in
    # the worker's log.)
    erased_handle = stack.temporal.get_workflow_handle(workflow_id_for(paid))
    with caplog.at_level(logging.ERROR, logger="temporalio.worker"):
        with pytest.raises(WorkflowQueryFailedError):
            await erased_handle.query("view", result_type=ContractView)
    failed = [
        exc
        for r in caplog.records
        if r.exc_info and isinstance(exc := r.exc_info[1], ShreddedKeyError)
    ]
    assert failed, [r.getMessage() for r in caplog.records]
    assert "the customer was erased (crypto-shredding)" in str(failed[0])
    theirs_handle = stack.temporal.get_workflow_handle(workflow_id_for(theirs))
    assert (await theirs_handle.query("view", result_type=ContractView)).status == "completed"


async def test_a_handed_off_contract_blocks_erasure_until_its_case_is_closed(
    stack: Stack, sessions: sessionmaker[Session], engine: Engine
) -> None:
    tag = uuid.uuid4().hex[:10]
    person, ip = _person(tag), "203.0.113.201"
    cid = await _start(
        stack,
        person,
        ip,
        count=1,
        amount=9900,
        payment_method="pm_card_visa_chargeDeclinedLostCard",
    )
    await stack.env.sleep(timedelta(days=45))  # past the hand-off rung (38 days)
    assert (await stack.contract(cid))["status"] == "handed_off"
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 200 and case.json()["file"]["debtor"]["name"] == person["name"]

    resp = await stack.http.post(f"/v1/customers/{person['id']}/erase", headers=ADMIN)
    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert err["details"]["contracts"] == [{"contract_id": cid, "status": "handed_off"}]
    assert "collection case may still be pursued" in err["message"]

    # The collection case closes with a write-off (what a case-status report does once the
    # partner gives up; recorded here directly in the ledger): now the customer may go.
    with sessions() as s, s.begin():
        s.execute(update(Contract).where(Contract.id == cid).values(status="written_off"))
    resp = await stack.http.post(f"/v1/customers/{person['id']}/erase", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    erased = _every_row(engine)
    for needle in _needles(person, ip):
        assert needle.casefold() not in erased.casefold(), f"{needle!r} survived the erasure"
    file = (await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)).json()
    debtor = file["file"]["debtor"]
    assert debtor["name"] == "[erased]" and debtor["id"] == person["id"]
    assert debtor["address"] == {
        "line1": "[erased]",
        "line2": None,  # was empty: nothing to erase
        "postal_code": "[erased]",
        "city": "[erased]",
        "country": "DE",
    }
    assert file["file"]["terms"]["ip"] == "[erased]"
    assert file["file"]["totals"]["principal"] == 9900  # the claim as handed off
