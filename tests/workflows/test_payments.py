"""SEPA's slow truth and chargebacks, on the time-skipping server with the real worker.

Stripe's webhooks are delivered to the API the way Stripe delivers them: the stand-in's own
event, signed with the webhook secret, POSTed to /v1/webhooks/stripe."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import date, datetime, timedelta
from datetime import time as clock
from typing import Any

import stripe

from core import paylink
from domain.calendar import add_target_business_days
from domain.schedule import BERLIN
from tests.conftest import PLATFORM, SUPPORT
from tests.stack import Stack, activities_run, unique_email
from tests.workflows.ladder import interest


def sepa_method(stack: Stack, iban: str) -> str:
    """A SEPA method with a mandate, set up as a platform does at checkout (SetupIntent)."""
    return sepa_mandate(stack, iban)[0]


def sepa_mandate(stack: Stack, iban: str, customer: str | None = None) -> tuple[str, str]:
    """(payment method id, mandate reference); attached to `customer` if given."""
    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Erika Mustermann", "email": "erika@example.org"},
        }
    )
    si = client.v1.setup_intents.create(
        params={  # type: ignore[arg-type]
            "customer": customer,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        }
    )
    assert si.mandate
    mandate = client.v1.mandates.retrieve(str(si.mandate))
    sepa = mandate.payment_method_details.sepa_debit
    assert sepa is not None
    return str(pm.id), str(sepa.reference)


async def deliver(stack: Stack, event: dict[str, Any]) -> None:
    """POST a stand-in event to the API, signed as Stripe signs webhooks."""
    payload = json.dumps(event)
    t = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(
        f"{t}.{payload}", stack.settings.stripe_webhook_secret.get_secret_value()
    )
    resp = await stack.http.post(
        "/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": f"t={t},v1={sig}"}
    )
    assert resp.status_code == 200, resp.text


async def until_settled_at_bank(stack: Stack, cid: str) -> None:
    """SEPA outcomes come after a real-time delay in the stand-in: wait for it before
    skipping workflow time, so the poll that follows sees the bank's answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = stack.standin.events()
        done = [
            e
            for e in events
            if e["type"] in ("payment_intent.succeeded", "payment_intent.payment_failed")
            and e["data"]["object"]["metadata"].get("contract_id") == cid
        ]
        if done:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the stand-in never settled the SEPA debit")


async def test_sepa_chargeback_in_week_5_reopens_with_costs_and_locks(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # no Berlin holiday for the next ten weeks
    stack.standin.set_config(sepa_delay=0.2)
    email = unique_email()
    cid, handle = await stack.start(
        count=1, payment_method=sepa_method(stack, "DE89370400440532013000"), email=email
    )
    # The debit goes `processing`; its webhook is not delivered here, so the workflow's
    # poll finds the success (the fallback for a lost webhook).
    await until_settled_at_bank(stack, cid)
    await stack.env.sleep(timedelta(days=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["schedule"][0]["status"] == "paid"
    pi = c["schedule"][0]["attempts"][0]["payment_intent"]
    assert [d["payment_intent"] for d in stack.debits(cid)] == [pi]

    # week 5: the debtor's bank reclaims the debit (MD06, within 8 weeks)
    await stack.env.sleep(timedelta(weeks=5))
    stack.standin.dispute(pi, reason="debit_not_authorized")
    event = stack.standin.events("charge.dispute.created")[-1]
    await deliver(stack, event)
    await deliver(stack, event)  # Stripe may deliver twice: processed once
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["schedule"][0]["status"] == "open"
    # the principal again (due again from the chargeback day: no interest yet), plus the
    # bank's return-debit costs, itemised apart from fees (issue 11)
    assert c["claim"]["total"] == 9900 + 350 and c["claim"]["costs"] == 350
    assert [i["kind"] for i in c["claim"]["cost_items"]] == ["return_debit"]
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    disputes = [e for e in events["data"] if e["type"] == "payment.disputed"]
    assert len(disputes) == 1 and disputes[0]["data"]["return_debit_costs"] == 350

    # the ladder runs from the chargeback: the first Mahnung (D+14); the lock follows its
    # deadline (D+21), in a notice of its own
    await stack.env.sleep(timedelta(days=16))
    c = await stack.contract(cid)
    assert c["access"] == "granted" and c["dunning"]["stage"] == "mahnung_1"
    await stack.env.sleep(timedelta(days=7))
    c = await stack.contract(cid)
    assert c["access"] == "locked" and c["dunning"]["stage"] == "lock"
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert len(subjects) == 5, subjects
    # the debit was announced first; the plan was complete (issue 12); then reminder, first
    # Mahnung, access locked
    assert subjects[0].startswith("Ankündigung Ihrer SEPA-Lastschrift über 99,00\u00a0€")
    assert subjects[1].startswith("Alle Raten bezahlt")
    assert subjects[4].startswith("Sperrung")
    stack.standin.set_config(sepa_delay=2.0)


async def test_sepa_failure_after_processing_opens_dunning(stack: Stack) -> None:
    stack.standin.set_config(sepa_delay=0.2)
    email = unique_email()
    cid, _ = await stack.start(
        count=1, payment_method=sepa_method(stack, "DE62370400440532013001"), email=email
    )
    await until_settled_at_bank(stack, cid)
    await stack.env.sleep(timedelta(days=4))
    c = await stack.contract(cid)
    attempts = c["schedule"][0]["attempts"]
    assert attempts[0]["status"] == "declined"
    assert c["status"] == "in_dunning" and c["dunning"]["stage"] == "reminder"
    # the returned debit's bank costs join the claim, apart from fees; the debit never paid,
    # so § 288 interest runs from the day after the due date
    claim = c["claim"]
    assert (claim["principal"], claim["fees"], claim["costs"]) == (9900, 0, 350)
    due = c["schedule"][0]["due_at"]
    expected = interest(
        9900, berlin_day(due).isoformat(), claim["as_of"], stack.settings.base_rates
    )
    assert claim["interest"] == expected > 0
    assert claim["total"] == 9900 + 350 + expected
    assert stack.debits(cid) == []
    stack.standin.set_config(sepa_delay=2.0)


async def test_authentication_required_sends_a_link_then_a_new_card_pays(stack: Stack) -> None:
    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
    email = unique_email()
    customer = client.v1.customers.create(params={"email": email})
    pm = client.v1.payment_methods.attach(
        "pm_card_authenticationRequired", params={"customer": customer.id}
    )
    cid, _ = await stack.start(
        count=1, payment_method=pm.id, stripe_customer=customer.id, email=email
    )
    await stack.env.sleep(timedelta(days=2))
    c = await stack.contract(cid)
    attempts = c["schedule"][0]["attempts"]
    # off-session the bank wants the customer: no retries, a link to authenticate at once
    assert [a["decline_code"] for a in attempts] == ["authentication_required"]
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert subjects and subjects[0].startswith("Bitte bestätigen Sie Ihre Zahlung"), subjects
    text = stack.mails(email)[0].get_body(preferencelist=("plain",)).get_content()
    # the payment link: /pay/<signed token> naming this contract (issue 16)
    token = re.findall(r"/pay/([A-Za-z0-9_.-]+)", text)[0]
    assert paylink.verify(stack.settings.events_secret.get_secret_value(), token).contract_id == cid

    # the customer adds a new card: attached, but not (yet) the default — nothing happens
    new = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    attached = [
        e
        for e in stack.standin.events("payment_method.attached")
        if e["data"]["object"]["id"] == new.id
    ]
    await deliver(stack, attached[-1])
    await stack.env.sleep(timedelta(hours=1))
    assert (await stack.contract(cid))["schedule"][0]["status"] == "open"
    assert stack.debits(cid) == []
    # it becomes the customer's default (customer.updated): the open amount is debited with
    # it right away
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": new.id}}
    )
    updated = [
        e
        for e in stack.standin.events("customer.updated")
        if e["data"]["object"]["id"] == customer.id
    ]
    await deliver(stack, updated[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["schedule"][0]["status"] == "paid"
    assert [d["payment_method"] for d in stack.debits(cid)] == [new.id]


async def test_debits_run_from_the_stripe_queue(stack: Stack) -> None:
    """Stripe's activities are scheduled on the internal `<queue>-stripe` queue
    (workflows/queues.py), so a debit waiting for the rate limit never holds one of the
    slots the ledger writes need. Since PATCH_LEAN (issue 17) the ledger's writes and the
    payment method's lookup are local activities of the workflow's worker: no queue, a
    marker each in the history."""
    cid, handle = await stack.start(count=1, email=unique_email())
    await stack.env.sleep(timedelta(hours=1))
    assert len(stack.debits(cid)) == 1
    queues: dict[str, set[str | None]] = {}
    for name, queue in await activities_run(handle):
        queues.setdefault(name, set()).add(queue)
    main = stack.settings.task_queue
    assert queues["charge"] == {f"{main}-stripe"}
    assert queues["sync_ledger"] == {None}  # local
    assert queues["describe_payment_method"] == {None}
    assert queues["issue_invoice"] == {None}


# -- SEPA pre-notification, the 14-business-day cap, Visa's cap ------------------------------


def plain(text: str) -> str:
    # str.split() also splits at the no-break space notices put before "€" (U+00A0)
    return " ".join(text.split())


GERMAN_MONTHS = (
    "Januar", "Februar", "März", "April", "Mai", "Juni",
    "Juli", "August", "September", "Oktober", "November", "Dezember",
)  # fmt: skip


def body_text(message: Any) -> str:
    return str(message.get_body(preferencelist=("plain",)).get_content())


async def timeline(stack: Stack, cid: str, type_: str) -> list[dict[str, Any]]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)
    assert resp.status_code == 200, resp.text
    return [e for e in resp.json()["data"] if e["type"] == type_]


def processing_intents(stack: Stack, cid: str) -> list[str]:
    return [
        e["data"]["object"]["id"]
        for e in stack.standin.events("payment_intent.processing")
        if e["data"]["object"]["metadata"].get("contract_id") == cid
    ]


def berlin_day(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone(BERLIN).date()


async def test_sepa_debit_announced_then_succeeds_after_six_business_days(stack: Stack) -> None:
    """The debit is announced the policy's 5 days before it (amount, date, mandate
    reference, creditor id, IBAN), goes `processing`, stays so for 6 TARGET business days
    without dunning or a second debit, and the poll then finds the success (no webhook)."""
    stack.standin.set_config(sepa_delay=100_000)  # the bank answers when the test says so
    try:
        email = unique_email()
        pm, reference = sepa_mandate(stack, "DE89370400440532013000")
        now = await stack.env.get_current_time()
        due = (now.astimezone(BERLIN) + timedelta(days=10)).date()
        cid, _ = await stack.start(
            count=1, payment_method=pm, email=email, first_due=due.isoformat()
        )
        await stack.env.sleep(timedelta(days=4))
        assert stack.mails(email) == []  # not yet: 5 days before the debit
        await stack.env.sleep(timedelta(days=2))
        (mail,) = stack.mails(email)
        # submitted on the due date, collected the next TARGET business day (SEPA Core D-1):
        # the day the money leaves the account is the one announced
        collected = add_target_business_days(due, 1)
        # dates in running text are written out ("16. Dezember 2026", Babel's CLDR data)
        day = f"{collected.day}. {GERMAN_MONTHS[collected.month - 1]} {collected.year}"
        assert str(mail["Subject"]).startswith(
            f"Ankündigung Ihrer SEPA-Lastschrift über 99,00\u00a0€ am {day}"
        )
        text = plain(body_text(mail))
        for expected in (
            "Betrag: 99,00 €",
            f"Fälligkeit/Einzug: {day}",
            "IBAN endend auf 3000",
            f"Mandatsreferenz: {reference}",
            "Gläubiger-ID: DE98ZZZ09999999999",
        ):
            assert expected in text, (expected, text)
        assert "kurzfristig" not in text  # announced in time
        (announced,) = await timeline(stack, cid, "sepa.pre_notified")
        assert announced["data"]["amount"] == 9900 and not announced["data"]["short_notice"]
        assert announced["data"]["collection_date"] == collected.isoformat()
        notices = (await stack.http.get(f"/v1/contracts/{cid}/notices", headers=SUPPORT)).json()
        assert [n["stage"] for n in notices["data"]] == ["sepa_prenotification_1_1"]

        # the due date: the debit is submitted and stays `processing`
        await stack.env.sleep(timedelta(days=4, hours=1))
        (pi,) = processing_intents(stack, cid)
        attempt_day = berlin_day(
            (await stack.contract(cid))["schedule"][0]["attempts"][0]["attempted_at"]
        )
        assert attempt_day == due
        assert (datetime.fromisoformat(announced["occurred_at"]).astimezone(BERLIN).date()) <= (
            due - timedelta(days=5)
        )
        six = add_target_business_days(due, 6)
        await stack.env.sleep(
            datetime.combine(six, clock(12), BERLIN) - (await stack.env.get_current_time())
        )
        c = await stack.contract(cid)
        assert c["schedule"][0]["status"] == "processing" and c["status"] == "active"
        assert c["dunning"]["stage"] == "none" and c["access"] == "granted"
        assert processing_intents(stack, cid) == [pi]  # awaited, never debited again
        assert await timeline(stack, cid, "payment.processing_overdue") == []

        # business day 6: the bank's answer; its webhook is lost, the poll (6-hourly) finds it
        stack.standin.settle(pi)
        await stack.env.sleep(timedelta(hours=7))
        c = await stack.contract(cid)
        assert c["status"] == "completed" and c["schedule"][0]["status"] == "paid"
        assert [d["payment_intent"] for d in stack.debits(cid)] == [pi]
        # the announcement and the plan's end (issue 12): no dunning notice
        subjects = [str(m["Subject"]) for m in stack.mails(email)]
        assert len(subjects) == 2 and subjects[1].startswith("Alle Raten bezahlt"), subjects
    finally:
        stack.standin.set_config(sepa_delay=2.0)


async def test_sepa_debit_processing_past_14_business_days_is_flagged_not_redebited(
    stack: Stack,
) -> None:
    stack.standin.set_config(sepa_delay=100_000)
    try:
        email = unique_email()
        cid, _ = await stack.start(
            count=1, payment_method=sepa_method(stack, "DE89370400440532013000"), email=email
        )
        await stack.env.sleep(timedelta(hours=1))
        (pi,) = processing_intents(stack, cid)
        # due today: announced at once, marked as short notice, before the debit
        (announced,) = await timeline(stack, cid, "sepa.pre_notified")
        assert announced["data"]["short_notice"] is True
        assert "kurzfristig" in plain(body_text(stack.mails(email)[0]))
        await stack.env.sleep(timedelta(days=13))  # ~9 business days: still waiting
        assert await timeline(stack, cid, "payment.processing_overdue") == []
        await stack.env.sleep(timedelta(days=10))  # > 14 TARGET business days
        (flag,) = await timeline(stack, cid, "payment.processing_overdue")
        assert flag["data"]["payment_intent"] == pi and flag["data"]["business_days"] == 14
        c = await stack.contract(cid)
        assert c["schedule"][0]["status"] == "processing" and c["dunning"]["stage"] == "none"
        assert processing_intents(stack, cid) == [pi]
        assert len(stack.mails(email)) == 1
        # a late answer is still taken
        stack.standin.settle(pi)
        await stack.env.sleep(timedelta(hours=7))
        assert (await stack.contract(cid))["status"] == "completed"
    finally:
        stack.standin.set_config(sepa_delay=2.0)


async def test_sepa_re_presentation_after_insufficient_funds_is_announced_again(
    stack: Stack,
) -> None:
    """AM04: re-presented once, after payday, announced again 5 days before; the debit
    takes exactly the announced amount — the principal (policy `collect: principal`, issue
    11): the return-debit costs stay in the claim, demanded by the notices."""
    stack.standin.set_config(sepa_delay=0.2)
    try:
        email = unique_email()
        client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
        customer = str(client.v1.customers.create(params={"email": email}).id)
        pm, _ = sepa_mandate(stack, "DE65370400440002222227", customer)
        cid, _ = await stack.start(
            count=1, payment_method=pm, stripe_customer=customer, email=email
        )
        await until_settled_at_bank(stack, cid)
        await stack.env.sleep(timedelta(days=45))
        announced = await timeline(stack, cid, "sepa.pre_notified")
        assert [a["data"]["attempt"] for a in announced] == [1, 2]
        second = announced[1]
        attempts = (await stack.contract(cid))["schedule"][0]["attempts"]
        assert [a["decline_code"] for a in attempts] == ["insufficient_funds"] * 2
        # the re-presentation: 5 days after its announcement, for the announced amount
        debit_at = datetime.fromisoformat(attempts[1]["attempted_at"])
        # (notice periods count calendar days)
        assert berlin_day(attempts[1]["attempted_at"]) - berlin_day(second["occurred_at"]) >= (
            timedelta(days=5)
        )
        assert berlin_day(second["data"]["debit_at"]) == debit_at.astimezone(BERLIN).date()
        assert attempts[1]["amount"] == second["data"]["amount"] == 9900
        prenotices = [m for m in stack.mails(email) if "SEPA-Lastschrift" in str(m["Subject"])]
        assert len(prenotices) == 2
        assert "zurückgegeben" in plain(body_text(prenotices[1]))
        assert stack.debits(cid) == []  # both returned: nothing booked
    finally:
        stack.standin.set_config(sepa_delay=2.0)


async def test_visa_cap_respected_over_a_month_of_soft_declines(stack: Stack) -> None:
    """Weekly installments on a card that keeps soft-declining: with the policy's four
    retries each, 25 attempts would fall within 30 days; Visa allows 20 reattempts, and
    Mahnwerk (one stricter) never has more than 20 attempts in any 30 days."""
    email = unique_email()
    cid, _ = await stack.start(
        count=5,
        interval="P7D",
        payment_method="pm_card_chargeDeclinedProcessingError",
        email=email,
    )
    await stack.env.sleep(timedelta(days=45))
    c = await stack.contract(cid)
    attempts = [a for inst in c["schedule"] for a in inst["attempts"]]
    assert attempts and all(a["decline_code"] == "processing_error" for a in attempts)
    times = sorted(datetime.fromisoformat(a["attempted_at"]) for a in attempts)
    retries = sorted(
        datetime.fromisoformat(a["attempted_at"]) for a in attempts if a["attempt"] > 1
    )

    def within_30_days(t: datetime, among: list[datetime]) -> int:
        return sum(1 for u in among if t - timedelta(days=30) < u <= t)

    # Visa: at most 20 reattempts in 30 days (each installment's first debit is a new
    # transaction, not a reattempt)
    assert max(within_30_days(t, retries) for t in retries) <= 20
    # Mahnwerk counts the first debits too: no reattempt is made with 20 attempts of any
    # kind in the 30 days before it
    worst = max(within_30_days(t, times) for t in retries)
    assert worst <= 20, worst
    assert worst == 20  # the cap was reached, and it bound
    failed = await timeline(stack, cid, "payment.failed")
    assert any("Visa" in (f["data"].get("retry") or "") for f in failed)
    # every attempt Mahnwerk recorded is one PaymentIntent at the stand-in, and no more
    intents = {
        e["data"]["object"]["id"]
        for e in stack.standin.events("payment_intent.created")
        if e["data"]["object"]["metadata"].get("contract_id") == cid
    }
    assert len(intents) == len(times)


async def test_card_dispute_reopens_the_amount_like_a_sepa_refund(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # no Berlin holiday for the next seven weeks
    email = unique_email()
    cid, _ = await stack.start(count=1, email=email)
    await stack.env.sleep(timedelta(hours=1))
    (debit,) = stack.debits(cid)
    assert (await stack.contract(cid))["status"] == "completed"
    await stack.env.sleep(timedelta(weeks=3))  # within the chargeback watch
    stack.standin.dispute(debit["payment_intent"], reason="fraudulent")
    await deliver(stack, stack.standin.events("charge.dispute.created")[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["schedule"][0]["status"] == "open"
    # the principal again; a card has no bank return-debit costs to pass on
    assert c["claim"]["total"] == 9900
    (disputed,) = await timeline(stack, cid, "payment.disputed")
    assert disputed["data"]["code"] == "fraudulent"
    assert disputed["data"]["return_debit_costs"] == 0
    await stack.env.sleep(timedelta(days=16))
    c = await stack.contract(cid)
    # the first Mahnung (D+14 from the chargeback); the lock follows its deadline
    assert c["dunning"]["stage"] == "mahnung_1" and c["access"] == "granted"
    await stack.env.sleep(timedelta(days=7))
    c = await stack.contract(cid)
    assert c["dunning"]["stage"] == "lock" and c["access"] == "locked"
    assert len(stack.debits(cid)) == 1  # a disputed amount is dunned, never re-debited


async def test_the_payment_method_is_looked_up_once_per_method(stack: Stack) -> None:
    """One Stripe lookup per method the contract holds, not one per debit (the magic test
    id `pm_card_visa` comes back from Stripe under a concrete id: that once cost every
    debit a second Stripe request, halving the due wave's rate under the rate limit)."""
    cid, handle = await stack.start(count=3, interval="P7D", email=unique_email())
    await stack.env.sleep(timedelta(days=15))
    assert len(stack.debits(cid)) == 3

    async def lookups() -> list[str]:
        return [n for n, _ in await activities_run(handle) if n == "describe_payment_method"]

    assert len(await lookups()) == 1
