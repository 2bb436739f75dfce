"""The customer messages beyond dunning (issue 12 item 4) render in both shipped languages,
as text and HTML, with what each is about; the evidence record keeps the message's facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.notice_render import render_notice
from core.settings import Settings, load_settings
from domain.policy import MESSAGE_KINDS
from workflows.types import Customer, MessageInfo, NoticeInput, Product

AT = datetime(2027, 7, 3, 9, 0, tzinfo=UTC)

INFOS = {
    "payment_failed": MessageInfo(
        "payment_failed", AT, installment=2, amount=2000, code="lost_card", failure_class="never"
    ),
    "payment_received": MessageInfo(
        "payment_received", AT, next_due="2027-08-01", next_amount=2000
    ),
    "access_restored": MessageInfo("access_restored", AT, access="granted"),
    "plan_completed": MessageInfo("plan_completed", AT, paid_total=24000),
    "withdrawal_confirmed": MessageInfo(
        "withdrawal_confirmed",
        AT,
        amount=4000,
        reason="withdrawal",
        refund=3000,
        refund_outside=1000,
        cancelled=[3, 4],
        access="none",
    ),
    "refund_confirmed": MessageInfo(
        "refund_confirmed", AT, installment=2, amount=2000, reason="requested_by_customer"
    ),
}
# what each message must say, per language
EXPECTED = {
    ("payment_failed", "de"): ["20,00\u00a0€", "Rate 2 von 12", "nicht mehr belastet", "/pay/"],
    ("payment_failed", "en"): ["€20.00", "Installment 2 of 12", "can no longer be charged"],
    ("payment_received", "de"): ["eingegangen", "1. August 2027", "20,00\u00a0€"],
    ("payment_received", "en"): ["received your payment", "1 August 2027"],
    ("access_restored", "de"): ["wieder freigeschaltet"],
    ("access_restored", "en"): ["has been restored"],
    ("plan_completed", "de"): ["vollständig bezahlt", "240,00\u00a0€"],
    ("plan_completed", "en"): ["paid your contract", "€240.00"],
    ("withdrawal_confirmed", "de"): ["Widerruf", "40,00\u00a0€", "30,00\u00a0€", "Überweisung"],
    ("withdrawal_confirmed", "en"): ["withdrawal", "€40.00", "€10.00 by bank transfer"],
    ("refund_confirmed", "de"): ["20,00\u00a0€", "auf Ihren Wunsch", "für Rate 2 von 12"],
    ("refund_confirmed", "en"): ["€20.00", "at your request", "for Installment 2 of 12"],
}


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        database_url="sqlite://",
        api_keys="platform:shop:platform-key-123",
        stripe_api_key="sk_test_x",
        stripe_webhook_secret="whsec_x",
    )


def _input(kind: str, locale: str) -> NoticeInput:
    return NoticeInput(
        contract_id="ord-1",
        case_no=0,
        stage=kind,
        template=kind,
        customer=Customer("c-1", "Erika Mustermann", "erika@example.org", locale=locale),
        product=Product("course-x", "Kurs X"),
        currency="eur",
        lines=[],
        fees=0,
        total=0,
        deadline=AT,
        created_at=AT,
        interest_mode="none",
        kind="installments",
        count=12,
        message=INFOS[kind],
    )


def test_every_message_kind_has_a_template_case() -> None:
    assert set(INFOS) == set(MESSAGE_KINDS)


@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_message_renders_in_the_customers_language(
    settings: Settings, kind: str, locale: str
) -> None:
    rendered = render_notice(_input(kind, locale), f"MW-ord-1-0-{kind}", settings)
    assert rendered.locale == locale
    for needle in EXPECTED[(kind, locale)]:
        assert needle in rendered.text, (kind, locale, needle, rendered.text)
    assert "ord-1" in rendered.subject and "\n" not in rendered.subject
    assert rendered.html.startswith("<!DOCTYPE html>") and "Erika Mustermann" in rendered.html
    other = "Dear" if locale == "de" else "Guten Tag"
    assert other not in rendered.text
    assert rendered.data["message"]["kind"] == kind
    assert rendered.data["message"]["at"] == AT.isoformat()


@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("kind", ["payment_received", "plan_completed"])
def test_confirmations_link_the_invoices(settings: Settings, kind: str, locale: str) -> None:
    """Issue 15 item 4: the payment confirmation and the plan's completion link the payment
    page's invoice list when the contract has invoices, and say nothing of invoices when
    it has none."""
    invoices = {1: ("RE-000001", "2027-06-01"), 2: ("RE-000002", "2027-07-01")}
    rendered = render_notice(_input(kind, locale), f"MW-ord-1-0-{kind}", settings, invoices)
    word = "Ihre Rechnungen: " if locale == "de" else "Your invoices: "
    found = [line for line in rendered.text.splitlines() if line.startswith(word)]
    assert len(found) == 1, rendered.text
    link = found[0].removeprefix(word)
    assert "/pay/" in link and link.endswith("#invoices") and "ord-1" not in link
    assert f'href="{link}"' in rendered.html
    # the signature stays a paragraph of its own
    assert f"{link}\n\n" in rendered.text
    none = render_notice(_input(kind, locale), f"MW-ord-1-0-{kind}", settings)
    assert word.strip() not in none.text and "#invoices" not in none.html
