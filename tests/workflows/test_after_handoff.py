"""Every way a contract ends (issue 12 parts 1 and 2) and no outage fails a contract (issue 13
item 4), on the time-skipping server, from the outside: the API, the Stripe stand-in's
ledger, the SMTP mailbox and a real collection partner's endpoint (tests/partner.py).

- the rest of a 12-installment plan at a hand-off or write-off, by the policy's
  `on_default`: `keep_schedule` debits on and a later default joins the case in a follow-up
  case file; `call_in` sends the § 498 BGB notice only when its conditions hold, then calls
  the rest in after the two weeks; `stop` cancels the rest with the reason;
- life after the hand-off: a customer pays the seller in full (recorded, unlocked, the
  partner told once), the partner reports a payment (signed), admins record what the court
  reports and recall the case, the limitation is tracked;
- the partner down for two days: the case file waits, visibly, and is delivered once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus

from activities.events import sign
from core.models import CollectionCase, OutboxEvent
from core.settings import PROJECT_ROOT
from domain.schedule import BERLIN, berlin_midnight, installment_due_times
from tests.conftest import ADMIN, PLATFORM, SUPPORT, contract_body
from tests.partner import Partner, running_partner
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs
from workflows.types import ContractView, workflow_id_for

LOST = "pm_card_visa_chargeDeclinedLostCard"


@pytest.fixture
def partner(stack: Stack) -> Iterator[Partner]:
    """The collection partner, at MAHNWERK_COLLECTION_URL for this test's worker."""
    with running_partner(stack.settings.events_secret.get_secret_value()) as p:
        stack.settings.collection_url = p.url
        yield p


def policy(stack: Stack, tmp_path: Path, name: str, *, on_default: str, extra: str = "") -> str:
    """The default policy with `on_default` (and `extra` lines), as `name`."""
    text = (PROJECT_ROOT / "policies" / "default.yaml").read_text()
    text = text.replace("name: default", f"name: {name}")
    text = re.sub(r"^on_default: .*$", f"on_default: {on_default}", text, flags=re.M)
    assert f"on_default: {on_default}" in text
    (tmp_path / f"{name}.yaml").write_text(text + extra)
    stack.settings.policy_dir = tmp_path
    return name


async def timeline(stack: Stack, cid: str, *types: str) -> list[dict[str, Any]]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)
    assert resp.status_code == 200, resp.text
    return [e for e in resp.json()["data"] if not types or e["type"] in types]


def debited(stack: Stack, cid: str, seq: int) -> list[dict[str, Any]]:
    """The stand-in's ledger of successful debits, for installment `seq` of `cid`."""
    return [
        d for d in stack.debits(cid) if (d.get("metadata") or {}).get("installment") == str(seq)
    ]


def attempts(contract: dict[str, Any], seq: int) -> list[dict[str, Any]]:
    """The debit attempts Mahnwerk made for installment `seq` (GET /v1/contracts/{id})."""
    return list(contract["schedule"][seq - 1]["attempts"])


def dues(first: str, count: int, interval: str = "P1M") -> list[datetime]:
    return installment_due_times(first, interval, count)


async def metric(stack: Stack, name: str, **labels: str) -> float:
    """The counter's samples with these labels, summed over the others (e.g. `seller`)."""
    text = (await stack.http.get("/metrics")).text
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(f"{name}{{") or line.startswith(f"{name} ")):
            continue
        if all(w in line.split("}")[0] for w in want):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- the rest of the plan ------------------------------------------------------------------------


async def test_keep_schedule_debits_on_and_a_later_default_joins_the_case(
    stack: Stack, partner: Partner, tmp_path: Path
) -> None:
    await stack.pin_date(6, 15)  # no holiday moves the rungs
    name = policy(stack, tmp_path, "keep", on_default="keep_schedule")
    first = await stack.today()
    cid, _ = await stack.start(count=12, payment_method=LOST, policy=name)
    due = dues(first, 12)
    ladder = rungs(date.fromisoformat(first))
    # installment 2 falls due (day 30) while the case of installment 1 is open; the
    # collection rung (day 38) hands both off
    await stack.sleep_until(after(ladder["collection"], 180))
    c = await stack.contract(cid)
    assert c["status"] == "handed_off"
    assert [i["status"] for i in c["schedule"]] == ["handed_off"] * 2 + ["scheduled"] * 10
    ended = c["schedule"][0]["ended"]
    assert ended["how"] == "handed_off" and "court partner (case 1)" in ended["reason"]
    handed = (await timeline(stack, cid, "contract.handed_off"))[0]
    assert handed["data"]["installments"] == [1, 2]
    assert handed["data"]["on_default"] == "keep_schedule"
    (kept,) = await timeline(stack, cid, "schedule.kept")
    assert kept["data"]["installments"] == list(range(3, 13))
    # the customer gives a working card: the plan is debited on after the hand-off (the
    # installments handed off are the partner's to collect, not debited again)
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["debits"] == []
    await stack.sleep_until(due[2] + timedelta(hours=12))
    assert len(debited(stack, cid, 3)) == 1  # the stand-in's ledger: money moved
    assert debited(stack, cid, 1) == debited(stack, cid, 2) == []
    c = await stack.contract(cid)
    (attempt,) = attempts(c, 3)
    assert attempt["status"] == "succeeded"
    assert datetime.fromisoformat(attempt["attempted_at"]) >= due[2]
    assert c["schedule"][2]["status"] == "paid" and c["status"] == "handed_off"
    # then a card that fails: installment 4 falls into default and joins the case
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/payment-method", json={"payment_method": LOST}, headers=SUPPORT
    )
    assert resp.status_code == 200, resp.text
    await stack.sleep_until(due[3] + timedelta(hours=12))
    c = await stack.contract(cid)
    statuses = [i["status"] for i in c["schedule"]]
    assert statuses == ["handed_off"] * 2 + ["paid", "handed_off"] + ["scheduled"] * 8, statuses
    assert [a["decline_code"] for a in attempts(c, 4)] == ["lost_card"]
    ended = c["schedule"][3]["ended"]
    assert "fell into default after the hand-off" in ended["reason"]
    assert "case file 1" in ended["reason"]
    assert all(i["ended"] is None for i in c["schedule"][4:])
    # the partner got the hand-off's file with 1 and 2, then a follow-up file with 4
    files = partner.acknowledged("case_file")
    assert [f.body["file_no"] for f in files] == [0, 1]
    assert [i["seq"] for i in files[0].body["installments"]] == [1, 2]
    assert files[1].body["follow_up"]["joined_installments"] == [4]
    assert files[1].body["follow_up"]["supplements_case_id"] == files[0].body["case_id"]
    assert [i["seq"] for i in files[1].body["installments"]] == [1, 2, 4]
    assert files[1].body["totals"]["principal"] == 3 * 9900
    assert all(f.signed for f in files) and partner.refused() == []
    case = (await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)).json()
    assert case["file_no"] == 1
    assert [(f["file_no"], f["joined_installments"]) for f in case["files"]] == [(0, []), (1, [4])]
    assert all(f["delivered_at"] for f in case["files"])
    ends = await timeline(stack, cid, "installment.ended")
    assert [e["data"]["installment"] for e in ends] == [1, 2, 4]
    assert c["collection"]["installments"] == [1, 2, 4] and c["collection"]["state"] == "open"
    assert c["status"] == "handed_off"


async def test_call_in_only_when_498_allows_it_then_the_rest_falls_due(
    stack: Stack, partner: Partner, tmp_path: Path
) -> None:
    # Every second month: at the hand-off (day 38) only installment 1 is in arrears — § 498
    # (1) Nr. 1 a BGB needs two consecutive ones, so nothing is called in and no notice goes
    # out. Installment 2 (two months in) falls into default too: 2 of 12 = 16.7 % ≥ 10 %, so
    # the two-week notice goes out; unpaid, the rest falls due and joins the case.
    await stack.pin_date(6, 15)
    name = policy(stack, tmp_path, "callin", on_default="call_in")
    first = await stack.today()
    email = unique_email()
    cid, _ = await stack.start(
        count=12, payment_method=LOST, policy=name, interval="P2M", email=email
    )
    due = dues(first, 12, "P2M")
    ladder = rungs(date.fromisoformat(first))
    await stack.sleep_until(after(ladder["collection"], 180))
    c = await stack.contract(cid)
    assert c["status"] == "handed_off"
    assert [i["status"] for i in c["schedule"]][:3] == ["handed_off", "scheduled", "scheduled"]
    (refused,) = await timeline(stack, cid, "call_in.not_allowed")
    assert refused["data"]["consecutive"] == 1 and "Nr. 1 a" in refused["data"]["reasons"][0]
    assert refused["data"]["kept"] == list(range(2, 13))
    assert await timeline(stack, cid, "call_in.noticed") == []
    assert not [m for m in stack.mails(email) if "§ 498" in str(m["Subject"])]
    assert c["collection"]["call_in"]["status"] == "not_allowed"

    # installment 2 is debited as agreed, fails and joins: now § 498 (1) Nr. 1 holds
    await stack.sleep_until(due[1] + timedelta(days=4))
    c = await stack.contract(cid)
    assert [a["decline_code"] for a in attempts(c, 2)] == ["lost_card"]
    (noticed,) = await timeline(stack, cid, "call_in.noticed")
    assert noticed["data"]["arrears_installments"] == [1, 2]
    assert noticed["data"]["installments"] == list(range(3, 13))
    (notice,) = [m for m in stack.mails(email) if "§ 498" in str(m["Subject"])]
    text = " ".join(notice.get_body(preferencelist=("plain",)).get_content().split())
    assert "verlangen wir die gesamte Restschuld (§ 498 Abs. 1 BGB)" in text, text
    assert "die 10 noch nicht fälligen Raten über insgesamt 990,00 €" in text
    assert "bis spätestens" in text and "einvernehmliche Regelung" in text
    deadline = date.fromisoformat(noticed["data"]["deadline"])
    sent = datetime.fromisoformat(noticed["occurred_at"]).astimezone(BERLIN).date()
    assert (deadline - sent).days >= 14  # two weeks, § 193 BGB may add days
    c = await stack.contract(cid)
    assert c["collection"]["call_in"]["status"] == "noticed"
    assert [i["status"] for i in c["schedule"]][2:] == ["scheduled"] * 10  # not yet

    # the deadline passes unpaid: the whole remainder falls due and joins the case
    await stack.sleep_until(berlin_midnight(deadline + timedelta(days=1)) + timedelta(hours=2))
    (called,) = await timeline(stack, cid, "contract.called_in")
    assert called["data"]["installments"] == list(range(3, 13))
    assert called["data"]["principal"] == 10 * 9900
    c = await stack.contract(cid)
    assert [i["status"] for i in c["schedule"]] == ["handed_off"] * 12
    assert "called in" in c["schedule"][5]["ended"]["reason"]
    assert c["claim"]["principal"] == 12 * 9900
    assert c["collection"]["call_in"]["status"] == "called_in"
    # never debited: installment 3 would have been due after the call-in
    assert due[2] > berlin_midnight(deadline) and attempts(c, 3) == []
    files = partner.acknowledged("case_file")
    assert [f.body["file_no"] for f in files] == [0, 1, 2]
    assert files[2].body["follow_up"]["joined_installments"] == list(range(3, 13))
    assert files[2].body["totals"]["principal"] == 12 * 9900


async def test_a_write_off_with_stop_cancels_the_rest_with_the_reason(
    stack: Stack, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    # The issue's example: 12 × 20 € written off at the collection rung (principal 40 €
    # below the policy's 50 €): the other ten installments are cancelled, never dropped.
    await stack.pin_date(6, 15)
    name = policy(stack, tmp_path, "stopping", on_default="stop")
    first = await stack.today()
    cid, handle = await stack.start(count=12, amount=2000, payment_method=LOST, policy=name)
    view = await stack.result(handle)  # nothing is left: the workflow ends
    assert view.status == "written_off"
    c = await stack.contract(cid)
    assert [i["status"] for i in c["schedule"]] == ["written_off"] * 2 + ["cancelled"] * 10
    reasons = {i["ended"]["reason"].replace("\u00a0", " ") for i in c["schedule"]}
    assert reasons == {
        "principal 40,00 € below the write-off threshold",
        "policy on_default: stop — the plan ends with the write-off",
    }
    assert c["claim"]["total"] == 0 and c["claim"]["waived"]["principal"] == 4000
    (off,) = await timeline(stack, cid, "contract.written_off")
    assert off["data"]["installments"] == [1, 2] and off["data"]["on_default"] == "stop"
    ends = await timeline(stack, cid, "installment.ended")
    assert [(e["data"]["installment"], e["data"]["how"]) for e in ends] == [
        (1, "written_off"),
        (2, "written_off"),
    ] + [(n, "cancelled") for n in range(3, 13)]
    with sessions() as s:
        events = s.scalars(
            select(OutboxEvent).where(
                OutboxEvent.contract_id == cid, OutboxEvent.type == "installment.ended"
            )
        ).all()
        assert len(events) == 12  # each one told to the platform
    # no debit after the write-off
    assert [len(attempts(c, n)) for n in range(1, 13)] == [1, 1] + [0] * 10
    assert dues(first, 12)[2] > datetime.fromisoformat(off["occurred_at"])


# -- life after the hand-off ----------------------------------------------------------------------


async def test_the_customer_pays_the_seller_in_full_after_the_hand_off(
    stack: Stack, partner: Partner
) -> None:
    cid, handle = await stack.start(count=1, payment_method=LOST)
    await stack.settled(handle, "handed_off")
    c = await stack.contract(cid)
    assert c["access"] == "locked" and c["schedule"][0]["status"] == "handed_off"
    (file,) = partner.acknowledged("case_file")
    total = c["claim"]["total"]
    body = {"amount": total, "method": "bank_transfer", "reference": "Zahlung an Verkäufer"}
    key = {"Idempotency-Key": "paid-after-handoff-1"}
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements", json=body, headers=SUPPORT | key
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed" and resp.json()["access"] == "granted"
    again = await stack.http.post(
        f"/v1/contracts/{cid}/settlements", json=body, headers=SUPPORT | key
    )
    assert again.status_code == 200 and again.json() == resp.json()  # the same answer
    await stack.env.sleep(timedelta(minutes=5))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["claim"]["total"] == 0
    assert c["schedule"][0]["status"] == "paid"
    assert c["schedule"][0]["ended"]["how"] == "paid"
    assert c["collection"]["state"] == "paid"
    access = await stack.http.get(f"/v1/access/{c['customer_id']}/course-x", headers=PLATFORM)
    assert access.json()["access"] == "granted"
    types = [e["type"] for e in await timeline(stack, cid)]
    assert {"settlement.recorded", "access.unlocked", "collection.case_closed"} <= set(types)
    assert types.index("contract.handed_off") < types.index("access.unlocked")
    # the partner is told once, signed, with the payment and what is left (nothing)
    (told,) = partner.acknowledged("case.payment")
    assert told.signed and told.key.startswith("payment:settlement:")
    data = told.body["data"]
    assert data["payment"]["amount"] == total and data["payment"]["source"] == "seller"
    assert data["case_id"] == file.body["case_id"] and data["claim_after"]["total"] == 0
    assert len(partner.requests) == 2  # the case file and the one payment: nothing doubled


async def test_the_partner_reports_a_payment_admins_record_a_title_and_recall_the_case(
    stack: Stack, partner: Partner
) -> None:
    cid, handle = await stack.start(count=1, payment_method=LOST)
    await stack.settled(handle, "handed_off")
    today = await stack.today()
    # the partner reports a payment, signed as what we send it
    report = {
        "type": "case.payment",
        "contract_id": cid,
        "payment_id": "ink-7731-1",
        "amount": 5000,
        "reference": "Teilzahlung an Inkasso",
    }
    raw = json.dumps(report).encode()
    secret = stack.settings.events_secret.get_secret_value()
    forged = await stack.http.post(
        "/v1/webhooks/collection",
        content=raw,
        headers={"Mahnwerk-Signature": sign(raw, "not-the-secret")},
    )
    assert forged.status_code == 400
    for _ in range(2):  # a repeated report is recorded once
        resp = await stack.http.post(
            "/v1/webhooks/collection",
            content=raw,
            headers={"Mahnwerk-Signature": sign(raw, secret)},
        )
        assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "handed_off"  # partly paid: the case goes on
    received = await timeline(stack, cid, "collection.payment_received")
    assert len(received) == 1 and received[0]["actor"] == "collection-partner"
    c = await stack.contract(cid)
    assert c["claim"]["principal"] < 9900 and c["access"] == "locked"
    bad = dict(report, payment_id="ink-7731-2", amount=0)
    raw_bad = json.dumps(bad).encode()
    resp = await stack.http.post(
        "/v1/webhooks/collection",
        content=raw_bad,
        headers={"Mahnwerk-Signature": sign(raw_bad, secret)},
    )
    assert resp.status_code == 422 and "amount" in resp.json()["error"]["message"]

    # what the court reports, with dates
    url = f"/v1/contracts/{cid}/case-status"
    for body, why in [
        ({"status": "paid", "on": today}, "status"),
        ({"status": "title", "on": "2099-01-01"}, "future"),
        ({"status": "title", "on": "2020-01-01"}, "hand-off"),
    ]:
        resp = await stack.http.post(url, json=body, headers=ADMIN)
        assert resp.status_code == 422, (body, resp.text)
        assert why in resp.json()["error"]["message"]
    assert (
        await stack.http.post(url, json={"status": "title", "on": today}, headers=SUPPORT)
    ).status_code == 403
    resp = await stack.http.post(
        url,
        json={"status": "objection", "on": today, "reason": "Widerspruch eingelegt"},
        headers=ADMIN,
    )
    assert resp.status_code == 200, resp.text
    resp = await stack.http.post(
        url,
        json={"status": "title", "on": today, "reference": "AG Wedding 27-1234567-0-3"},
        headers=ADMIN,
    )
    assert resp.status_code == 200, resp.text
    c = await stack.contract(cid)
    assert c["contested"] is True  # the objection: the debtor disputes the claim
    assert [s["status"] for s in c["collection"]["statuses"]] == ["objection", "title"]
    lim = c["collection"]["limitation"]
    due = c["schedule"][0]["due_at"][:4]
    assert lim["regular"][0]["ends"] == f"{int(due) + 3}-12-31"  # §§ 195, 199 BGB
    assert lim["title"]["since"] == today
    assert lim["title"]["ends"] == f"{int(today[:4]) + 30}{today[4:]}"  # § 197 (1) Nr. 3
    assert lim["next_end"] == lim["title"]["ends"]
    assert len(await timeline(stack, cid, "collection.case_status")) == 2

    # the case comes back: the installment is open again, the partner is told once
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/recall", json={"reason": "Kunde zahlt direkt"}, headers=ADMIN
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "in_dunning"
    again = await stack.http.post(
        f"/v1/contracts/{cid}/recall", json={"reason": "noch einmal"}, headers=ADMIN
    )
    assert again.status_code == 409
    await stack.env.sleep(timedelta(minutes=5))
    c = await stack.contract(cid)
    assert c["schedule"][0]["status"] == "open" and c["schedule"][0]["ended"] is None
    assert c["collection"]["state"] == "recalled"
    (recall,) = partner.acknowledged("case.recall")
    assert recall.signed and recall.body["data"]["reason"] == "Kunde zahlt direkt"
    assert partner.acknowledged("case.payment") == []  # the partner's own payment: not echoed
    status = await stack.http.post(url, json={"status": "title", "on": today}, headers=ADMIN)
    assert status.status_code == 409  # no case at the partner any more


# -- no outage fails a contract (issue 13 item 4) -------------------------------------------------


async def test_partner_down_for_two_days_the_case_file_waits_and_goes_once(
    stack: Stack, partner: Partner, sessions: sessionmaker[Session]
) -> None:
    before = await metric(stack, "mahnwerk_collection_delivery_failures_total", kind="case_file")
    partner.down = True
    first = await stack.today()
    cid, handle = await stack.start(count=1, payment_method=LOST)
    ladder = rungs(date.fromisoformat(first))
    handed_off = ladder["collection"].at
    await stack.sleep_until(handed_off + timedelta(hours=2))
    c = await stack.contract(cid)
    assert c["status"] == "handed_off"
    waiting = c["collection"]["deliveries_waiting"]
    assert len(waiting) == 1 and waiting[0]["what"] == "case file 0"
    assert "503" in waiting[0]["last_error"] and waiting[0]["rounds_failed"] >= 1
    failed = await timeline(stack, cid, "collection.delivery_failed")
    assert failed and "503" in failed[0]["data"]["error"]
    assert (
        await metric(stack, "mahnwerk_collection_delivery_failures_total", kind="case_file")
        > before
    )
    with sessions() as s:
        alerts = s.scalars(
            select(OutboxEvent).where(
                OutboxEvent.contract_id == cid, OutboxEvent.type == "collection.delivery_failed"
            )
        ).all()
        assert alerts  # the platform hears of it too

    await stack.sleep_until(handed_off + timedelta(days=2))
    assert partner.acknowledged() == []
    rounds = len(await timeline(stack, cid, "collection.delivery_failed"))
    assert rounds >= 5  # 1 h, 2 h, 4 h, 8 h, 16 h … apart, up to a day
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING  # waiting, not failed

    partner.down = False
    await stack.sleep_until(handed_off + timedelta(days=3, hours=2))
    (file,) = partner.acknowledged("case_file")  # delivered exactly once
    assert file.signed and file.key.startswith("case-")
    assert len({r.key for r in partner.requests}) == 1  # every round: the same file, same key
    with sessions() as s:
        (row,) = s.scalars(select(CollectionCase).where(CollectionCase.contract_id == cid)).all()
        assert row.delivered_at is not None and row.last_error is None
        assert row.delivery_attempts == len(partner.requests)
    (delivered,) = await timeline(stack, cid, "collection.case_file_delivered")
    assert delivered["data"]["rounds_failed"] == rounds
    c = await stack.contract(cid)
    assert c["collection"]["deliveries_waiting"] == [] and c["status"] == "handed_off"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_business_customers_plan_is_called_in_at_the_hand_off(
    stack: Stack, partner: Partner, tmp_path: Path
) -> None:
    # § 498 BGB protects consumers only: `call_in` calls a business customer's rest in with
    # the hand-off, and the partner gets it in the hand-off's own case file.
    await stack.pin_date(6, 15)
    name = policy(stack, tmp_path, "callinb2b", on_default="call_in")
    body = contract_body(count=6, payment_method=LOST, policy=name, first_due=await stack.today())
    body["customer"]["type"] = "business"
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]
    handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
    await stack.settled(handle, "handed_off")
    c = await stack.contract(cid)
    assert [i["status"] for i in c["schedule"]] == ["handed_off"] * 6
    (called,) = await timeline(stack, cid, "contract.called_in")
    assert called["data"]["installments"] == [3, 4, 5, 6]
    assert "consumers only" in called["data"]["basis"]
    assert await timeline(stack, cid, "call_in.noticed") == []  # no § 498 notice
    (file,) = partner.acknowledged("case_file")
    assert [i["seq"] for i in file.body["installments"]] == [1, 2, 3, 4, 5, 6]
    assert file.body["totals"]["principal"] == 6 * 9900
    assert c["claim"]["principal"] == 6 * 9900


async def test_the_customer_pays_through_stripe_after_the_hand_off(
    stack: Stack, partner: Partner
) -> None:
    # A PaymentIntent the platform created for the contract (metadata.contract_id), none of
    # Mahnwerk's debits: its payment_intent.succeeded is a payment of the claim.
    cid, handle = await stack.start(count=1, payment_method=LOST)
    await stack.settled(handle, "handed_off")
    total = (await stack.contract(cid))["claim"]["total"]
    event = {
        "id": "evt_external_payment_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"pi_external_{cid.replace('-', '_')}",
                "object": "payment_intent",
                "amount": total,
                "amount_received": total,
                "currency": "eur",
                "status": "succeeded",
                "metadata": {"contract_id": cid},
            }
        },
    }
    payload = json.dumps(event)
    t = int(time.time())
    secret = stack.settings.stripe_webhook_secret.get_secret_value()
    sig = stripe.WebhookSignature._compute_signature(f"{t}.{payload}", secret)
    for _ in range(2):  # Stripe delivers at least once
        resp = await stack.http.post(
            "/v1/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"},
        )
        assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(minutes=5))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["access"] == "granted"
    assert c["claim"]["total"] == 0 and c["schedule"][0]["status"] == "paid"
    (paid,) = [
        e for e in await timeline(stack, cid, "payment.succeeded") if e["data"].get("source")
    ]
    assert paid["data"]["source"] == "customer" and paid["data"]["amount"] == total
    (told,) = partner.acknowledged("case.payment")
    assert told.body["data"]["payment"]["source"] == "customer"
    assert told.body["data"]["claim_after"]["total"] == 0


async def test_a_contract_from_before_the_patch_also_waits_out_the_partners_outage(
    stack: Stack, partner: Partner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A contract started before PATCH_AFTER_HANDOFF ends at its hand-off, as it always did;
    # since PATCH_DELIVERY_WAITS its case file no longer fails the workflow after 30 days of
    # a partner's outage: it waits, visibly, and goes once the partner is back.
    from workflows.contract import ContractWorkflow

    monkeypatch.setattr(ContractWorkflow, "_patch_after_handoff", staticmethod(lambda: False))
    partner.down = True
    first = await stack.today()
    cid, handle = await stack.start(count=1, payment_method=LOST)
    handed_off = rungs(date.fromisoformat(first))["collection"].at
    await stack.sleep_until(handed_off + timedelta(days=2))
    assert (await stack.contract(cid))["status"] == "handed_off"
    assert len(await timeline(stack, cid, "collection.delivery_failed")) >= 5
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert await timeline(stack, cid, "installment.ended") == []  # the old behaviour
    partner.down = False
    view = await stack.result(handle)  # the old path ends once the file is delivered
    assert view.status == "handed_off"
    (file,) = partner.acknowledged("case_file")
    assert file.signed and file.body["file_no"] == 0
    assert len(await timeline(stack, cid, "collection.case_file_delivered")) == 1
