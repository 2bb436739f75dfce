"""The claim, exact (issue 11), on the time-skipping server and driven from the outside:
deadlines on the right day (§ 193 BGB, the send window), what a customer pays against what
a notice asked, the residual once the principal is paid, the API's claim against the
notice's lines, and a court hand-off that needs the debtor's address.

The deadlines asserted are computed here from the rules in domain/ (tests/workflows/
ladder.py); those rules have their own hand-computed tests in tests/domain.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.notice_render import format_day
from domain.calendar import is_working_day, shift_deadline_193
from domain.deadlines import deadline_before
from domain.schedule import BERLIN, berlin_midnight
from tests.conftest import ADMIN, PLATFORM, SUPPORT, contract_body
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, interest, rungs
from tests.workflows.test_payments import deliver, sepa_method, timeline, until_settled_at_bank
from workflows.types import ContractView, workflow_id_for

LOST = "pm_card_visa_chargeDeclinedLostCard"
STATE = "BE"  # MAHNWERK_SELLER_STATE's default, pinned into every contract


def notices(sessions: sessionmaker[Session], cid: str) -> list[Any]:
    """The dunning notices of a contract (not the customer messages of issue 12, which are
    no part of the ladder: they go out at once, outside the send window)."""
    from core.models import Notice

    with sessions() as s:
        return [
            n
            for n in s.scalars(
                select(Notice).where(Notice.contract_id == cid).order_by(Notice.created_at)
            )
            if "message" not in (n.data or {})
        ]


async def stage_times(stack: Stack, cid: str) -> dict[str, datetime]:
    """When each dunning stage was entered (the timeline's dunning.stage_changed)."""
    return {
        e["data"]["stage"]: datetime.fromisoformat(e["occurred_at"])
        for e in await timeline(stack, cid, "dunning.stage_changed")
    }


def berlin(dt: datetime) -> datetime:
    return dt.astimezone(BERLIN)


def in_send_window(notice: Any) -> bool:
    """Whether the notice went out (the workflow's clock, as recorded with it) inside the
    default policy's window: working days in Berlin, 08:00–18:00 Berlin time."""
    local = berlin(datetime.fromisoformat(notice.data["created_at"]))
    return is_working_day(local.date(), STATE) and 8 <= local.hour < 18


def sent_day(notice: Any) -> date:
    return berlin(datetime.fromisoformat(notice.data["created_at"])).date()


async def test_deadlines_end_before_the_next_step_and_move_off_a_sunday(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    # A Monday in June: the first Mahnung's planned day D+14 is a Monday, so the reminder's
    # last day to pay, D+13, is a Sunday and § 193 BGB moves it to Monday D+14; the Mahnung
    # comes on Tuesday D+15. No Berlin holiday in June and July.
    await stack.pin_date(6, 15, weekday=0)
    due = date.fromisoformat(await stack.today())
    email = unique_email()
    cid, handle = await stack.start(count=1, payment_method=LOST, email=email)
    assert (await stack.settled(handle, "handed_off")).status == "handed_off"

    sent = notices(sessions, cid)
    assert [n.stage for n in sent] == ["reminder", "mahnung_1", "lock", "mahnung_2", "handoff"]
    reminder = sent[0]
    sunday = due + timedelta(days=13)
    assert sunday.weekday() == 6
    assert reminder.data["deadline_day"] == (due + timedelta(days=14)).isoformat()
    assert reminder.data["deadline_shift_reason"] == "Sonntag"
    text = " ".join(reminder.text.split())
    assert f"bis spätestens {format_day(due + timedelta(days=14), 'de')}" in text

    entered = await stage_times(stack, cid)
    following = {"reminder": "mahnung_1", "mahnung_1": "lock", "lock": "mahnung_2"}
    following["mahnung_2"] = "collection"
    for notice in sent[:4]:
        nxt = entered[following[notice.stage]]
        # the printed last day to pay ends before the next step's day begins (Berlin)
        assert notice.data["deadline_day"] < berlin(nxt).date().isoformat(), notice.stage
        # and it is the rule's day: the last day before the planned step, § 193 applied
        planned = berlin_midnight(due) + timedelta(
            days={"mahnung_1": 14, "lock": 21, "mahnung_2": 24, "collection": 38}[
                following[notice.stage]
            ]
        )
        assert notice.data["deadline_day"] == deadline_before(planned, STATE).last_day
    # the Mahnung came on Tuesday, after the moved deadline (Monday) had ended
    assert berlin(entered["mahnung_1"]).date() == due + timedelta(days=15)
    for notice in sent:
        assert in_send_window(notice), notice.stage


async def test_a_deadline_on_25_december_moves_past_the_holidays(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    # Due on 12 December: the first Mahnung is planned for 26 December 00:00, so the
    # reminder's last day to pay would be 25 December — a public holiday (and, in some
    # years, a Saturday): § 193 BGB moves it to the next working day after Christmas.
    await stack.pin_date(12, 12)
    due = date.fromisoformat(await stack.today())
    cid, _ = await stack.start(count=1, payment_method=LOST, email=unique_email())
    christmas = date(due.year, 12, 25)
    moved = shift_deadline_193(christmas, state=STATE)
    assert moved > date(due.year, 12, 26) and is_working_day(moved, STATE)
    await stack.sleep_until(
        datetime.combine(moved + timedelta(days=3), datetime.min.time(), BERLIN)
    )

    reminder, mahnung = notices(sessions, cid)[:2]
    assert reminder.data["deadline_day"] == moved.isoformat()
    assert reminder.data["deadline_shift_reason"] in ("1. Weihnachtstag", "Samstag")
    entered = await stage_times(stack, cid)
    # the Mahnung only after the moved deadline had ended, inside the send window
    assert berlin(entered["mahnung_1"]).date() > moved
    assert in_send_window(mahnung) and in_send_window(reminder)


async def test_paying_exactly_what_the_mahnung_asks_leaves_nothing_open(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    """A SEPA debit reclaimed by the debtor's bank: the principal again, the bank's
    return-debit costs (itemised apart from fees), § 288 interest from the chargeback day,
    the Mahnung's fee. The API shows the notice's numbers; paying the Mahnung's total by
    bank transfer by its deadline leaves nothing open."""
    await stack.pin_date(6, 15)  # no Berlin holiday for the next ten weeks
    stack.standin.set_config(sepa_delay=0.2)
    try:
        email = unique_email()
        method = sepa_method(stack, "DE89370400440532013000")
        cid, _ = await stack.start(count=1, payment_method=method, email=email)
        await until_settled_at_bank(stack, cid)
        await stack.env.sleep(timedelta(days=1))
        assert (await stack.contract(cid))["status"] == "completed"
        pi = (await stack.contract(cid))["schedule"][0]["attempts"][0]["payment_intent"]
        await stack.env.sleep(timedelta(weeks=5))
        disputed_on = await stack.today()
        stack.standin.dispute(pi, reason="debit_not_authorized")
        await deliver(stack, stack.standin.events("charge.dispute.created")[-1])
        # the ladder counts from the chargeback (an instant of the day, not midnight)
        ladder = rungs(date.fromisoformat(disputed_on))
        await stack.sleep_until(after(ladder["mahnung_1"], minutes=8 * 60))
    finally:
        stack.standin.set_config(sepa_delay=2.0)

    mahnung = notices(sessions, cid)[-1]
    assert mahnung.stage == "mahnung_1"
    printed = mahnung.data["claim"]
    c = await stack.contract(cid)
    claim = c["claim"]
    # GET /v1/contracts/{id} shows what the notice printed, part by part, as of its day
    assert claim["as_of"] == printed["as_of"]
    for part in ("principal", "interest", "fees", "costs", "lump_sums", "total"):
        assert claim[part] == printed[part], part
    assert (claim["principal"], claim["fees"], claim["costs"]) == (9900, 250, 350)
    assert [i["kind"] for i in claim["cost_items"]] == ["return_debit"]
    expected = interest(9900, disputed_on, printed["as_of"], stack.settings.base_rates)
    assert claim["interest"] == expected > 0
    assert mahnung.data["total"] == claim["total"] == 9900 + 250 + 350 + expected
    text = " ".join(mahnung.text.split())
    assert "Rücklastschriftkosten" in text and "Mahngebühren" in text
    assert f"Gesamtbetrag — {format_money_de(claim['total'])}" in mahnung.text

    # Two days later, still before the deadline, the customer transfers exactly that.
    await stack.env.sleep(timedelta(days=2))
    assert await stack.today() <= mahnung.data["deadline_day"]
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": claim["total"], "method": "bank_transfer", "reference": "MW-1"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["overdue_amount"] == 0 and resp.json()["access"] == "granted"
    c = await stack.contract(cid)
    assert c["claim"]["total"] == 0 and c["claim"]["credit"] == 0
    (settled,) = await timeline(stack, cid, "settlement.recorded")
    assert settled["data"]["paid_as_asked"]["booked_on"] == printed["as_of"]


def format_money_de(minor: int) -> str:
    from activities.notice_render import format_money

    return format_money(minor, "eur", "de")


async def test_paying_the_principal_only_unlocks_and_a_final_notice_claims_the_rest(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    await stack.pin_date(6, 15)  # no Berlin holiday for the next ten weeks
    ladder = rungs(date.fromisoformat(await stack.today()))
    email = unique_email()
    cid, handle = await stack.start(count=1, payment_method=LOST, email=email)
    await stack.sleep_until(after(ladder["mahnung_2"]))
    c = await stack.contract(cid)
    assert c["access"] == "locked" and c["claim"]["fees"] == 500

    # A new card: the debit takes the principal (policy `collect: principal`) and access
    # is unlocked at once; fees and interest (5,00 € + interest, not below the policy's
    # residual.write_off_below of 5,00 €) are claimed by a final notice.
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    assert [d["amount"] for d in resp.json()["debits"]] == [9900]
    assert resp.json()["access"] == "granted"
    await stack.env.sleep(timedelta(days=1))  # the final notice goes out in the window
    c = await stack.contract(cid)
    claim = c["claim"]
    assert claim["principal"] == 0 and claim["fees"] == 500 and claim["interest"] > 0
    assert c["access"] == "granted" and c["status"] == "active"
    (claimed,) = await timeline(stack, cid, "claim.residual_claimed")
    assert claimed["data"]["amount"] == claim["total"] == 500 + claim["interest"]
    final = notices(sessions, cid)[-1]
    assert final.stage.startswith("residual") and final.data["total"] == claim["total"]
    assert in_send_window(final)
    deadline = date.fromisoformat(final.data["deadline_day"])
    assert deadline >= sent_day(final) + timedelta(days=14)
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert [x for x in subjects if x.startswith("Restforderung")] == [final.subject], subjects
    # the thanks for the payment says what is left (issue 12), it does not call it settled
    (thanks,) = [m for m in stack.mails(email) if str(m["Subject"]).startswith("Zahlung eingeg")]
    text = thanks.get_body(preferencelist=("plain",)).get_content()
    assert "gesondert" in text and "ausgeglichen" not in text

    # Unpaid by its deadline: it stays on the ledger, in the API and in an event; the
    # contract (all installments paid) completes.
    view: ContractView = await stack.result(handle)
    assert view.status == "completed"
    (unpaid,) = await timeline(stack, cid, "claim.residual_unpaid")
    assert unpaid["data"]["amount"] >= claimed["data"]["amount"]
    c = await stack.contract(cid)
    assert c["claim"]["fees"] == 500 and c["claim"]["total"] >= claim["total"]


async def test_a_court_handoff_without_an_address_waits_for_it(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    await stack.pin_date(6, 15)  # no Berlin holiday for the next six weeks
    ladder = rungs(date.fromisoformat(await stack.today()))
    body = contract_body(count=1, payment_method=LOST, first_due=await stack.today())
    del body["customer"]["address"]
    body["customer"]["email"] = unique_email()
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]
    handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
    await stack.sleep_until(after(ladder["collection"]) + timedelta(days=3))

    c = await stack.contract(cid)
    # § 690 (1) Nr. 1 ZPO: no Mahnantrag without the debtor's address
    assert c["status"] == "in_dunning" and c["dunning"]["stage"] == "needs_address"
    (required,) = await timeline(stack, cid, "handoff.address_required")
    assert required["data"]["route"] == "court"
    assert set(required["data"]["missing"]) == {"line1", "postal_code", "city"}
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 404

    address = {"line1": "Lindenweg 7", "postal_code": "04109", "city": "Leipzig", "country": "DE"}
    bad = await stack.http.post(
        f"/v1/contracts/{cid}/address",
        json={"address": {**address, "city": " "}, "reason": "Meldeamt"},
        headers=SUPPORT,
    )
    assert bad.status_code == 422, bad.text
    ok = await stack.http.post(
        f"/v1/contracts/{cid}/address",
        json={"address": address, "reason": "Auskunft des Einwohnermeldeamts"},
        headers=SUPPORT,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "handed_off"
    assert (await stack.settled(handle, "handed_off")).status == "handed_off"
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 200, case.text
    file = case.json()["file"]
    assert case.json()["route"] == "court" and file["debtor"]["address"] == address
    assert file["mahnantrag"]["principal"] == 9900
    types = [e["type"] for e in (await timeline(stack, cid, "customer.address_updated"))]
    assert types == ["customer.address_updated"]


async def test_a_contract_pins_the_base_rates_without_their_sources(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    """The § 247 BGB rows a contract pins — its workflow input and the claim facts its
    ledger writes carry, which the API computes today's claim from — are the half-year and
    the rate of every row of the worker's table; the source stays with the table in code
    (issue 17: two thirds of the input's bytes, held by every cached contract)."""
    from core.models import Contract
    from domain.interest import with_rates
    from workflows.types import ContractInput

    cid, handle = await stack.start(count=2, email=unique_email())
    table = with_rates(stack.settings.extra_base_rates)
    assert table and all(row.source for row in table)  # the table in code names them
    expected = [(row.effective, row.rate_bp) for row in table]

    started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
    (inp,) = await stack.temporal.data_converter.decode(started.input.payloads, [ContractInput])
    assert [(row.effective, row.rate_bp) for row in inp.base_rates] == expected
    assert {row.source for row in inp.base_rates} == {""}

    await handle.query("view", result_type=ContractView)  # the first task (and its write) done
    facts: dict[str, Any] | None = None
    for _ in range(100):
        with sessions() as s:
            facts = s.get(Contract, cid).claim_facts  # type: ignore[union-attr]
        if facts:
            break
        await stack.env.sleep(timedelta(seconds=1))
    assert facts, "the contract's first ledger write carries its claim facts"
    assert [(r["effective"], r["rate_bp"]) for r in facts["rates"]] == expected
    assert {r["source"] for r in facts["rates"]} == {""}
