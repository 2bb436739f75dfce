"""Issue 12 item 4 on the time-skipping server: the customer messages beyond dunning, each sent
once, in the customer's language, at the moment it is about — read from the SMTP server the
worker sends to (and the notices list, support's view of what was sent)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from core import paylink
from core.settings import PROJECT_ROOT
from tests.conftest import SUPPORT
from tests.stack import Stack, unique_email

LOST = "pm_card_visa_chargeDeclinedLostCard"  # `never`
EXPIRED = "pm_card_chargeDeclinedExpiredCard"  # `fix_data`
SOFT = "pm_card_visa_chargeDeclinedInsufficientFunds"  # `soft`: no message


def subjects(stack: Stack, email: str) -> list[str]:
    return [str(m["Subject"]) for m in stack.mails(email)]


async def test_german_customer_hard_decline_then_new_card_then_plan_completed(
    stack: Stack,
) -> None:
    await stack.pin_date(6, 15)  # no Berlin holiday moves the ladder in the weeks ahead
    email = unique_email()
    cid, handle = await stack.start(count=2, payment_method=LOST, email=email)
    failed = f"Zahlung fehlgeschlagen – bitte Zahlungsmethode aktualisieren – Vertrag {cid}"
    received = f"Zahlung eingegangen – vielen Dank – Vertrag {cid}"
    restored = f"Ihr Zugang zu Kurs X ist wieder freigeschaltet (Vertrag {cid})"
    completed = f"Alle Raten bezahlt – vielen Dank – Vertrag {cid}"

    # A hard decline: the customer hears at once (not days later with the reminder).
    await stack.env.sleep(timedelta(minutes=10))
    assert subjects(stack, email) == [failed]
    mail = stack.mails(email)[0]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "99,00\u00a0€" in text and "nicht mehr belastet werden" in text
    # the signed payment link of this contract (core/paylink.py)
    prefix = stack.settings.payment_link_url.split("{token}")[0]
    token = re.search(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", text)
    assert token is not None, text
    secret = stack.settings.events_secret.get_secret_value()
    assert paylink.verify(secret, token.group(1)).contract_id == cid

    # The ladder goes on (reminder, Mahnung, lock): still one payment_failed.
    await stack.env.sleep(timedelta(days=22))
    c = await stack.contract(cid)
    assert c["access"] == "locked"
    assert subjects(stack, email).count(failed) == 1
    assert received not in subjects(stack, email) and restored not in subjects(stack, email)

    # Support replaces the card: paid, the case closes, access unlocked — told once each.
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/payment-method",
        json={"payment_method": "pm_card_visa"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(minutes=10))
    got = subjects(stack, email)
    assert got.count(received) == 1 and got.count(restored) == 1, got
    assert completed not in got  # installment 2 is not due yet
    body = next(m for m in stack.mails(email) if m["Subject"] == received)
    assert (
        "Die nächste Zahlung über 99,00\u00a0€"
        in body.get_body(preferencelist=("plain",)).get_content()
    )

    # Installment 2 is paid when due: the plan is complete — told once.
    await stack.env.sleep(timedelta(days=15))
    assert (await stack.contract(cid))["status"] == "completed"
    got = subjects(stack, email)
    assert got.count(completed) == 1
    assert got.count(received) == 1 and got.count(restored) == 1 and got.count(failed) == 1
    notices = await stack.http.get(f"/v1/contracts/{cid}/notices", headers=SUPPORT)
    stages = [n["stage"] for n in notices.json()["data"]]
    assert stages.count("plan_completed") == 1 and "payment_received_1" in stages
    assert (await stack.result(handle)).status == "completed"


async def test_english_customer_expired_card_settles_before_the_lock(stack: Stack) -> None:
    await stack.pin_date(6, 15)
    email = unique_email()
    cid, _ = await stack.start(count=2, payment_method=EXPIRED, email=email, locale="en")
    failed = f"Payment failed – please update your payment method – contract {cid}"
    received = f"Payment received – thank you – contract {cid}"
    await stack.env.sleep(timedelta(minutes=10))
    assert subjects(stack, email) == [failed]
    text = stack.mails(email)[0].get_body(preferencelist=("plain",)).get_content()
    assert "€99.00" in text and "no longer valid" in text

    # a bank transfer of the whole claim on day 5 (the reminder came on day 3)
    await stack.env.sleep(timedelta(days=5))
    claim = (await stack.contract(cid))["claim"]
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": claim["total"], "method": "bank_transfer", "reference": "T-1"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(minutes=10))
    got = subjects(stack, email)
    # paid, but access was never locked: no "access restored"
    assert got.count(received) == 1 and not any("restored" in s for s in got), got
    assert all("Zahlung" not in s for s in got)  # everything in English


async def test_a_soft_decline_sends_no_message(stack: Stack) -> None:
    email = unique_email()
    cid, _ = await stack.start(count=1, payment_method=SOFT, email=email)
    await stack.env.sleep(timedelta(hours=12))
    assert subjects(stack, email) == []  # retried later; the ladder's reminder speaks first


async def test_messages_can_be_switched_off_in_the_policy(stack: Stack, tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "policies" / "default.yaml").read_text()
    text = text.replace("name: default", "name: quiet") + (
        "messages:\n  payment_failed: false\n  plan_completed: false\n"
    )
    (tmp_path / "quiet.yaml").write_text(text)
    stack.settings.policy_dir = tmp_path
    email = unique_email()
    cid, _ = await stack.start(count=1, payment_method=LOST, email=email, policy="quiet")
    await stack.env.sleep(timedelta(hours=1))
    assert subjects(stack, email) == []
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning"  # the decline happened; only the message is off
