"""Issue 12 items 3 and 5 on the time-skipping server, from the outside: ending a contract
early through `POST /v1/contracts/{id}/cancel`, refunds through the Stripe stand-in (and
refunds made in Stripe, delivered as its `charge.refunded` webhook), and how every
installment ended (`schedule[].ended`, the timeline, the receivables report).

What the stand-in refunded is read back from the stand-in itself (its refunds and its ledger's
`amount_refunded`), never from Mahnwerk's own records."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import stripe

from core.settings import PROJECT_ROOT
from domain.durations import parse_interval
from domain.endings import pro_rata_value
from domain.schedule import due_instant, shift
from tests.conftest import ADMIN, PLATFORM, SUPPORT
from tests.stack import Stack, unique_email
from tests.workflows.test_payments import deliver, timeline

PLAN = {"count": 12, "amount": 2000}  # 12 × 20,00 €, monthly


def _stripe(stack: Stack) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})


def _refunds_at_stripe(stack: Stack, pi: str) -> list[Any]:
    return list(_stripe(stack).v1.refunds.list(params={"payment_intent": pi, "limit": 100}).data)


async def _cancel(
    stack: Stack,
    cid: str,
    body: dict[str, Any],
    key: str | None = None,
    who: dict[str, str] = PLATFORM,
) -> Any:
    headers = dict(who) | ({"Idempotency-Key": key} if key else {})
    return await stack.http.post(f"/v1/contracts/{cid}/cancel", json=body, headers=headers)


async def _refunded_total(stack: Stack) -> int:
    resp = await stack.http.get("/v1/reports/receivables", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["refunded"]["amount"])


async def _plan_in_month_two(stack: Stack, email: str, **kw: Any) -> tuple[str, list[str]]:
    """A 12-installment plan whose first two installments are paid (day 35)."""
    await stack.pin_date(6, 1, weekday=0)
    cid, _ = await stack.start(email=email, **PLAN, **kw)
    await stack.env.sleep(timedelta(days=35))
    debits = stack.debits(cid)
    assert len(debits) == 2, debits  # the stand-in's ledger: successful debits only
    return cid, [str(d["payment_intent"]) for d in debits]


async def test_withdrawal_in_month_two_refunds_once_and_ends_everything(stack: Stack) -> None:
    email = unique_email()
    cid, pis = await _plan_in_month_two(stack, email)
    refunded_before = await _refunded_total(stack)
    mails_before = len(stack.mails(email))
    key = f"withdrawal-{uuid.uuid4().hex[:8]}"
    body = {"reason": "withdrawal", "note": "Widerruf per E-Mail"}
    # Sent twice at once and once more later, with one Idempotency-Key: one refund each.
    first, second = await asyncio.gather(
        _cancel(stack, cid, body, key), _cancel(stack, cid, body, key)
    )
    third = await _cancel(stack, cid, body, key, who=SUPPORT)
    assert first.status_code == 200, first.text
    assert second.status_code == third.status_code == 200
    answer = first.json()
    assert second.json() == answer and third.json() == answer
    assert answer["status"] == "cancelled" and answer["access"] == "none"
    # policy default `withdrawal.refund: full`: both installments paid, back through Stripe
    refund = answer["refund"]
    assert (refund["amount"], refund["stripe"], refund["outside_stripe"]) == (4000, 4000, 0)
    assert sorted(r["payment_intent"] for r in refund["refunds"]) == sorted(pis)

    # The stand-in gave each payment back exactly once.
    for pi in pis:
        (given,) = _refunds_at_stripe(stack, pi)
        assert given.amount == 2000 and given.metadata["mahnwerk_refund"] == key
        assert given.reason == "requested_by_customer"
    assert {d["amount_refunded"] for d in stack.debits(cid)} == {2000}

    # Stripe's own webhooks for these refunds (charge.refunded) add nothing.
    for event in stack.standin.events("charge.refunded"):
        if event["data"]["object"]["payment_intent"] in pis:
            await deliver(stack, event)
    await stack.env.sleep(timedelta(hours=1))

    c = await stack.contract(cid)
    assert c["status"] == "cancelled" and c["access"] == "none"
    assert c["claim"]["total"] == 0
    for inst in c["schedule"][:2]:
        assert inst["status"] == "refunded" and inst["refunded_amount"] == 2000
        assert inst["ended"]["how"] == "refunded" and inst["ended"]["reason"] == "withdrawal"
    for inst in c["schedule"][2:]:
        assert inst["status"] == "cancelled" and inst["paid_amount"] == 0
        assert inst["ended"]["how"] == "cancelled" and inst["ended"]["reason"] == "withdrawal"
        assert inst["ended"]["at"] is not None
    refunds = await timeline(stack, cid, "refund.created")
    assert len(refunds) == 2 and sum(r["data"]["amount"] for r in refunds) == 4000
    assert {r["data"]["source"] for r in refunds} == {"mahnwerk"}
    (cancelled,) = await timeline(stack, cid, "contract.cancelled")
    assert cancelled["data"]["reason"] == "withdrawal" and cancelled["actor"] == "shop"
    assert cancelled["data"]["installments_cancelled"] == list(range(3, 13))
    assert cancelled["data"]["refund"]["amount"] == 4000
    assert len(await timeline(stack, cid, "access.revoked")) == 1
    # the events say how every installment ended
    ended = {
        e["data"]["installment"]: e["data"] for e in await timeline(stack, cid, "installment.ended")
    }
    assert sorted(ended) == list(range(1, 13))
    assert {ended[n]["how"] for n in (1, 2)} == {"refunded"}
    assert {ended[n]["how"] for n in range(3, 13)} == {"cancelled"}
    assert {e["reason"] for e in ended.values()} == {"withdrawal"}
    assert await _refunded_total(stack) - refunded_before == 4000
    access = await stack.http.get(f"/v1/access/{c['customer_id']}/course-x", headers=PLATFORM)
    assert access.json()["access"] == "none"

    # The customer is told once, in German; then nothing more: no debit, no notice.
    await stack.env.sleep(timedelta(days=70))
    assert len(stack.debits(cid)) == 2
    mails = stack.mails(email)[mails_before:]
    assert [m["Subject"] for m in mails] == [f"Bestätigung Ihres Widerrufs – Vertrag {cid}"]
    text = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert "40,00" in text and "Widerruf" in text
    assert len(await timeline(stack, cid, "refund.created")) == 2
    assert len(await timeline(stack, cid, "payment.failed")) == 0


async def test_a_refund_made_in_stripe_is_recorded_the_same_way(stack: Stack) -> None:
    """The seller refunds installment 2 in the Stripe Dashboard (the stand-in's control
    endpoint): recorded on that installment by its refund id, once however often Stripe
    delivers it, the customer told once (in English), the plan goes on; a withdrawal later
    refunds only what was not refunded yet."""
    email = unique_email()
    cid, pis = await _plan_in_month_two(stack, email, locale="en")
    refunded_before = await _refunded_total(stack)
    made = stack.standin.refund(payment_intent=pis[1])
    event = next(
        e
        for e in stack.standin.events("charge.refunded")
        if e["data"]["object"]["payment_intent"] == pis[1]
    )
    await deliver(stack, event)
    await deliver(stack, event)  # redelivered: recorded once
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "active"
    second = c["schedule"][1]
    assert second["status"] == "refunded" and second["refunded_amount"] == 2000
    assert second["ended"]["how"] == "refunded"
    (refund,) = await timeline(stack, cid, "refund.created")
    assert refund["data"]["refund"] == made["id"] and refund["data"]["source"] == "stripe"
    assert refund["data"]["installment"] == 2 and refund["data"]["amount"] == 2000
    assert await _refunded_total(stack) - refunded_before == 2000
    subjects = [m["Subject"] for m in stack.mails(email)]
    assert subjects.count(f"Refund of €20.00 – contract {cid}") == 1, subjects

    # The plan goes on: installment 3 is debited when due.
    await stack.env.sleep(timedelta(days=30))
    assert len(stack.debits(cid)) == 3
    # A withdrawal now refunds the two installments not refunded yet, not installment 2.
    resp = await _cancel(stack, cid, {"reason": "withdrawal"}, who=SUPPORT)
    assert resp.status_code == 200, resp.text
    assert resp.json()["refund"]["amount"] == 4000
    assert len(_refunds_at_stripe(stack, pis[1])) == 1  # no second refund of it
    (again,) = _refunds_at_stripe(stack, pis[0])
    assert again.amount == 2000
    refunds = await timeline(stack, cid, "refund.created")
    assert len(refunds) == 3 and sum(r["data"]["amount"] for r in refunds) == 6000


async def test_cancel_refuses_bad_input_and_states_it_cannot_apply(stack: Stack) -> None:
    cid, _ = await stack.start(count=3)
    await stack.env.sleep(timedelta(hours=1))
    resp = await _cancel(stack, cid, {"reason": "customer changed their mind"})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["message"].startswith("reason") and err["details"][0]["field"] == "reason"
    resp = await _cancel(stack, cid, {"reason": "withdrawal", "at_period_end": True})
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("at_period_end")
    resp = await _cancel(stack, cid, {"reason": "withdrawal", "refund": 10**6})
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("refund"), (
        resp.text
    )
    resp = await _cancel(stack, cid, {"reason": "goodwill", "refund": 100, "refund_amount": 200})
    assert resp.status_code == 422
    assert resp.json()["error"]["message"].startswith("refund_amount")
    # nothing of these in the contract: still active, nothing refunded
    c = await stack.contract(cid)
    assert c["status"] == "active" and not _refunds_at_stripe(
        stack, stack.debits(cid)[0]["payment_intent"]
    )
    # Ended contracts: 409
    resp = await _cancel(stack, cid, {"reason": "fraud"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and resp.json()["refund"]["amount"] == 0
    resp = await _cancel(stack, cid, {"reason": "withdrawal"})
    assert resp.status_code == 409


async def test_cancellation_button_ends_a_plan_at_the_end_of_the_paid_period(
    stack: Stack,
) -> None:
    """§ 312k: the next installment is not debited; access lasts until it would have been
    due; then the plan ends `cancelled` (policy `cancellation.access: end`)."""
    await stack.pin_date(6, 1, weekday=0)
    cid, handle = await stack.start(count=6, email=unique_email())
    await stack.env.sleep(timedelta(days=3))
    resp = await _cancel(stack, cid, {"reason": "cancellation_button"}, who=SUPPORT)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active" and resp.json()["access"] == "granted"
    await stack.env.sleep(timedelta(days=40))
    assert len(stack.debits(cid)) == 1
    c = await stack.contract(cid)
    assert c["status"] == "cancelled" and c["access"] == "none"
    assert c["schedule"][0]["ended"]["how"] == "paid"
    assert [i["ended"]["reason"] for i in c["schedule"][1:]] == ["cancellation_button"] * 5
    (requested,) = await timeline(stack, cid, "contract.cancellation_requested")
    assert requested["data"]["at_period_end"] is True
    assert requested["data"]["effective_at"] == c["schedule"][1]["due_at"]
    assert len(await timeline(stack, cid, "contract.cancelled")) == 1
    assert (await stack.result(handle)).status == "cancelled"


async def test_consents_are_kept_with_the_terms_and_go_into_the_case_file(stack: Stack) -> None:
    from tests.conftest import contract_body

    body = contract_body(payment_method="pm_card_visa_chargeDeclinedLostCard", count=1)
    body["consents"] = [
        {
            "kind": "digital_content_early_start",
            "version": "consent-2026-10",
            "text_hash": "cd" * 32,
            "given_at": "2026-11-27T10:00:05+01:00",
            "ip": "203.0.113.7",
        },
        {
            "kind": "waiver_acknowledged",
            "version": "consent-2026-10",
            "text_hash": "ef" * 32,
            "given_at": "2026-11-27T10:00:06+01:00",
            "ip": "203.0.113.7",
        },
    ]
    bad = dict(body, consents=[body["consents"][0], body["consents"][0]])
    resp = await stack.http.post("/v1/contracts", json=bad, headers=PLATFORM)
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("consents")
    wrong = dict(body, consents=[dict(body["consents"][0], text_hash="nope")])
    resp = await stack.http.post("/v1/contracts", json=wrong, headers=PLATFORM)
    assert resp.status_code == 422
    assert resp.json()["error"]["message"].startswith("consents.0.text_hash")
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    assert [c["kind"] for c in resp.json()["consents"]] == [
        "digital_content_early_start",
        "waiver_acknowledged",
    ]
    cid = body["contract_id"]
    replay = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert replay.status_code == 200  # the same body, the same contract
    c = await stack.contract(cid)
    assert c["consents"][0] == body["consents"][0] | {"given_at": "2026-11-27T09:00:05+00:00"}
    # a lost card: handed off to court after the ladder; the case file carries the consents
    await stack.env.sleep(timedelta(days=45))
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 200, case.text
    file = case.json()["file"]
    assert [x["kind"] for x in file["consents"]] == [
        "digital_content_early_start",
        "waiver_acknowledged",
    ]
    assert file["consents"][1]["text_hash"] == "ef" * 32


async def test_withdrawal_after_a_chargeback_cancels_the_reopened_installment(
    stack: Stack,
) -> None:
    """The first installment's card payment was disputed (open again, in dunning); the
    customer then withdraws: nothing is owed any more, nothing is refunded (the bank
    already took the money back), dunning stops."""
    email = unique_email()
    cid, _ = await stack.start(count=3, email=email)
    await stack.env.sleep(timedelta(hours=1))
    (debit,) = stack.debits(cid)
    stack.standin.dispute(str(debit["payment_intent"]), reason="fraudulent")
    await deliver(stack, stack.standin.events("charge.dispute.created")[-1])
    await stack.env.sleep(timedelta(days=4))  # the reminder went out
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["schedule"][0]["status"] == "open"
    resp = await _cancel(stack, cid, {"reason": "withdrawal"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["refund"]["amount"] == 0 and resp.json()["overdue_amount"] == 0
    await stack.env.sleep(timedelta(days=40))
    c = await stack.contract(cid)
    assert c["status"] == "cancelled" and c["dunning"]["stage"] == "none"
    assert [i["status"] for i in c["schedule"]] == ["cancelled"] * 3
    assert c["claim"]["total"] == 0 and c["claim"]["principal"] == 0
    assert not _refunds_at_stripe(stack, str(debit["payment_intent"]))
    assert len(stack.debits(cid)) == 1
    # the reminder before, the confirmation after — no Mahnung after the withdrawal
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert subjects[-1] == f"Bestätigung Ihres Widerrufs – Vertrag {cid}", subjects
    assert not any("Mahnung" in s for s in subjects), subjects


async def test_a_pro_rata_withdrawal_keeps_the_value_of_the_time_used(
    stack: Stack, tmp_path: Path
) -> None:
    """Policy `withdrawal.refund: pro_rata` (§ 357a (2) BGB): paid 40,00 € of a 240,00 € year;
    the ~35 days used since the first due date are worth about 23 €: the rest of the 40 €
    comes back, from the latest payment (installment 2)."""
    text = (PROJECT_ROOT / "policies" / "default.yaml").read_text()
    text = text.replace("name: default", "name: prorata") + "withdrawal:\n  refund: pro_rata\n"
    (tmp_path / "prorata.yaml").write_text(text)
    stack.settings.policy_dir = tmp_path
    email = unique_email()
    cid, pis = await _plan_in_month_two(stack, email, policy="prorata")
    now = await stack.env.get_current_time()
    first = due_instant((await stack.contract(cid))["schedule"][0]["due_at"])
    end = shift(first, parse_interval("P1M"), 12)  # the plan's term: a year from the first due
    expected = 4000 - pro_rata_value(24000, first, end, now)
    resp = await _cancel(stack, cid, {"reason": "withdrawal"})
    assert resp.status_code == 200, resp.text
    refund = resp.json()["refund"]
    assert abs(refund["amount"] - expected) <= 1 and 1600 <= refund["amount"] <= 1750, refund
    (given,) = refund["refunds"]
    assert given["installment"] == 2 and given["payment_intent"] == pis[1]
    assert [r.amount for r in _refunds_at_stripe(stack, pis[1])] == [refund["amount"]]
    assert not _refunds_at_stripe(stack, pis[0])
    c = await stack.contract(cid)
    second = c["schedule"][1]
    # partly refunded: stays paid, with what was refunded of it
    assert second["status"] == "paid" and second["refunded_amount"] == refund["amount"]
    (cancelled,) = await timeline(stack, cid, "contract.cancelled")
    assert cancelled["data"]["refund"]["mode"] == "pro_rata"


async def test_a_completed_one_off_purchase_can_be_withdrawn_and_goodwill_refunds(
    stack: Stack,
) -> None:
    """A one-off digital purchase is `completed` once paid; the withdrawal period runs after
    that: the withdrawal refunds it in full, access ends. A goodwill cancellation of a plan
    with the caller's refund ends it at once and tells the customer with `refund_confirmed`."""
    email = unique_email()
    cid, _ = await stack.start(kind="one_off", amount=49700, email=email)
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["access"] == "granted"
    resp = await _cancel(stack, cid, {"reason": "withdrawal"}, key=f"w-{cid}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and resp.json()["refund"]["stripe"] == 49700
    (debit,) = stack.debits(cid)
    assert debit["amount_refunded"] == 49700
    c = await stack.contract(cid)
    assert c["schedule"][0]["ended"] == {
        "how": "refunded",
        "reason": "withdrawal",
        "at": c["schedule"][0]["ended"]["at"],
    }
    assert c["access"] == "none"

    email = unique_email()
    cid, _ = await stack.start(count=3, email=email, locale="en")
    await stack.env.sleep(timedelta(hours=1))
    resp = await _cancel(
        stack, cid, {"reason": "goodwill", "refund": 5000, "note": "course not used"}, who=SUPPORT
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["refund"] == {
        "amount": 5000,
        "stripe": 5000,
        "outside_stripe": 0,
        "refunds": resp.json()["refund"]["refunds"],
    }
    await stack.env.sleep(timedelta(minutes=5))
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert subjects == [f"Refund of €50.00 – contract {cid}"], subjects
    c = await stack.contract(cid)
    assert c["status"] == "cancelled" and c["schedule"][0]["refunded_amount"] == 5000
    assert c["schedule"][0]["status"] == "paid"  # partly refunded
    assert [i["status"] for i in c["schedule"][1:]] == ["cancelled", "cancelled"]
