"""The dunning ladder's end: write-off below the threshold, approval before hand-off, and
later installments joining an open case — on the time-skipping server, through the API."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from activities.notice_render import format_money
from api.main import create_app
from core.settings import PROJECT_ROOT, Settings
from domain.interest import default_interest, with_rates
from domain.schedule import BERLIN
from tests.conftest import (
    ADMIN,
    PLATFORM,
    SUPPORT,
    api_client,
    contract_body,
    start_test_server,
)
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs
from worker import build_worker

LOST = "pm_card_visa_chargeDeclinedLostCard"


async def timeline_types(stack: Stack, cid: str) -> list[str]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)
    return [e["type"] for e in resp.json()["data"]]


async def test_claim_below_threshold_is_written_off(stack: Stack) -> None:
    # default policy: write_off_below 5000 (50,00 €) of principal
    cid, handle = await stack.start(count=1, amount=4000, payment_method=LOST)
    view = await stack.result(handle)
    assert view.status == "written_off"
    types = await timeline_types(stack, cid)
    assert "contract.written_off" in types and "contract.handed_off" not in types
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 404


async def test_policy_requiring_approval_waits_then_hands_off(stack: Stack, tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "policies" / "default.yaml").read_text()
    text = text.replace("name: default", "name: approval").replace(
        "require_approval: false", "require_approval: true"
    )
    assert "require_approval: true" in text
    (tmp_path / "approval.yaml").write_text(text)
    stack.settings.policy_dir = tmp_path
    await stack.pin_date(6, 15)  # no holiday moves the rungs for the next six weeks
    cid, handle = await stack.start(count=1, payment_method=LOST, policy="approval")
    await stack.env.sleep(timedelta(days=45))  # a week past the hand-off rung
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["dunning"]["stage"] == "collection"
    types = await timeline_types(stack, cid)
    assert "handoff.approval_required" in types and "contract.handed_off" not in types
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/approve-handoff", json={"route": "court"}, headers=ADMIN
    )
    assert resp.status_code == 200, resp.text
    assert (await stack.settled(handle, "handed_off")).status == "handed_off"
    case = (await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)).json()
    assert case["route"] == "court" and case["file"]["mahnantrag"]["catalogue_number"] == 16


async def test_second_installment_failing_joins_the_open_case(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # no holiday moves the rungs for the next six weeks
    email = unique_email()
    cid, handle = await stack.start(count=2, payment_method=LOST, email=email)
    # installment 2 falls due about 30 days in, while the case of installment 1 is open
    await stack.env.sleep(timedelta(days=32))
    c = await stack.contract(cid)
    assert [i["status"] for i in c["schedule"]] == ["open", "open"]
    assert c["dunning"]["case_no"] == 1  # one case per contract
    assert c["dunning"]["stage"] == "mahnung_2"  # driven by the oldest due date (D+24)
    assert c["claim"]["principal"] == 2 * 9900
    # the hand-off still comes 38 days after the OLDEST due date, with both installments
    view = await stack.settled(handle, "handed_off")
    assert view.status == "handed_off"
    case = (await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)).json()
    assert [i["seq"] for i in case["file"]["installments"]] == [1, 2]
    assert case["file"]["totals"]["principal"] == 2 * 9900
    # one notice per stage, not per installment: reminder, 1. Mahnung, access locked,
    # letzte Mahnung, hand-off announcement; and the payment-failed message once per case
    # (issue 12): installment 2's decline is in the next notice, not in a message of its own
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert len(subjects) == 6, subjects
    assert [s.startswith("Zahlung fehlgeschlagen") for s in subjects].count(True) == 1


async def test_partial_settlement_is_allocated_costs_interest_principal(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # no holiday: the first Mahnung comes on D+14
    ladder = rungs(date.fromisoformat(await stack.today()))
    cid, _ = await stack.start(count=1, payment_method=LOST)
    await stack.sleep_until(after(ladder["mahnung_1"]))  # past the first Mahnung: 2,50 € fee
    await stack.env.sleep(timedelta(days=1))  # D+15
    c = await stack.contract(cid)
    assert c["claim"]["principal"] == 9900 and c["claim"]["fees"] == 250
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": 1000, "method": "bank_transfer", "reference": "Teilzahlung"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    # § 367 BGB: costs, then interest, then principal. Interest (consumer, base 1,27 % + 5 pp
    # = 6,27 %) on 99,00 € for the 15 days after the due date:
    #   9900 × 627 bp × 15 / 3,650,000 = 25.51… → 26 ct (rounded half-up once)
    assert resp.json()["allocation"] == {"fees": 250, "interest_1": 26, "installment_1": 724}
    c = await stack.contract(cid)
    assert c["claim"]["principal"] == 9900 - 724 and c["claim"]["fees"] == 0
    assert c["status"] == "in_dunning"  # a partial payment: the ladder goes on


async def test_worker_dying_between_render_and_send_leaves_one_email(
    settings: Settings, sessions: sessionmaker[Session], standin: Any, smtp: Any
) -> None:
    """The first attempt renders and stores the reminder, then dies before the SMTP send
    (as a killed worker would); Temporal retries the activity: exactly one e-mail."""
    from activities.mailer import send_email

    calls: list[str] = []

    def dying_once(*args: Any, **kwargs: Any) -> None:
        calls.append("send")
        if len(calls) == 1:
            raise ConnectionError("worker died before the SMTP send")
        send_email(*args, **kwargs)

    email = unique_email()
    async with await start_test_server() as env:
        parts = build_worker(env.client, settings, session_factory=sessions, mailer=dying_once)
        app = create_app(settings, sessions)
        app.state.mahnwerk._client = env.client
        async with parts.worker, api_client(app) as http:
            stack = Stack(env, http, settings, standin, smtp)
            cid, _ = await stack.start(count=1, payment_method=LOST, email=email)
            await env.sleep(timedelta(days=4))  # the reminder is due at D+3
            # the first send (the payment-failed message, issue 12) died, then went out;
            # then the reminder: one e-mail each
            assert len(calls) == 3
            mails = stack.mails(email)
            assert len(mails) == 2
            notices = (await http.get(f"/v1/contracts/{cid}/notices", headers=ADMIN)).json()
            assert [(n["stage"], n["status"]) for n in notices["data"]] == [
                ("payment_failed_1", "sent"),
                ("reminder", "sent"),
            ]
            for notice, mail in zip(notices["data"], mails, strict=True):
                assert notice["message_id"] == str(mail["Message-ID"]).strip()
        parts.executor.shutdown(wait=False)


def _next_rate_change(after: date) -> date:
    """The next 1 January / 1 July (§ 247 BGB base-rate dates) after `after`."""
    for year in (after.year, after.year + 1):
        for month in (1, 7):
            if date(year, month, 1) > after:
                return date(year, month, 1)
    raise AssertionError("unreachable")


async def test_consumer_and_business_interest_across_a_base_rate_change(
    settings: Settings, sessions: sessionmaker[Session], standin: Any, smtp: Any
) -> None:
    """The final Mahnung itemises § 288 interest per rate period: base + 5 pp for a
    consumer, base + 9 pp for a business, with the base rate changing in between."""
    async with await start_test_server() as env:
        today = (await env.get_current_time()).astimezone(BERLIN).date()
        change = _next_rate_change(today + timedelta(days=15))
        due = change - timedelta(days=10)  # the final Mahnung (D+24) is 14 days after it
        # TEST DATA: every half-year up to the change at 1.27 %, from the change 2.27 %
        rows, d = [], date(2026, 7, 1)
        while d < change:
            rows.append(f"{d.isoformat()}:127")
            d = _next_rate_change(d)
        rows.append(f"{change.isoformat()}:227")
        cfg = settings.model_copy(update={"base_rates": ",".join(rows)})
        parts = build_worker(env.client, cfg, session_factory=sessions)
        app = create_app(cfg, sessions)
        app.state.mahnwerk._client = env.client
        async with parts.worker, api_client(app) as http:
            emails = {}
            for kind in ("consumer", "business"):
                body = contract_body(count=1, payment_method=LOST, first_due=due.isoformat())
                body["customer"]["type"] = kind
                body["customer"]["email"] = emails[kind] = unique_email()
                resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
                assert resp.status_code == 201, resp.text
            await env.sleep(timedelta(days=(due - today).days + 25))
            stack = Stack(env, http, cfg, standin, smtp)
            for kind, (low, high) in {"consumer": (627, 727), "business": (1027, 1127)}.items():
                final = [
                    m for m in stack.mails(emails[kind]) if str(m["Subject"]).startswith("Letzte")
                ]
                assert len(final) == 1, kind
                text = final[0].get_body(preferencelist=("plain",)).get_content()
                sent_on = due + timedelta(days=24)
                expected = default_interest(
                    9900,
                    due.isoformat(),
                    sent_on.isoformat(),
                    kind,
                    with_rates(cfg.extra_base_rates),
                )
                assert [p.rate_bp for p in expected.periods] == [low, high]
                # amounts as CLDR writes them, with a no-break space: "0,64\u00a0€"
                assert format_money(expected.amount, "eur", "de") in text
                for rate in (low, high):
                    assert f"{rate // 100},{rate % 100:02d} %" in text, (kind, rate, text)
        parts.executor.shutdown(wait=False)
