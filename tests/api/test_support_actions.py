"""Support and admin actions through the API, on the time-skipping server with the real
worker: allowed, refused (409 with the reason and no trace in the history), wrong role
(403), bad input (422 naming the field)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType

from domain.schedule import berlin_date
from tests.conftest import ADMIN, PLATFORM, SUPPORT
from tests.stack import Stack, unique_email

LOST = "pm_card_visa_chargeDeclinedLostCard"


async def history(stack: Stack, cid: str) -> list[Any]:
    hist = await stack.env.client.get_workflow_handle(f"contract-{cid}").fetch_history()
    return list(hist.events)


# A rejected Update is delivered in a speculative workflow task: the real server drops it
# from the history; the time-skipping test server keeps the bare task events. Either way,
# nothing of the update itself (accepted/completed), no activity, no timer may appear.
WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


async def action(
    stack: Stack, cid: str, name: str, body: dict[str, Any], key: dict[str, str] = SUPPORT
) -> Any:
    return await stack.http.post(f"/v1/contracts/{cid}/{name}", json=body, headers=key)


async def timeline(stack: Stack, cid: str) -> list[dict[str, Any]]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=SUPPORT)
    return list(resp.json()["data"])


async def test_pause_across_a_due_date_holds_the_ladder(stack: Stack) -> None:
    # A Sunday in June: the due date (day 10) is a Wednesday, so with the pause's 20 days
    # every rung below and the day before it are working days, and no Berlin holiday
    # falls in the weeks ahead: no deadline moves (§ 193 BGB is tested in test_claim.py).
    await stack.pin_date(6, 1, weekday=6)
    email = unique_email()
    now = await stack.env.get_current_time()
    due = berlin_date(now + timedelta(days=10))
    cid, _ = await stack.start(count=2, payment_method=LOST, email=email, first_due=due)
    until = (now + timedelta(days=30)).isoformat()
    resp = await action(stack, cid, "pause", {"until": until, "reason": "customer in hospital"})
    assert resp.status_code == 200, resp.text
    # day 25: the due debit was tried (and failed), but no notice and no lock while paused
    await stack.env.sleep(timedelta(days=25))
    c = await stack.contract(cid)
    assert c["paused"] is True and c["status"] == "in_dunning"
    assert c["dunning"]["stage"] == "retrying" and c["access"] == "granted"
    assert stack.mails(email) == []
    # the pause ends by itself at day 30; the dunning clock stood still for 20 days, so the
    # reminder (due + 3 d) comes at day 33, the first Mahnung (due + 14 d) at day 44 and the
    # lock after its deadline (due + 21 d) at day 51 — each on the next working day at
    # 08:00 at the latest (send window)
    await stack.env.sleep(timedelta(days=9))
    c = await stack.contract(cid)
    assert c["paused"] is False
    assert c["dunning"]["stage"] == "reminder" and c["access"] == "granted"
    assert len(stack.mails(email)) == 1
    await stack.env.sleep(timedelta(days=12))
    c = await stack.contract(cid)
    assert c["dunning"]["stage"] == "mahnung_1" and c["access"] == "granted"
    await stack.env.sleep(timedelta(days=7))
    c = await stack.contract(cid)
    assert c["dunning"]["stage"] == "lock" and c["access"] == "locked"
    types = [(e["type"], e["actor"]) for e in await timeline(stack, cid)]
    assert ("contract.paused", "anna") in types and ("contract.resumed", None) in types


async def test_refused_actions_are_409_with_reason_and_leave_no_trace(stack: Stack) -> None:
    cid, _ = await stack.start(count=3)
    await stack.env.sleep(timedelta(hours=1))
    before = len(await history(stack, cid))
    cases: list[tuple[str, dict[str, Any], dict[str, str], str]] = [
        ("resume", {"reason": "x"}, SUPPORT, "not paused"),
        ("deferral", {"until": "2030-01-01", "reason": "x"}, SUPPORT, "nothing is overdue"),
        ("approve-handoff", {}, ADMIN, "no hand-off is waiting"),
        ("cancel", {"reason": "cancellation_button", "refund": 10**6}, SUPPORT, "exceeds"),
        ("write-off", {"reason": "x"}, ADMIN, "no open claim"),
        ("waivers", {"fees": True, "reason": "x"}, SUPPORT, "no open fees"),
        ("settlements", {"amount": 10**7, "method": "cash", "reference": "r"}, SUPPORT, "exceeds"),
    ]
    for name, body, key, reason in cases:
        resp = await action(stack, cid, name, body, key)
        # a refund above what was paid is invalid input (422, naming `refund`)
        assert resp.status_code == (422 if name == "cancel" else 409), (name, resp.text)
        if name == "cancel":
            assert resp.json()["error"]["message"].startswith("refund"), resp.text
            continue
        err = resp.json()["error"]
        assert err["code"] == "conflict" and reason in err["message"], (name, err)
    added = (await history(stack, cid))[before:]
    assert {e.event_type for e in added} <= WORKFLOW_TASK_EVENTS, added


async def test_roles_and_bad_input(stack: Stack) -> None:
    cid, _ = await stack.start(count=3)
    support_routes = ["pause", "resume", "deferral", "waivers", "contest"]
    for name in support_routes:
        resp = await action(stack, cid, name, {"reason": "x"}, PLATFORM)
        assert resp.status_code == 403, (name, resp.text)
    for name in ("write-off", "approve-handoff"):
        resp = await action(stack, cid, name, {"reason": "x"}, SUPPORT)
        assert resp.status_code == 403, (name, resp.text)
        assert (await stack.http.post(f"/v1/contracts/{cid}/{name}", json={})).status_code == 401
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("pause", {"reason": ""}, "reason"),
        ("pause", {"until": "tomorrow", "reason": "x"}, "until"),
        ("deferral", {"until": "2026-13-45", "reason": "x"}, "until"),
        ("waivers", {"fees": "maybe", "reason": "x"}, "fees"),
        ("approve-handoff", {"route": "police"}, "route"),
        ("settlements", {"amount": -1, "method": "cash", "reference": "r"}, "amount"),
        ("cancel", {"reason": "x"}, "reason"),
    ]
    for name, body, field in bad:
        resp = await action(stack, cid, name, body, ADMIN)
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json()["error"]["message"].startswith(field), resp.text


async def test_deferral_unlocks_and_holds_escalation_until_the_date(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # no Berlin holiday moves the rungs in the weeks ahead
    email = unique_email()
    cid, _ = await stack.start(count=1, payment_method=LOST, email=email)
    await stack.env.sleep(timedelta(days=22))  # past the lock (D+21)
    c = await stack.contract(cid)
    claim = c["claim"]
    assert c["access"] == "locked" and (claim["principal"], claim["fees"]) == (9900, 250)
    until = berlin_date(await stack.env.get_current_time() + timedelta(days=20))
    resp = await action(
        stack, cid, "deferral", {"until": until, "reason": "Stundung bis Monatsende"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["access"] == "granted" and resp.json()["status"] == "active"
    await stack.env.sleep(timedelta(minutes=5))
    # the customer is told the access is back (issue 12), once
    assert [m["Subject"] for m in stack.mails(email)].count(
        f"Ihr Zugang zu Kurs X ist wieder freigeschaltet (Vertrag {cid})"
    ) == 1
    mails = len(stack.mails(email))
    await stack.env.sleep(timedelta(days=10))
    assert len(stack.mails(email)) == mails  # no escalation before the new date
    attempts = (await stack.contract(cid))["schedule"][0]["attempts"]
    assert len(attempts) == 1
    await stack.env.sleep(timedelta(days=11))
    c = await stack.contract(cid)
    # due again on the deferral date: debited once more (claim incl. the fee), failed, and a
    # new dunning case started
    # (policy `collect: principal`: the debit takes the deferred principal, the fee stays
    # in the claim, demanded by the notices)
    attempts = c["schedule"][0]["attempts"]
    assert len(attempts) == 2 and attempts[1]["amount"] == 9900
    assert c["dunning"]["case_no"] == 2 and c["status"] == "in_dunning"
    assert c["claim"]["fees"] == 250


async def test_waiver_removes_fees_from_the_claim(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # the first Mahnung (with its fee) comes on D+14
    cid, _ = await stack.start(count=2, payment_method=LOST)
    await stack.env.sleep(timedelta(days=15))
    claim = (await stack.contract(cid))["claim"]
    assert claim["fees"] == 250 and claim["total"] == 9900 + 250 + claim["interest"]
    resp = await action(stack, cid, "waivers", {"fees": True, "reason": "Kulanz"})
    assert resp.status_code == 200, resp.text
    claim = (await stack.contract(cid))["claim"]  # as of the waiver's day
    assert resp.json()["overdue_amount"] == 9900 + claim["interest"]
    assert claim["fees"] == 0 and claim["waived"]["fees"] == 250
    resp = await action(stack, cid, "waivers", {"interest": True, "reason": "Kulanz"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["overdue_amount"] == 9900
    claim = (await stack.contract(cid))["claim"]
    assert claim["interest"] == 0 and claim["interest_mode"] == "waived"


async def test_contested_claim_waits_for_approval_then_goes_to_inkasso(stack: Stack) -> None:
    cid, handle = await stack.start(count=2, payment_method=LOST)
    resp = await action(stack, cid, "contest", {"reason": "Kunde bestreitet Vertragsschluss"})
    assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(days=60))  # far past the hand-off rung (38 d)
    c = await stack.contract(cid)
    # the hand-off rung is reached but waits, durably, for an admin
    assert c["status"] == "in_dunning" and c["dunning"]["stage"] == "collection"
    types = [e["type"] for e in await timeline(stack, cid)]
    assert "handoff.approval_required" in types and "contract.handed_off" not in types
    # waiting since day 38: admins are reminded weekly (days 45, 52, 59)
    assert types.count("handoff.approval_reminder") == 3
    resp = await action(stack, cid, "approve-handoff", {}, ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "handed_off"
    view = await stack.settled(handle, "handed_off")
    assert view.status == "handed_off"
    handed = [e for e in await timeline(stack, cid) if e["type"] == "contract.handed_off"]
    assert handed[0]["data"]["route"] == "inkasso" and handed[0]["actor"] == "root"
    case = await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)
    assert case.status_code == 200, case.text
    file = case.json()["file"]
    assert case.json()["route"] == "inkasso" and file["mahnantrag"] is None
    assert file["terms"]["ip"] == "203.0.113.7"  # the acceptance evidence travels along
    assert {a["decline_code"] for a in file["attempts"]} == {"lost_card"}


async def test_write_off_ends_the_contract(stack: Stack) -> None:
    # one installment: nothing of the plan is left after the write-off (issue 12: with more,
    # the policy's on_default decides about the rest, tests/workflows/test_after_handoff.py)
    cid, handle = await stack.start(count=1, payment_method=LOST)
    await stack.env.sleep(timedelta(days=2))
    resp = await action(stack, cid, "write-off", {"reason": "Kunde insolvent"}, ADMIN)
    assert resp.status_code == 200 and resp.json()["status"] == "written_off"
    assert (await stack.result(handle)).status == "written_off"
    (inst,) = (await stack.contract(cid))["schedule"]
    assert inst["status"] == "written_off" and inst["ended"]["reason"] == "Kunde insolvent"
    late = await action(stack, cid, "pause", {"reason": "x"})
    assert late.status_code == 409


async def test_subscription_cancelled_at_period_end(stack: Stack) -> None:
    cid, handle = await stack.start(kind="subscription", amount=2900)
    await stack.env.sleep(timedelta(days=40))  # two periods paid
    assert len(stack.debits(cid)) == 2
    resp = await action(
        stack, cid, "cancel", {"at_period_end": True, "reason": "cancellation_button"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active"  # runs until the paid period ends
    view = await stack.result(handle)
    assert view.status == "cancelled" and view.access == "none"
    assert len(stack.debits(cid)) == 2  # no further renewal
