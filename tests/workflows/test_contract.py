"""The contract workflow on the time-skipping server, driven the way users drive it: the
HTTP API starts contracts and runs support actions, the real worker debits through the
Stripe stand-in, writes PostgreSQL and sends notices to a real SMTP server."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from activities.notice_render import format_day, format_money
from domain.interest import default_interest, with_rates
from domain.retry_timing import is_payday_window_day
from domain.schedule import BERLIN
from tests.conftest import ADMIN, PLATFORM, SUPPORT
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs
from workflows.types import workflow_id_for


async def test_six_installment_plan_paid_in_full(stack: Stack) -> None:
    cid, handle = await stack.start(count=6, amount=9900)
    view = await stack.result(handle)
    assert view.status == "completed"
    debits = stack.debits(cid)
    assert len(debits) == 6  # exactly one debit per installment
    assert sorted(int(d["metadata"]["installment"]) for d in debits) == [1, 2, 3, 4, 5, 6]
    assert all(d["amount"] == 9900 for d in debits)
    contract = await stack.contract(cid)
    assert contract["status"] == "completed"
    assert [i["status"] for i in contract["schedule"]] == ["paid"] * 6
    # the day of month is kept (SPEC.md §2)
    days = {i["due_at"][:10][-2:] for i in contract["schedule"]}
    assert len(contract["schedule"]) == 6 and len(days) <= 2  # UTC date of Berlin midnight
    access = await stack.http.get(
        f"/v1/access/{contract['customer_id']}/course-x", headers=PLATFORM
    )
    assert access.json()["access"] == "granted"


async def test_soft_decline_in_month_3_recovered_by_second_retry(stack: Stack) -> None:
    email = unique_email()
    body_id = f"ord-soft-{uuid.uuid4().hex[:8]}"
    # The stand-in declines installment 3's first two debits (do_not_honor: soft).
    stack.standin.script(
        metadata={"contract_id": body_id, "installment": "3"},
        outcomes=["do_not_honor", "do_not_honor"],
    )
    cid, handle = await stack.start(contract_id=body_id, count=6, email=email)
    view = await stack.result(handle)
    assert view.status == "completed"
    debits = stack.debits(cid)
    assert len(debits) == 6 and all(d["amount"] == 9900 for d in debits)
    contract = await stack.contract(cid)
    third = contract["schedule"][2]
    assert [(a["attempt"], a["status"], a["decline_code"]) for a in third["attempts"]] == [
        (1, "declined", "do_not_honor"),
        (2, "declined", "do_not_honor"),
        (3, "succeeded", None),
    ]
    # retries follow the policy's offsets from the first failure: 1d, then 3d
    times = [datetime.fromisoformat(a["attempted_at"]) for a in third["attempts"]]
    assert round((times[1] - times[0]) / timedelta(hours=1)) == 24
    assert round((times[2] - times[0]) / timedelta(hours=1)) == 72
    # recovered on the day the reminder was due, retry first: no notice, no lock — and no
    # "payment received" for a case the customer never heard of; only the plan's end
    assert [str(m["Subject"]) for m in stack.mails(email)] == [
        f"Alle Raten bezahlt – vielen Dank – Vertrag {cid}"
    ]
    assert contract["access"] == "granted"


async def test_insufficient_funds_retries_land_after_paydays(stack: Stack) -> None:
    body_id = f"ord-payday-{uuid.uuid4().hex[:8]}"
    stack.standin.script(
        metadata={"contract_id": body_id, "installment": "2"},
        outcomes=["insufficient_funds", "insufficient_funds"],
    )
    cid, handle = await stack.start(contract_id=body_id, count=2)
    view = await stack.result(handle)
    assert view.status == "completed"
    attempts = (await stack.contract(cid))["schedule"][1]["attempts"]
    assert [a["status"] for a in attempts] == ["declined", "declined", "succeeded"]
    # the default policy aligns insufficient-funds retries to German paydays: each retry
    # falls on the last TARGET business day of a month or one of the first three
    for a in attempts[1:]:
        day = datetime.fromisoformat(a["attempted_at"]).astimezone(BERLIN).date()
        assert is_payday_window_day(day), day
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    reasons = [e["data"].get("retry", "") for e in events["data"] if e["type"] == "payment.failed"]
    assert "payday" in reasons[0], reasons


async def test_hard_decline_reminder_lock_new_method_unlock(stack: Stack) -> None:
    # 15 June: no public holiday in Berlin for the next six weeks, so the rungs below are
    # the plain offsets (deadlines and the send window are tested in test_claim.py).
    await stack.pin_date(6, 15)
    due = date.fromisoformat(await stack.today())
    ladder = rungs(due)
    email = unique_email()
    cid, handle = await stack.start(
        count=3, amount=9900, payment_method="pm_card_visa_chargeDeclinedLostCard", email=email
    )
    # After the first Mahnung (D+14): the reminder and the Mahnung went out; access is
    # locked only after the Mahnung's deadline, in a step and notice of its own (issue 11).
    await stack.sleep_until(after(ladder["mahnung_1"]))
    contract = await stack.contract(cid)
    assert contract["status"] == "in_dunning"
    assert contract["dunning"]["stage"] == "mahnung_1"
    assert contract["access"] == "granted"
    # the payment-failed message at once (issue 12), the reminder, the first Mahnung
    assert len(stack.mails(email)) == 3
    await stack.sleep_until(after(ladder["lock"]))
    contract = await stack.contract(cid)
    assert contract["dunning"]["stage"] == "lock"
    assert contract["access"] == "locked"
    access = await stack.http.get(
        f"/v1/access/{contract['customer_id']}/course-x", headers=PLATFORM
    )
    assert access.json() == {
        "access": "locked",
        "contract_id": cid,
        "customer_id": contract["customer_id"],
        "product_id": "course-x",
    }
    attempts = contract["schedule"][0]["attempts"]
    assert [a["decline_code"] for a in attempts] == ["lost_card"]  # hard: no retries
    subjects = [m["Subject"] for m in stack.mails(email)]
    # payment failed, the reminder, the first Mahnung, and the notice that access is
    # locked: one per step
    assert len(subjects) == 4, subjects
    assert subjects[0].startswith("Zahlung fehlgeschlagen"), subjects
    assert subjects[3].startswith("Sperrung Ihres Zugangs"), subjects
    assert not stack.debits(cid)
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    types = [e["type"] for e in events["data"]]
    assert "payment_method.required" in types and "access.locked" in types
    claim = contract["claim"]
    assert claim["fees"] == 250 and claim["interest"] > 0

    # Support replaces the payment method: the debit takes the principal (policy
    # `collect: principal`, the card authorised the agreed amount), which unlocks access.
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["access"] == "granted" and body["status"] == "active"
    assert [d["amount"] for d in body["debits"]] == [9900]
    # What stayed open (2,50 € fee + the interest) is below the policy's
    # residual.write_off_below (5,00 €): written off, on the ledger and in an event.
    assert body["overdue_amount"] == 0
    contract = await stack.contract(cid)
    assert contract["claim"]["total"] == 0
    assert contract["claim"]["waived"]["fees"] == 250
    assert contract["claim"]["waived"]["interest"] == claim["interest"]

    view = await stack.result(handle)
    assert view.status == "completed"
    assert sorted(d["amount"] for d in stack.debits(cid)) == [9900, 9900, 9900]
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    types = [e["type"] for e in events["data"]]
    assert "access.unlocked" in types and types[-1] == "contract.completed"
    (off,) = [e["data"] for e in events["data"] if e["type"] == "claim.residual_written_off"]
    assert off["amount"] == 250 + claim["interest"] and off["fees"] == 250


async def test_subscription_renews_24_times_with_bounded_history(stack: Stack) -> None:
    cid, handle = await stack.start(kind="subscription", amount=2900)
    await stack.env.sleep(timedelta(days=24 * 31 - 20))  # just past the 24th period's due date
    debits = stack.debits(cid)
    assert len(debits) == 24
    assert len({d["metadata"]["installment"] for d in debits}) == 24
    # continue-as-new keeps every run's history bounded: walk the chain of runs backwards
    runs = 0
    run_id: str | None = None
    while True:
        h = stack.env.client.get_workflow_handle(workflow_id_for(cid), run_id=run_id)
        hist = await h.fetch_history()
        runs += 1
        assert len(hist.events) < 400, f"run {runs} has {len(hist.events)} events"
        started = hist.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if not run_id:
            break
    assert runs >= 2


async def test_one_off_card_paid_grants_access(stack: Stack) -> None:
    cid, handle = await stack.start(kind="one_off", amount=49700)
    view = await stack.result(handle)
    assert view.status == "completed" and view.access == "granted"
    assert [d["amount"] for d in stack.debits(cid)] == [49700]


async def test_one_off_card_declined_hard_fails_without_dunning(stack: Stack) -> None:
    email = unique_email()
    cid, handle = await stack.start(
        kind="one_off",
        amount=49700,
        payment_method="pm_card_chargeDeclinedExpiredCard",
        email=email,
    )
    view = await stack.result(handle)
    # Prepayment: nothing was delivered, so there is nothing to dun (SPEC.md §2 `failed`).
    assert view.status == "failed" and view.access == "none" and view.stage == "none"
    contract = await stack.contract(cid)
    assert contract["status"] == "failed"
    assert stack.mails(email) == []
    access = await stack.http.get(
        f"/v1/access/{contract['customer_id']}/course-x", headers=PLATFORM
    )
    assert access.json()["access"] == "none"


async def test_default_ladder_to_court_handoff_with_case_file(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # six weeks without a Berlin holiday: the plain offsets
    email = unique_email()
    contract_due = await stack.today()
    ladder = rungs(date.fromisoformat(contract_due))
    cid, handle = await stack.start(
        count=1, payment_method="pm_card_visa_chargeDeclinedLostCard", email=email
    )
    # D+38: the collection rung hands off by itself (the workflow goes on: the case is open)
    view = await stack.settled(handle, "handed_off")
    assert view.status == "handed_off"
    # in order: payment failed (issue 12), reminder, 1. Mahnung, access locked, letzte
    # Mahnung, hand-off announcement
    mails = stack.mails(email)
    assert str(mails[0]["Subject"]).startswith("Zahlung fehlgeschlagen")
    mails = mails[1:]
    subjects = [str(m["Subject"]) for m in mails]
    assert len(mails) == 5, subjects
    assert subjects[0].startswith("Zahlungserinnerung") and subjects[1].startswith("1. Mahnung")
    assert subjects[2].startswith("Sperrung") and subjects[3].startswith("Letzte Mahnung")
    mails = [mails[0], mails[1], mails[3]]
    texts = [m.get_body(preferencelist=("plain",)).get_content() for m in mails]
    # notices write amounts as CLDR does: a no-break space before "€"
    assert "99,00\u00a0€" in texts[0] and "2,50\u00a0€" not in texts[0]  # no fee yet

    def total(fees: int, stage: str) -> str:
        """principal + fees + § 288 interest from the due date to the notice's day"""
        interest = default_interest(
            9900,
            contract_due,
            ladder[stage].at.astimezone(BERLIN).date().isoformat(),
            "consumer",
            with_rates(stack.settings.extra_base_rates),
        ).amount
        return format_money(9900 + fees + interest, "eur", "de")

    # Every notice asks for the claim of its moment: the reminder too (interest runs from
    # the day after the due date, § 286 (2) Nr. 1 BGB), issue 11.
    assert total(0, "reminder") in texts[0]
    assert "2,50\u00a0€" in texts[1] and "Verzugszinsen" in texts[1]
    assert total(250, "mahnung_1") in texts[1]  # 1. Mahnung on D+14: principal, fee, interest
    # The payment deadline of each notice is the last day before the next rung: D+13 for
    # the reminder, D+20 for the first Mahnung (the lock follows at D+21).
    for text, nxt in ((texts[0], "mahnung_1"), (texts[1], "lock")):
        deadline = format_day(ladder[nxt].deadline, "de")  # "5. Dezember 2026"
        assert f"bis spätestens {deadline}" in text
    assert total(500, "mahnung_2") in texts[2]  # letzte Mahnung on D+24: both fees
    assert "Mahnverfahren" in texts[2] or "Inkasso" in texts[2]  # announces legal steps
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 200, case.text
    file = case.json()["file"]
    assert case.json()["route"] == "court"
    assert file["mahnantrag"]["catalogue_number"] == 16  # Lehrgangs-/Unterrichtskosten
    assert file["totals"]["principal"] == 9900
    assert [n["stage"] for n in file["notices"]] == [
        "payment_failed_1",  # the customer was told at once (issue 12): evidence too
        "reminder",
        "mahnung_1",
        "lock",
        "mahnung_2",
        "handoff",
    ]
