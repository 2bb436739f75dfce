"""Replay recorded histories against today's workflow code (DESIGN.md decision 8).

A change that would make running contracts replay differently fails here unless it is
guarded with `workflow.patched(...)`. The histories in `tests/histories/` are recorded from
real runs of the scenarios below (`MAHNWERK_RECORD_HISTORIES=1 make test
PYTEST_ARGS=tests/workflows/test_replay.py`); record new ones when a new path is added,
never re-record old ones to make a failing replay pass.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.settings import Settings
from core.temporal import data_converter
from tests.conftest import ADMIN, PLATFORM, SUPPORT, contract_body
from tests.stack import Stack, unique_email
from workflows.contract import ContractWorkflow
from workflows.types import workflow_id_for

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
RECORD = os.environ.get("MAHNWERK_RECORD_HISTORIES") == "1"


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(workflow_id_for(path.stem), path.read_text())
    # with the workers' payload converter (core/converter.py); recorded without the codec
    converter = data_converter(Settings(codec_key=None))
    await Replayer(workflows=[ContractWorkflow], data_converter=converter).replay_workflow(history)


def test_histories_are_recorded() -> None:
    assert len(recorded()) >= 5, "tests/histories/ lost its recorded histories"


async def _save(stack: Stack, name: str, cid: str, run_id: str | None = None) -> None:
    handle = stack.env.client.get_workflow_handle(workflow_id_for(cid), run_id=run_id)
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


async def _save_new(stack: Stack, name: str, cid: str) -> None:
    """Record `name` unless it is recorded already (old histories are never re-recorded)."""
    if not (HISTORIES / f"{name}.json").exists():
        await _save(stack, name, cid)


async def _new_card(stack: Stack, cid: str) -> None:
    """Support gives the contract a new, working card."""
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.skipif(not RECORD, reason="set MAHNWERK_RECORD_HISTORIES=1 to record")
async def test_record_histories(stack: Stack) -> None:
    HISTORIES.mkdir(exist_ok=True)
    # a plan paid in full
    cid, handle = await stack.start(count=3)
    await stack.result(handle)
    await _save(stack, "plan-paid", cid)
    # hard decline → reminder → lock → new payment method → unlock → completed
    cid, handle = await stack.start(count=2, payment_method="pm_card_visa_chargeDeclinedLostCard")
    await stack.env.sleep(timedelta(days=15))
    await _new_card(stack, cid)
    await stack.result(handle)
    await _save(stack, "hard-decline-unlock", cid)
    # soft declines retried, pause and resume, a waiver and a settlement
    cid, handle = await stack.start(count=1, payment_method="pm_card_chargeDeclinedProcessingError")
    await stack.env.sleep(timedelta(days=2))
    for path, reason in [("pause", "Kunde im Urlaub"), ("resume", "zurück")]:
        resp = await stack.http.post(
            f"/v1/contracts/{cid}/{path}", json={"reason": reason}, headers=SUPPORT
        )
        assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(days=20))
    actions: list[tuple[str, dict[str, object]]] = [
        ("waivers", {"fees": True, "reason": "Kulanz"}),
        ("settlements", {"amount": 9900, "method": "bank_transfer", "reference": "T-1"}),
    ]
    for path, body in actions:
        resp = await stack.http.post(f"/v1/contracts/{cid}/{path}", json=body, headers=SUPPORT)
        assert resp.status_code == 200, resp.text
    await stack.result(handle)
    await _save(stack, "soft-pause-waive-settle", cid)
    # contested claim: the hand-off waits for an admin
    cid, handle = await stack.start(
        count=1, payment_method="pm_card_visa_chargeDeclinedLostCard", email=unique_email()
    )
    assert (
        await stack.http.post(
            f"/v1/contracts/{cid}/contest", json={"reason": "bestritten"}, headers=SUPPORT
        )
    ).status_code == 200
    await stack.env.sleep(timedelta(days=50))
    assert (
        await stack.http.post(f"/v1/contracts/{cid}/approve-handoff", json={}, headers=ADMIN)
    ).status_code == 200
    await stack.settled(handle, "handed_off")  # since issue 12 the workflow goes on
    await _save(stack, "contested-approved-handoff", cid)
    # a subscription across continue-as-new, then cancelled at period end
    cid, handle = await stack.start(kind="subscription", amount=2900)
    await stack.env.sleep(timedelta(days=14 * 31))
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/cancel", json={"reason": "cancellation_button"}, headers=SUPPORT
    )
    assert resp.status_code == 200, resp.text
    await stack.result(handle)
    await _save(stack, "subscription-cancelled", cid)
    first_run = (
        await stack.env.client.get_workflow_handle(workflow_id_for(cid)).fetch_history()
    ).events[0]
    previous = first_run.workflow_execution_started_event_attributes.continued_execution_run_id
    assert previous, "the subscription should have continued as new"
    await _save(stack, "subscription-first-run", cid, previous)


@pytest.mark.skipif(not RECORD, reason="set MAHNWERK_RECORD_HISTORIES=1 to record")
async def test_record_claim_histories(stack: Stack) -> None:
    """The paths of PATCH_CLAIM (issue 11): recorded once, into files of their own (run with
    `-k test_record_claim_histories`; the histories above are never re-recorded)."""
    lost = "pm_card_visa_chargeDeclinedLostCard"
    await stack.pin_date(6, 15)
    # the whole ladder with the lock step, a new card pays the principal, the rest is
    # claimed by a final notice and stays unpaid
    cid, handle = await stack.start(count=1, payment_method=lost, email=unique_email())
    await stack.env.sleep(timedelta(days=26))
    await _new_card(stack, cid)
    await stack.result(handle)
    await _save_new(stack, "claim-residual-notice", cid)


@pytest.mark.skipif(not RECORD, reason="set MAHNWERK_RECORD_HISTORIES=1 to record")
async def test_record_claim_address_history(stack: Stack) -> None:
    """A court hand-off without the debtor's address waits for it (PATCH_CLAIM)."""
    lost = "pm_card_visa_chargeDeclinedLostCard"
    await stack.pin_date(6, 15)
    body = contract_body(count=1, payment_method=lost, first_due=await stack.today())
    del body["customer"]["address"]
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]
    await stack.env.sleep(timedelta(days=45))
    address = {"line1": "Lindenweg 7", "postal_code": "04109", "city": "Leipzig", "country": "DE"}
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/address", json={"address": address}, headers=SUPPORT
    )
    assert resp.status_code == 200, resp.text
    await stack.settled(stack.temporal.get_workflow_handle(workflow_id_for(cid)), "handed_off")
    await _save_new(stack, "claim-needs-address", cid)


@pytest.mark.skipif(not RECORD, reason="set MAHNWERK_RECORD_HISTORIES=1 to record")
async def test_record_endings_histories(stack: Stack) -> None:
    """The paths of PATCH_ENDINGS (issue 12), recorded once into files of their own (run with
    `-k test_record_endings_histories`; existing files are never re-recorded)."""
    from tests.workflows.test_payments import deliver

    await stack.pin_date(6, 15)
    # a withdrawal in month 2, refunded through Stripe, its charge.refunded delivered (counted
    # once); the contract goes on listening for chargebacks
    cid, handle = await stack.start(count=12, amount=2000, email=unique_email())
    await stack.env.sleep(timedelta(days=35))
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/cancel",
        json={"reason": "withdrawal"},
        headers={**PLATFORM, "Idempotency-Key": f"w-{cid}"},
    )
    assert resp.status_code == 200, resp.text
    pis = {d["payment_intent"] for d in stack.debits(cid)}
    for event in stack.standin.events("charge.refunded"):
        if event["data"]["object"]["payment_intent"] in pis:
            await deliver(stack, event)
    await stack.env.sleep(timedelta(days=40))
    await _save_new(stack, "endings-withdrawal", cid)
    # customer messages: a hard decline (payment failed), the lock, a new card (payment
    # received, access restored), the last installment (plan completed)
    cid, handle = await stack.start(
        count=2, payment_method="pm_card_visa_chargeDeclinedLostCard", email=unique_email()
    )
    await stack.env.sleep(timedelta(days=22))
    await _new_card(stack, cid)
    await stack.result(handle)
    await _save_new(stack, "endings-messages", cid)


@pytest.mark.skipif(not RECORD, reason="set MAHNWERK_RECORD_HISTORIES=1 to record")
async def test_record_after_handoff_histories(stack: Stack, tmp_path: Path) -> None:
    """The paths of PATCH_AFTER_HANDOFF (issue 12), each recorded once into a file of its own
    (`-k test_record_after_handoff_histories`)."""
    from core.settings import PROJECT_ROOT
    from tests.partner import running_partner

    lost = "pm_card_visa_chargeDeclinedLostCard"
    await stack.pin_date(6, 15)
    with running_partner(stack.settings.events_secret.get_secret_value()) as partner:
        stack.settings.collection_url = partner.url
        # the partner is down at the hand-off (a failed round, then the case file goes),
        # then the customer pays the seller in full: recorded, unlocked, the partner told
        partner.down = True
        cid, handle = await stack.start(count=1, payment_method=lost, email=unique_email())
        await stack.env.sleep(timedelta(days=40))
        partner.down = False
        await stack.settled(handle, "handed_off")
        total = (await stack.contract(cid))["claim"]["total"]
        resp = await stack.http.post(
            f"/v1/contracts/{cid}/settlements",
            json={"amount": total, "method": "bank_transfer", "reference": "nach Abgabe"},
            headers=SUPPORT,
        )
        assert resp.status_code == 200 and resp.json()["status"] == "completed", resp.text
        await stack.env.sleep(timedelta(days=1))
        await _save_new(stack, "after-handoff-paid", cid)
        # call_in: not allowed at the hand-off (one installment in arrears), the § 498 notice
        # once the second one fails, then the rest called in
        text = (PROJECT_ROOT / "policies" / "default.yaml").read_text()
        text = text.replace("name: default", "name: callin")
        text = text.replace("on_default: keep_schedule", "on_default: call_in")
        (tmp_path / "callin.yaml").write_text(text)
        stack.settings.policy_dir = tmp_path
        cid, handle = await stack.start(
            count=4, payment_method=lost, policy="callin", interval="P2M", email=unique_email()
        )
        await stack.env.sleep(timedelta(days=92))
        c = await stack.contract(cid)
        assert [i["status"] for i in c["schedule"]] == ["handed_off"] * 4, c["schedule"]
        await _save_new(stack, "after-handoff-call-in", cid)


@pytest.mark.skipif(not RECORD, reason="set MAHNWERK_RECORD_HISTORIES=1 to record")
async def test_record_lean_histories(stack: Stack) -> None:
    """The paths of PATCH_LEAN (issue 17: one marker, the ledger's activities local), each
    recorded once into a file of its own (`-k test_record_lean_histories`)."""
    await stack.pin_date(6, 15)
    # a plan paid in full (invoices, the payment method's lookup, the plan-completed message)
    cid, handle = await stack.start(count=3, email=unique_email())
    await stack.result(handle)
    await _save_new(stack, "lean-plan-paid", cid)
    # a lost card through reminder and Mahnung (interest runs: the base-rate lookup), then a
    # new card from support pays the claim
    cid, handle = await stack.start(
        count=1, payment_method="pm_card_visa_chargeDeclinedLostCard", email=unique_email()
    )
    await stack.env.sleep(timedelta(days=26))
    await _new_card(stack, cid)
    await stack.result(handle)
    await _save_new(stack, "lean-dunning-new-card", cid)
