"""Issue 14: contracts of several sellers on one deployment, driven from the outside (the
HTTP API, the real worker, the Stripe stand-in with connected accounts)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.common import SearchAttributeKey

from core.models import OutboxEvent
from core.settings import Settings
from tests.api.test_sellers import seller_body
from tests.conftest import ADMIN, CONNECT_WEBHOOK_SECRET, PLATFORM, contract_body
from tests.stack import Stack
from tests.workflows.test_payments import until_settled_at_bank
from workflows.types import ContractView, workflow_id_for

SELLER_ID_ATTR = SearchAttributeKey.for_keyword("SellerId")


def outbox(sessions: sessionmaker[Session], cid: str) -> list[dict[str, Any]]:
    with sessions() as s:
        rows = s.scalars(
            select(OutboxEvent).where(OutboxEvent.contract_id == cid).order_by(OutboxEvent.id)
        )
        return [r.payload for r in rows]


async def start(stack: Stack, seller_id: str | None, **kw: Any) -> str:
    kw.setdefault("first_due", await stack.today())
    body = contract_body(**kw)
    if seller_id is not None:
        body["seller_id"] = seller_id
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    assert resp.json()["seller_id"] == (seller_id or "default")
    return str(body["contract_id"])


async def test_a_checkout_names_its_seller(stack: Stack, sessions: sessionmaker[Session]) -> None:
    seller = seller_body(stripe_account=None)  # on the platform's own Stripe account
    resp = await stack.http.post("/v1/sellers", json=seller, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    theirs = await start(stack, seller["id"], kind="one_off", amount=4900)
    ours = await start(stack, None, kind="one_off", amount=5900)
    for cid, seller_id in ((theirs, seller["id"]), (ours, "default")):
        handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
        assert (await stack.result(handle)).status == "completed"
        assert (await stack.contract(cid))["seller_id"] == seller_id
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(SELLER_ID_ATTR) == seller_id
        events = outbox(sessions, cid)
        assert events and {e["seller_id"] for e in events} == {seller_id}, events
        assert len(stack.debits(cid)) == 1


async def test_a_contract_started_before_sellers_gets_the_default_seller_attribute(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    """A running contract of before issue 14 has no seller in its input and no SellerId:
    the workflow sets SellerId = "default" once (behind PATCH_SELLER_ID)."""
    import dataclasses
    from datetime import UTC, datetime

    from api.routes.contracts import _hash, _record_checkout, build_input
    from api.schemas import ContractCreate
    from workflows.contract import search_attributes

    body = ContractCreate.model_validate(
        contract_body(kind="one_off", amount=3900, first_due=await stack.today())
    )
    inp = dataclasses.replace(build_input(body, stack.settings, datetime.now(UTC)), seller_id="")
    _record_checkout(sessions, stack.settings, body, inp, _hash(body))
    await stack.temporal.start_workflow(
        "contract",
        inp,
        id=workflow_id_for(body.contract_id),
        task_queue=stack.settings.task_queue,
        search_attributes=search_attributes(body.customer.id, "active", "none", 0, False),
    )
    # (a handle of its own: start_workflow's unlocks the test server's time skipping itself)
    handle = stack.temporal.get_workflow_handle(
        workflow_id_for(body.contract_id), result_type=ContractView
    )
    assert (await handle.describe()).typed_search_attributes.get(SELLER_ID_ATTR) is None
    assert (await stack.result(handle)).status == "completed"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SELLER_ID_ATTR) == "default"
    assert {e["seller_id"] for e in outbox(sessions, body.contract_id)} == {"default"}


# -- Stripe Connect: each seller's debits on its own account (part 2) --------------------------


def _account() -> str:
    return f"acct_1{uuid.uuid4().hex[:14]}"


def _on(stack: Stack, account: str | None = None, key: str = "sk_test_mahnwerk") -> Any:
    """A Stripe client acting on `account` (Connect) or with an own `key`."""
    return stripe.StripeClient(
        key, stripe_account=account, base_addresses={"api": stack.standin.url}
    )


def _sepa_method(client: Any, iban: str) -> str:
    """A SEPA method with its mandate, set up on the client's account (the platform's
    checkout does this on the seller's connected account)."""
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Erika Mustermann", "email": "erika@example.org"},
        }
    )
    si = client.v1.setup_intents.create(
        params={
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        }
    )
    assert si.mandate
    return str(pm.id)


async def _deliver(stack: Stack, event: dict[str, Any], secret: str, path: str) -> None:
    """POST a Stripe event, signed with `secret`, as Stripe delivers it."""
    payload = json.dumps(event)
    t = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", secret)
    resp = await stack.http.post(
        path, content=payload, headers={"Stripe-Signature": f"t={t},v1={sig}"}
    )
    assert resp.status_code == 200, resp.text


async def _signals(stack: Stack, cid: str) -> int:
    handle = stack.temporal.get_workflow_handle(workflow_id_for(cid))
    n = 0
    async for ev in handle.fetch_history_events():
        if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            n += 1
    return n


async def _create_seller(stack: Stack, **changes: Any) -> str:
    body = seller_body(**changes)
    resp = await stack.http.post("/v1/sellers", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return str(body["id"])


async def test_each_sellers_debits_run_on_its_own_stripe_account(
    stack: Stack, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    acct_a, acct_b, acct_c = _account(), _account(), _account()
    stack.standin.create_account(acct_a)
    stack.standin.create_account(acct_b)
    own_key = f"sk_test_{uuid.uuid4().hex}"
    stack.standin.create_account(acct_c, type="standalone", api_key=own_key)
    key_var = f"SELLER_C_KEY_{uuid.uuid4().hex[:6].upper()}"
    monkeypatch.setenv(key_var, own_key)
    monkeypatch.setenv(key_var + "_WH", "whsec_seller_c")
    seller_a = await _create_seller(stack, stripe_account=acct_a)
    seller_b = await _create_seller(stack, stripe_account=acct_b, iban="DE02120300000000202051")
    seller_c = await _create_seller(
        stack,
        stripe_account=None,
        stripe_api_key_ref=f"env:{key_var}",
        stripe_webhook_secret_ref=f"env:{key_var}_WH",
    )
    # a card customer of each seller, on that seller's account
    plans = {
        seller_a: (acct_a, 9900),
        seller_b: (acct_b, 4900),
        seller_c: (acct_c, 2900),
    }
    contracts: dict[str, str] = {}
    for seller_id, (acct, amount) in plans.items():
        client = _on(stack, key=own_key) if acct == acct_c else _on(stack, acct)
        cus = client.v1.customers.create(params={"email": "erika@example.org"})
        pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
        contracts[seller_id] = await start(
            stack, seller_id, count=2, amount=amount, stripe_customer=cus.id,
            payment_method=pm.id,
        )  # fmt: skip
    for seller_id, cid in contracts.items():
        handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
        assert (await stack.result(handle)).status == "completed"
        acct, amount = plans[seller_id]
        # debited on the seller's own account, twice, never on another one
        debits = stack.debits(cid)
        assert [(d["account"], d["amount"]) for d in debits] == [(acct, amount)] * 2
        c = await stack.contract(cid)
        assert c["seller_id"] == seller_id and c["status"] == "completed"
        assert {e["seller_id"] for e in outbox(sessions, cid)} == {seller_id}
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(SELLER_ID_ATTR) == seller_id
    for acct in (acct_a, acct_b, acct_c):
        mine = {d["metadata"]["contract_id"] for d in stack.standin.ledger(account=acct)}
        seller = next(s for s, (a, _) in plans.items() if a == acct)
        assert mine == {contracts[seller]}
    assert not {d["account"] for d in stack.standin.ledger()} & {None, ""}


async def test_a_connect_webhook_for_account_b_never_touches_seller_as_contract(
    stack: Stack,
) -> None:
    acct_a, acct_b = _account(), _account()
    stack.standin.create_account(acct_a)
    stack.standin.create_account(acct_b)
    seller_a = await _create_seller(stack, stripe_account=acct_a)
    await _create_seller(stack, stripe_account=acct_b)
    stack.standin.set_config(sepa_delay=0.2)
    try:
        # seller A's SEPA debit, processing on account A
        pm = _sepa_method(_on(stack, acct_a), "DE89370400440532013000")
        cid = await start(stack, seller_a, count=1, payment_method=pm)
        await stack.env.sleep(timedelta(minutes=5))
        await until_settled_at_bank(stack, cid)
    finally:
        stack.standin.set_config(sepa_delay=2.0)
    (succeeded,) = [
        e
        for e in stack.standin.events("payment_intent.succeeded", account=acct_a)
        if e["data"]["object"]["metadata"].get("contract_id") == cid
    ]
    assert succeeded["account"] == acct_a
    c = await stack.contract(cid)
    assert c["schedule"][0]["status"] == "processing", c["schedule"]
    before = await _signals(stack, cid)

    # 1. seller B makes its own account send an event naming A's contract in its metadata
    client_b = _on(stack, acct_b)
    cus = client_b.v1.customers.create(params={"email": "mallory@example.org"})
    pm_b = client_b.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    forged = client_b.v1.payment_intents.create(
        params={
            "amount": 9900,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm_b.id,
            "allowed_payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": {"contract_id": cid, "installment": "1", "attempt": "1"},
        }
    )
    (from_b,) = [
        e
        for e in stack.standin.events("payment_intent.succeeded", account=acct_b)
        if e["data"]["object"]["id"] == forged.id
    ]
    await _deliver(stack, from_b, CONNECT_WEBHOOK_SECRET, "/v1/webhooks/stripe")
    # 2. A's own PaymentIntent, as if it came from account B, or from the platform's account
    relabelled = {**succeeded, "id": f"evt_relabelled_{uuid.uuid4().hex[:8]}", "account": acct_b}
    await _deliver(stack, relabelled, CONNECT_WEBHOOK_SECRET, "/v1/webhooks/stripe")
    platform = {k: v for k, v in succeeded.items() if k != "account"}
    platform["id"] = f"evt_platform_{uuid.uuid4().hex[:8]}"
    await _deliver(
        stack, platform, stack.settings.stripe_webhook_secret.get_secret_value(),
        "/v1/webhooks/stripe",
    )  # fmt: skip
    assert await _signals(stack, cid) == before  # A's contract was never signalled
    c = await stack.contract(cid)
    assert c["schedule"][0]["status"] == "processing"
    # the genuine event of account A reaches it
    await _deliver(stack, succeeded, CONNECT_WEBHOOK_SECRET, "/v1/webhooks/stripe")
    assert await _signals(stack, cid) == before + 1
    await stack.env.sleep(timedelta(minutes=1))
    c = await stack.contract(cid)
    assert c["schedule"][0]["status"] == "paid", c["schedule"]
    # the ledger names both PaymentIntents with this contract id, each on its own account:
    # A's debit, and B's own payment (which never counted for A's contract)
    assert sorted(d["account"] for d in stack.debits(cid)) == sorted([acct_a, acct_b])
    assert [a["payment_intent"] for a in c["schedule"][0]["attempts"]] != [forged.id]
    assert forged.id not in {a["payment_intent"] for a in c["schedule"][0]["attempts"]}


async def test_a_seller_with_its_own_key_gets_its_events_on_its_own_endpoint(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = _account()
    own_key = f"sk_test_{uuid.uuid4().hex}"
    stack.standin.create_account(acct, type="standalone", api_key=own_key)
    var = f"SELLER_OWN_{uuid.uuid4().hex[:6].upper()}"
    monkeypatch.setenv(var, own_key)
    monkeypatch.setenv(var + "_WH", "whsec_own_seller")
    seller = await _create_seller(
        stack,
        stripe_account=None,
        stripe_api_key_ref=f"env:{var}",
        stripe_webhook_secret_ref=f"env:{var}_WH",
    )
    stack.standin.set_config(sepa_delay=0.2)
    try:
        pm = _sepa_method(_on(stack, key=own_key), "DE89370400440532013000")
        cid = await start(stack, seller, count=1, payment_method=pm)
        await stack.env.sleep(timedelta(minutes=5))
        await until_settled_at_bank(stack, cid)
    finally:
        stack.standin.set_config(sepa_delay=2.0)
    (succeeded,) = [
        e
        for e in stack.standin.events("payment_intent.succeeded", account=acct)
        if e["data"]["object"]["metadata"].get("contract_id") == cid
    ]
    assert "account" not in succeeded  # a standalone account's own event
    before = await _signals(stack, cid)
    path = f"/v1/webhooks/stripe/sellers/{seller}"
    # the platform's endpoint: not the seller's account, so not its contracts
    other = {**succeeded, "id": f"evt_other_{uuid.uuid4().hex[:8]}"}
    await _deliver(
        stack, other, stack.settings.stripe_webhook_secret.get_secret_value(),
        "/v1/webhooks/stripe",
    )  # fmt: skip
    # the seller's endpoint with another secret: refused
    payload = json.dumps(succeeded)
    t = int(time.time())
    bad = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", "whsec_platform_guess")
    resp = await stack.http.post(
        path, content=payload, headers={"Stripe-Signature": f"t={t},v1={bad}"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_signature"
    unknown = await stack.http.post(
        "/v1/webhooks/stripe/sellers/nobody", content=payload, headers={"Stripe-Signature": "x"}
    )
    assert unknown.status_code == 400
    nul = await stack.http.post(
        "/v1/webhooks/stripe/sellers/a%00b", content=payload, headers={"Stripe-Signature": "x"}
    )
    assert nul.status_code == 400
    assert await _signals(stack, cid) == before
    await _deliver(stack, succeeded, "whsec_own_seller", path)
    assert await _signals(stack, cid) == before + 1
    await stack.env.sleep(timedelta(minutes=1))
    c = await stack.contract(cid)
    assert c["schedule"][0]["status"] == "paid"
    assert [d["account"] for d in stack.debits(cid)] == [acct]


# -- per-seller notices and case files (part 4) ------------------------------------------------

LOST = "pm_card_visa_chargeDeclinedLostCard"  # a hard decline: the ladder runs to the hand-off


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The suite's settings, with a root for sellers' own templates: seller A's reminder
    has a subject of its own."""
    root = tmp_path / "seller-templates"
    (root / "kurs-a" / "de").mkdir(parents=True)
    (root / "kurs-a" / "de" / "reminder.subject.txt").write_text(
        "Kursschmiede erinnert: {{ contract_id }}\n", encoding="utf-8"
    )
    return settings.model_copy(update={"seller_template_root": root})


async def test_each_contracts_notices_and_case_file_carry_its_sellers_details(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    from tests.stack import unique_email

    receiver = CaseReceiver()
    try:
        await stack.pin_date(6, 15)  # no holiday moves the rungs for the next six weeks
        seller_a = await _create_seller(
            stack,
            stripe_account=None,
            name="Kursschmiede",
            templates="kurs-a",
            mail_from="Kursschmiede <billing@kursschmiede.example>",
            reply_to="support@kursschmiede.example",
            iban="DE89370400440532013000",
            creditor_id="DE98ZZZ09999999999",
            collection_url=receiver.url,
        )
        seller_b = await _create_seller(
            stack,
            stripe_account=None,
            name="Yogastudio Sonne",
            legal_form="e.K.",
            managing_directors=None,
            register_court="Amtsgericht Köln",
            register_number="HRA 4711",
            address="Ringstraße 1, 50667 Köln",
            mail_from="Yoga Sonne <mahnung@yoga-sonne.example>",
            reply_to="hallo@yoga-sonne.example",
            iban="DE02120300000000202051",
            bic=None,
            creditor_id="AT61ZZZ01234567890",
            state="NW",
        )
        emails = {seller_a: unique_email(), seller_b: unique_email()}
        cids = {
            s: await start(stack, s, count=1, payment_method=LOST, email=e)
            for s, e in emails.items()
        }
        for cid in cids.values():
            handle = stack.temporal.get_workflow_handle(
                workflow_id_for(cid), result_type=ContractView
            )
            # the workflow goes on after the hand-off (issue 12): settled, not ended
            assert (await stack.settled(handle, "handed_off")).status == "handed_off"
    finally:
        receiver.close()
    a_mails, b_mails = stack.mails(emails[seller_a]), stack.mails(emails[seller_b])
    assert len(a_mails) == len(b_mails) >= 4
    for msg in a_mails:
        assert "billing@kursschmiede.example" in str(msg["From"])
        assert str(msg["Reply-To"]) == "support@kursschmiede.example"
        text = _text(msg)
        assert "Kursschmiede GmbH" in text and "Yoga" not in text
        assert "Registergericht: Amtsgericht München, HRB 123456" in text
    for msg in b_mails:
        assert "mahnung@yoga-sonne.example" in str(msg["From"])
        assert str(msg["Reply-To"]) == "hallo@yoga-sonne.example"
        text = _text(msg)
        assert "Yogastudio Sonne e.K." in text and "Kursschmiede" not in text
        assert "Registergericht: Amtsgericht Köln, HRA 4711" in text
    # the seller's own template: A's reminder, not B's
    a_subjects = [str(m["Subject"]) for m in a_mails]
    b_subjects = [str(m["Subject"]) for m in b_mails]
    assert f"Kursschmiede erinnert: {cids[seller_a]}" in a_subjects
    assert not any(x.startswith("Zahlungserinnerung") for x in a_subjects)
    assert any(x.startswith("Zahlungserinnerung") for x in b_subjects)
    assert not any(x.startswith("Kursschmiede erinnert") for x in b_subjects)
    # bank details: each seller's own account
    assert any("DE89 3704 0044 0532 0130 00" in _text(m) for m in a_mails)
    assert any("DE02 1203 0000 0000 2020 51" in _text(m) for m in b_mails)
    assert not any("DE02 1203" in _text(m) for m in a_mails)
    # the case files: the seller is the creditor; A's went to A's collection partner only
    for seller, cid in cids.items():
        case = (await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)).json()
        creditor = case["file"]["creditor"]
        assert creditor["seller_id"] == seller
    a_case = (
        await stack.http.get(f"/v1/contracts/{cids[seller_a]}/collection-case", headers=ADMIN)
    ).json()
    b_case = (
        await stack.http.get(f"/v1/contracts/{cids[seller_b]}/collection-case", headers=ADMIN)
    ).json()
    assert a_case["file"]["creditor"]["name"] == "Kursschmiede"
    assert a_case["file"]["creditor"]["sepa_creditor_id"] == "DE98ZZZ09999999999"
    assert b_case["file"]["creditor"]["name"] == "Yogastudio Sonne"
    assert b_case["file"]["creditor"]["sepa_creditor_id"] == "AT61ZZZ01234567890"
    assert [f["contract_id"] for f in receiver.files] == [cids[seller_a]]
    assert a_case["delivered_at"] is not None and b_case["delivered_at"] is None


def _text(msg: Any) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


class CaseReceiver:
    """A collection partner's endpoint: records the case files posted to it."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.files.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
