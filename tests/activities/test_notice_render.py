"""Notice rendering: what the customer reads, in German and English, text and HTML."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from activities.notice_render import (
    NoticeInputError,
    NoticeTemplateError,
    RenderedNotice,
    normalize_locale,
    render_notice,
)
from core.settings import Settings
from workflows.types import ClaimLine, Customer, NoticeInput, Product

STAGES = ("reminder", "mahnung_1", "mahnung_2", "access_locked", "handoff")
NUMBER = "MW-ord-2026-0001-1-mahnung_1"


def make_settings(template_dir: Path | None = None) -> Settings:
    return Settings(
        seller_name="Lernwerk & Söhne GmbH",
        seller_address="Hauptstraße 5, 80331 München",
        seller_email="buchhaltung@lernwerk.example",
        payment_link_url="https://pay.lernwerk.example/update?contract={contract_id}",
        mail_from="Lernwerk <billing@lernwerk.example>",
        template_dir=template_dir,
    )


def make_input(
    stage: str = "mahnung_1",
    *,
    locale: str = "de",
    name: str = "Erika Mustermann",
    fees: int | None = None,
    lines: list[ClaimLine] | None = None,
    product: str = "Kurs X",
) -> NoticeInput:
    if lines is None:
        lines = [
            # 1 Dec 2026 00:00 in Berlin is 30 Nov 23:00 UTC: the notice must say 01.12.2026.
            ClaimLine("installment 3 of 6", 3, datetime(2026, 11, 30, 23, tzinfo=UTC), 123456),
            ClaimLine("installment 4 of 6", 4, datetime(2026, 12, 31, 23, tzinfo=UTC), 9900),
        ]
    if fees is None:
        fees = 0 if stage == "reminder" else 250
    return NoticeInput(
        contract_id="ord-2026-0001",
        case_no=1,
        stage=stage,
        template=stage,
        customer=Customer(
            id="cus-42",
            name=name,
            email="erika@example.org",
            locale=locale,
            address={
                "line1": "Musterstr. 1",
                "postal_code": "10115",
                "city": "Berlin",
                "country": "DE",
            },
        ),
        product=Product(id="course-x", name=product),
        currency="eur",
        lines=lines,
        fees=fees,
        total=sum(line.amount for line in lines) + fees,
        deadline=datetime(2027, 1, 20, 12, tzinfo=UTC),
        created_at=datetime(2027, 1, 10, 9, tzinfo=UTC),
    )


def plain(s: str) -> str:
    """Collapse whitespace (HTML wraps lines; CLDR may use no-break spaces)."""
    return " ".join(s.replace("\u00a0", " ").replace("\u202f", " ").split())


EXPECTED: dict[str, dict[str, Any]] = {
    "de": {
        "lines": [
            "Rate 3 von 6 — fällig am 01.12.2026 — 1.234,56 €",
            "Rate 4 von 6 — fällig am 01.01.2027 — 99,00 €",
        ],
        "fees": "Mahngebühren — 2,50 €",
        "total_fees": "Gesamtbetrag — 1.336,06 €",
        "total_free": "Gesamtbetrag — 1.333,56 €",
        "deadline": "20. Januar 2027",
        "notice_date": "10. Januar 2027",
        "titles": {
            "reminder": "Zahlungserinnerung",
            "mahnung_1": "1. Mahnung",
            "mahnung_2": "Letzte Mahnung",
            "access_locked": "Sperrung Ihres Zugangs",
            "handoff": "Forderung",
        },
        "free": "kostenfrei",
    },
    "en": {
        "lines": [
            "Installment 3 of 6 — due on 1 December 2026 — €1,234.56",
            "Installment 4 of 6 — due on 1 January 2027 — €99.00",
        ],
        "fees": "Dunning fees — €2.50",
        "total_fees": "Total — €1,336.06",
        "total_free": "Total — €1,333.56",
        "deadline": "20 January 2027",
        "notice_date": "10 January 2027",
        "titles": {
            "reminder": "Payment reminder",
            "mahnung_1": "First dunning notice",
            "mahnung_2": "Final dunning notice",
            "access_locked": "locked",
            "handoff": "handed over",
        },
        "free": "free of charge",
    },
}


def html_has(html: str, text: str) -> bool:
    """`text` appears in the HTML as the reader sees it (escaped where it must be)."""
    return plain(str(escape(text))) in plain(html)


@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_renders_the_full_notice(stage: str, locale: str) -> None:
    settings = make_settings()
    inp = make_input(stage, locale=locale)
    r = render_notice(inp, NUMBER, settings)
    exp = EXPECTED[locale]

    assert "\n" not in r.subject
    assert exp["titles"][stage] in r.subject
    assert "ord-2026-0001" in r.subject
    assert r.locale == locale

    text = plain(r.text)
    html = r.html
    for must in [
        "Lernwerk & Söhne GmbH",
        "Hauptstraße 5, 80331 München",
        "buchhaltung@lernwerk.example",
        "Erika Mustermann",
        "Musterstr. 1",
        "10115 Berlin",
        "Kurs X",
        "ord-2026-0001",
        NUMBER,
        exp["deadline"],
        exp["notice_date"],
        "https://pay.lernwerk.example/update?contract=ord-2026-0001",
    ]:
        assert must in text, f"{must!r} missing from {stage}/{locale} text"
        assert html_has(html, must), f"{must!r} missing from {stage}/{locale} HTML"
    assert exp["titles"][stage] in text
    assert exp["titles"][stage] in plain(html)

    for line in exp["lines"]:
        assert line in text
    # In HTML the label and due date are one cell, the amount the next one.
    for line in exp["lines"]:
        label_due, amount = line.rsplit(" — ", 1)
        assert html_has(html, label_due) and html_has(html, amount)

    if stage == "reminder":
        assert exp["free"] in text and exp["free"] in plain(html)
        assert exp["fees"] not in text
        assert exp["total_free"] in text
    else:
        assert exp["fees"] in text
        assert exp["total_fees"] in text
        fee_label, fee_amount = exp["fees"].split(" — ")
        assert html_has(html, fee_label) and html_has(html, fee_amount)
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in html


def test_final_notice_announces_the_legal_steps() -> None:
    de = plain(render_notice(make_input("mahnung_2"), NUMBER, make_settings()).text)
    assert "gerichtlichen Mahnverfahren" in de and "Inkasso" in de
    assert "letztmalig" in de
    en = plain(render_notice(make_input("mahnung_2", locale="en"), NUMBER, make_settings()).text)
    assert "court dunning procedure" in en and "debt collection agency" in en


def test_access_locked_notice_says_access_is_locked_and_unlocks_on_payment() -> None:
    text = plain(render_notice(make_input("access_locked"), NUMBER, make_settings()).text)
    assert "haben wir Ihren Zugang zu „Kurs X“ gesperrt" in text
    assert "automatisch wieder freigeschaltet" in text


def test_customer_name_is_escaped_in_html_but_not_in_text() -> None:
    r = render_notice(make_input(name="<b>Eve & Co</b>"), NUMBER, make_settings())
    assert "&lt;b&gt;Eve &amp; Co&lt;/b&gt;" in r.html
    assert "<b>Eve" not in r.html
    assert "Guten Tag <b>Eve & Co</b>," in r.text
    # The seller's "&" too: HTML is escaped everywhere, text nowhere.
    assert "Lernwerk &amp; Söhne GmbH" in r.html
    assert "Lernwerk & Söhne GmbH" in r.text


def test_product_names_with_markup_and_newlines_cannot_break_the_subject() -> None:
    r = render_notice(
        make_input("reminder", product="Kurs <X>\nBcc: a@b.c"), NUMBER, make_settings()
    )
    assert "\n" not in r.subject and "\r" not in r.subject
    assert "Kurs &lt;X&gt;" in r.html


def test_one_off_purchase_is_labelled_with_the_product() -> None:
    lines = [ClaimLine("one-off payment", 1, datetime(2026, 11, 30, 23, tzinfo=UTC), 49700)]
    r = render_notice(
        make_input("reminder", lines=lines, product="Coaching Paket"), NUMBER, make_settings()
    )
    assert "Coaching Paket — fällig am 01.12.2026 — 497,00\u00a0€" in r.text
    assert "Rate" not in r.text


def test_subscription_periods_and_unknown_labels() -> None:
    lines = [
        ClaimLine("period 4", 4, datetime(2026, 11, 30, 23, tzinfo=UTC), 2900),
        ClaimLine("Sonderposten", 5, datetime(2026, 11, 30, 23, tzinfo=UTC), 100),
    ]
    r = render_notice(make_input("reminder", lines=lines, locale="en"), NUMBER, make_settings())
    assert "Subscription period 4 — due on 1 December 2026 — €29.00" in r.text
    assert "Sonderposten — due on 1 December 2026 — €1.00" in r.text


def test_costs_route_and_interest_paid_are_used_when_the_input_carries_them() -> None:
    """Legacy inputs (no claim): `interest_paid` and `route` are NoticeInput fields; a
    subclass may carry `costs`."""

    @dataclasses.dataclass
    class WithExtras(NoticeInput):
        costs: int = 0

    base = interest_input("mahnung_2", created=datetime(2025, 7, 20, 10, tzinfo=UTC))
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(NoticeInput)}
    fields["interest_paid"] = 20
    fields["route"] = "court"
    inp = WithExtras(**fields, costs=300)
    inp.total += 300  # the workflow's total includes the costs
    r = render_notice(inp, NUMBER, make_settings())
    text = plain(r.text)
    assert "Weitere Kosten — 3,00 €" in text
    assert "Mahnbescheids im gerichtlichen Mahnverfahren beantragen" in text
    assert "Inkassounternehmen" not in text
    # 64 ct interest (see the consumer test) less 20 ct already received = 44 ct.
    assert "Verzugszinsen auf Rate 1 von 3 vom 16.06.2025 bis 20.07.2025 — 0,64 €" in text
    assert "Bereits gezahlte Verzugszinsen — −0,20 €" in text
    assert "Gesamtbetrag — 105,94 €" in text  # 100,00 + 2,50 + 3,00 + 0,44
    assert r.data["interest"] == 44
    assert r.data["interest_detail"]["computed"] == 64
    assert r.data["interest_detail"]["paid"] == 20
    assert r.data["total"] == 10000 + 250 + 300 + 44


# -- statutory default interest (§ 288 BGB) -------------------------------------------------

# 15 June 2025 00:00 in Berlin: the installment falls due that day, interest runs from the
# 16th (§ 187 (1) BGB). The § 247 base rate was 2,27 % until 30 June 2025, 1,27 % from 1 July.
DUE_2025_06_15 = datetime(2025, 6, 14, 22, tzinfo=UTC)


def interest_input(
    stage: str = "mahnung_1",
    *,
    locale: str = "de",
    customer_type: str = "consumer",
    created: datetime,
    lines: list[ClaimLine] | None = None,
    interest_mode: str = "statutory",
) -> NoticeInput:
    if lines is None:
        lines = [ClaimLine("installment 1 of 3", 1, DUE_2025_06_15, 10000)]
    inp = make_input(stage, locale=locale, lines=lines)
    return dataclasses.replace(
        inp,
        customer=dataclasses.replace(inp.customer, type=customer_type),
        created_at=created,
        deadline=created + timedelta(days=10),
        interest_mode=interest_mode,
    )


RENDERED_2025_07_20 = datetime(2025, 7, 20, 8, tzinfo=UTC)  # 20.07.2025 in Berlin

INTEREST_EXPECTED: dict[tuple[str, str], list[str]] = {
    # Consumer, base + 5 pp (§ 288 (1) BGB), on 100,00 €:
    #   16.06.–30.06.2025: 10000 ct × 7,27 % × 15/365 = 109050/365 ct = 29,876 ct
    #   01.07.–20.07.2025: 10000 ct × 6,27 % × 20/365 = 125400/365 ct = 34,356 ct
    #   sum 234450/365 = 64,23 ct → 64 ct (rounded once, half-up)
    ("consumer", "de"): [
        "Verzugszinsen auf Rate 1 von 3 vom 16.06.2025 bis 20.07.2025 — 0,64 €",
        "16.06.2025 bis 30.06.2025, 15 Tage: 7,27 % (5 Prozentpunkte über dem Basiszinssatz)",
        "01.07.2025 bis 20.07.2025, 20 Tage: 6,27 % (5 Prozentpunkte über dem Basiszinssatz)",
        "Gesamtbetrag — 103,14 €",  # 100,00 + 2,50 fee + 0,64
        "Verzugszinsen gem. § 288 Abs. 1 BGB bis zum 20. Juli 2025",
    ],
    ("consumer", "en"): [
        "Default interest on Installment 1 of 3 from 16 June 2025 to 20 July 2025 — €0.64",
        "16 June 2025 to 30 June 2025, 15 days: 7.27% (5 percentage points above the base rate)",
        "1 July 2025 to 20 July 2025, 20 days: 6.27% (5 percentage points above the base rate)",
        "Total — €103.14",
        "Default interest under § 288 (1) BGB up to 20 July 2025",
    ],
    # Business, base + 9 pp (§ 288 (2) BGB), on 100,00 €:
    #   16.06.–30.06.2025: 10000 ct × 11,27 % × 15/365 = 169050/365 ct = 46,315 ct
    #   01.07.–20.07.2025: 10000 ct × 10,27 % × 20/365 = 205400/365 ct = 56,274 ct
    #   sum 374450/365 = 102,59 ct → 103 ct
    ("business", "de"): [
        "Verzugszinsen auf Rate 1 von 3 vom 16.06.2025 bis 20.07.2025 — 1,03 €",
        "16.06.2025 bis 30.06.2025, 15 Tage: 11,27 % (9 Prozentpunkte über dem Basiszinssatz)",
        "01.07.2025 bis 20.07.2025, 20 Tage: 10,27 % (9 Prozentpunkte über dem Basiszinssatz)",
        "Gesamtbetrag — 103,53 €",
        "Verzugszinsen gem. § 288 Abs. 2 BGB bis zum 20. Juli 2025",
    ],
    ("business", "en"): [
        "Default interest on Installment 1 of 3 from 16 June 2025 to 20 July 2025 — €1.03",
        "16 June 2025 to 30 June 2025, 15 days: 11.27% (9 percentage points above the base rate)",
        "1 July 2025 to 20 July 2025, 20 days: 10.27% (9 percentage points above the base rate)",
        "Total — €103.53",
        "Default interest under § 288 (2) BGB up to 20 July 2025",
    ],
}


@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("customer_type", ["consumer", "business"])
def test_interest_per_line_over_the_base_rate_change(customer_type: str, locale: str) -> None:
    inp = interest_input(locale=locale, customer_type=customer_type, created=RENDERED_2025_07_20)
    r = render_notice(inp, NUMBER, make_settings())
    text, html = plain(r.text), plain(r.html)
    for must in INTEREST_EXPECTED[(customer_type, locale)]:
        assert must in text, f"{must!r} missing from the {customer_type}/{locale} text"
    label, amount = INTEREST_EXPECTED[(customer_type, locale)][0].rsplit(" — ", 1)
    assert html_has(r.html, label) and html_has(r.html, amount)
    for period in INTEREST_EXPECTED[(customer_type, locale)][1:3]:
        assert html_has(r.html, period)
    total_label, total = INTEREST_EXPECTED[(customer_type, locale)][3].split(" — ")
    assert html_has(r.html, total)
    # The payment request asks for the same total as the itemised claim.
    assert text.count(total) >= 2 and total in html
    interest = 64 if customer_type == "consumer" else 103
    assert r.data["interest"] == interest
    assert r.data["total"] == 10000 + 250 + interest
    assert r.data["interest_shown"] is True


def test_the_friendly_reminder_shows_no_interest_but_the_first_mahnung_does() -> None:
    reminder = render_notice(
        interest_input("reminder", created=RENDERED_2025_07_20), NUMBER, make_settings()
    )
    text = plain(reminder.text)
    assert "Verzugszinsen" not in text and "Verzugszinsen" not in reminder.html
    assert "Gesamtbetrag — 100,00 €" in text
    assert "Gesamtbetrag von 100,00 €" in text
    # What was sent is recorded: no interest claimed; the computation is kept anyway.
    assert reminder.data["interest_shown"] is False
    assert reminder.data["interest"] == 0
    assert reminder.data["total"] == 10000
    assert reminder.data["interest_detail"]["total"] == 64

    mahnung = render_notice(interest_input(created=RENDERED_2025_07_20), NUMBER, make_settings())
    text = plain(mahnung.text)
    assert "Verzugszinsen auf Rate 1 von 3" in text
    assert "Gesamtbetrag — 103,14 €" in text
    assert "Gesamtbetrag von 103,14 €" in text
    assert mahnung.data["interest_shown"] is True


@pytest.mark.parametrize("stage", ["mahnung_2", "handoff"])
def test_final_notice_and_handoff_show_interest(stage: str) -> None:
    r = render_notice(interest_input(stage, created=RENDERED_2025_07_20), NUMBER, make_settings())
    text = plain(r.text)
    assert "Verzugszinsen auf Rate 1 von 3 vom 16.06.2025 bis 20.07.2025 — 0,64 €" in text
    # the itemised total and the payment request in the body ("Gesamtbetrag(s) von …")
    assert "Gesamtbetrag — 103,14 €" in text
    assert "von 103,14 € bis" in text
    assert html_has(r.html, "103,14 €")
    assert "Verzugszinsen in gesetzlicher Höhe (§ 288 BGB)" in text


def test_access_locked_notice_shows_no_interest() -> None:
    inp = interest_input("access_locked", created=RENDERED_2025_07_20)
    text = plain(render_notice(inp, NUMBER, make_settings()).text)
    assert "Verzugszinsen" not in text
    assert "Gesamtbetrag — 102,50 €" in text


@pytest.mark.parametrize("mode", ["waived", "none"])
@pytest.mark.parametrize("locale", ["de", "en"])
def test_waived_or_no_interest_shows_none(mode: str, locale: str) -> None:
    for stage in ("mahnung_1", "mahnung_2", "handoff"):
        inp = interest_input(stage, locale=locale, created=RENDERED_2025_07_20, interest_mode=mode)
        r = render_notice(inp, NUMBER, make_settings())
        text = plain(r.text)
        word = "Verzugszinsen" if locale == "de" else "default interest"
        assert word not in text.replace("Default", "default"), f"{stage}: {text}"
        assert word not in r.html.replace("Default", "default")
        assert ("Gesamtbetrag — 102,50 €" if locale == "de" else "Total — €102.50") in text
        assert r.data["interest"] == 0 and r.data["total"] == 10250
        assert r.data["interest_detail"]["status"] == mode
        assert r.data["interest_detail"]["items"] == []


# A claim line due 15 June 2026, rendered on 1 August 2026: the days from 1 July 2026 need the
# § 247 base rate of 1 July 2026, which the table does not have (domain/interest.py).
DUE_2026_06_15 = datetime(2026, 6, 14, 22, tzinfo=UTC)
RENDERED_2026_08_01 = datetime(2026, 8, 1, 8, tzinfo=UTC)
SEPARATELY = {
    "de": "Verzugszinsen gem. § 288 BGB werden gesondert berechnet",
    "en": "Default interest under § 288 BGB will be calculated separately",
}


@pytest.mark.parametrize("locale", ["de", "en"])
def test_missing_base_rate_is_never_guessed(locale: str, caplog: pytest.LogCaptureFixture) -> None:
    lines = [ClaimLine("installment 2 of 3", 2, DUE_2026_06_15, 10000)]
    inp = interest_input(locale=locale, created=RENDERED_2026_08_01, lines=lines)
    with caplog.at_level("WARNING", logger="activities.notice_render"):
        r = render_notice(inp, NUMBER, make_settings())
    text = plain(r.text)
    assert SEPARATELY[locale] in text and html_has(r.html, SEPARATELY[locale])
    assert ("Gesamtbetrag — 102,50 €" if locale == "de" else "Total — €102.50") in text
    assert "%" not in text  # no rate at all, let alone a guessed one
    warnings = [rec for rec in caplog.records if rec.levelname == "WARNING"]
    assert len(warnings) == 1  # once per render, not per part or line
    assert "2026-07-01" in warnings[0].getMessage()
    detail = r.data["interest_detail"]
    assert detail["status"] == "unavailable"
    assert detail["missing_base_rate"] == "2026-07-01"
    assert detail["needed_for"] == "2026-07-01"
    assert r.data["interest"] == 0 and r.data["total"] == 10250


@pytest.mark.parametrize("locale", ["de", "en"])
def test_configured_base_rate_gives_an_amount(locale: str) -> None:
    lines = [ClaimLine("installment 2 of 3", 2, DUE_2026_06_15, 10000)]
    inp = interest_input(locale=locale, created=RENDERED_2026_08_01, lines=lines)
    settings = make_settings().model_copy(update={"base_rates": "2026-07-01:127"})
    assert settings.extra_base_rates  # MAHNWERK_BASE_RATES=2026-07-01:127
    r = render_notice(inp, NUMBER, settings)
    text = plain(r.text)
    assert SEPARATELY[locale] not in text
    # 16.06.–01.08.2026 = 15 + 32 = 47 days, all at 1,27 % + 5 pp = 6,27 % (the same base
    # rate on both sides of 1 July, so one period):
    #   10000 ct × 6,27 % × 47/365 = 294690/365 ct = 80,74 ct → 81 ct
    if locale == "de":
        assert "Verzugszinsen auf Rate 2 von 3 vom 16.06.2026 bis 01.08.2026 — 0,81 €" in text
        assert "16.06.2026 bis 01.08.2026, 47 Tage: 6,27 % (5 Prozentpunkte" in text
        assert "Gesamtbetrag — 103,31 €" in text
    else:
        assert (
            "Default interest on Installment 2 of 3 from 16 June 2026 to 1 August 2026 — €0.81"
            in text
        )
        assert "16 June 2026 to 1 August 2026, 47 days: 6.27% (5 percentage points" in text
        assert "Total — €103.31" in text
    assert r.data["interest_detail"]["base_rates_configured"] == "2026-07-01:127"
    assert r.data["interest"] == 81


def test_only_lines_in_default_get_an_interest_line() -> None:
    lines = [
        ClaimLine("installment 1 of 3", 1, DUE_2025_06_15, 10000),
        # due on the notice date itself: not in default yet, no interest line
        ClaimLine("installment 2 of 3", 2, datetime(2025, 7, 19, 22, tzinfo=UTC), 10000),
    ]
    r = render_notice(
        interest_input(created=RENDERED_2025_07_20, lines=lines), NUMBER, make_settings()
    )
    text = plain(r.text)
    assert "Verzugszinsen auf Rate 1 von 3" in text
    assert "Verzugszinsen auf Rate 2 von 3" not in text
    assert "Gesamtbetrag — 203,14 €" in text
    assert [item["amount"] for item in r.data["interest_detail"]["items"]] == [64, 0]


def test_evidence_records_the_interest_computation() -> None:
    inp = interest_input(customer_type="business", created=RENDERED_2025_07_20)
    detail = render_notice(inp, NUMBER, make_settings()).data["interest_detail"]
    assert detail["status"] == "computed"
    assert detail["as_of"] == "2025-07-20"
    assert detail["customer_type"] == "business"
    assert detail["rate_text"] == "9 Prozentpunkte über dem Basiszinssatz (§ 288 Abs. 2 BGB)"
    [item] = detail["items"]
    assert item | {"periods": None} == {
        "seq": 1,
        "label": "Rate 1 von 3",
        "principal": 10000,
        "due_date": "2025-06-15",
        "from": "2025-06-16",
        "to": "2025-07-20",
        "days": 35,
        "amount": 103,
        "exact": "7489/73",  # 374450/365 ct, reduced
        "periods": None,
    }
    assert [
        (p["from"], p["to"], p["days"], p["base_rate_bp"], p["rate_bp"]) for p in item["periods"]
    ] == [
        ("2025-06-16", "2025-06-30", 15, 227, 1127),
        ("2025-07-01", "2025-07-20", 20, 127, 1027),
    ]
    assert detail["total"] == 103


def test_unknown_interest_mode_or_customer_type_is_an_input_error() -> None:
    with pytest.raises(NoticeInputError, match="interest_mode"):
        render_notice(
            interest_input(created=RENDERED_2025_07_20, interest_mode="maybe"),
            NUMBER,
            make_settings(),
        )
    with pytest.raises(NoticeInputError, match="customer_type"):
        render_notice(
            interest_input(created=RENDERED_2025_07_20, customer_type="government"),
            NUMBER,
            make_settings(),
        )


def test_an_override_can_use_the_interest_summary(tmp_path: Path) -> None:
    """A seller's own `_claim.txt` can show interest in one line and decides the total."""
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "_claim.txt").write_text(
        "{% for line in lines %}* {{ line.label }}: {{ line.amount }}\n{% endfor %}"
        "{% if show_interest and interest_minor %}* Zinsen {{ interest_basis }} "
        "({{ interest_from }}–{{ interest_to }}): {{ interest }}\n{% endif %}"
        "Summe: {{ total if show_interest else subtotal }}\n",
        encoding="utf-8",
    )
    settings = make_settings(template_dir=tmp_path)
    text = render_notice(interest_input(created=RENDERED_2025_07_20), NUMBER, settings).text
    assert "* Zinsen § 288 Abs. 1 BGB (16.06.2025–20.07.2025): 0,64\u00a0€" in text
    assert "Summe: 103,14\u00a0€" in text
    reminder = interest_input("reminder", created=RENDERED_2025_07_20)
    text = render_notice(reminder, NUMBER, settings).text
    assert "Zinsen" not in text and "Summe: 100,00\u00a0€" in text


@pytest.mark.parametrize(
    ("given", "rendered"),
    [("de", "de"), ("de-AT", "de"), ("en_GB", "en"), ("EN", "en"), ("fr", "de"), ("", "de")],
)
def test_locale_normalisation_and_fallback_to_german(given: str, rendered: str) -> None:
    assert normalize_locale(given) == rendered
    r = render_notice(make_input("reminder", locale=given), NUMBER, make_settings())
    assert r.locale == rendered
    assert ("Zahlungserinnerung" if rendered == "de" else "Payment reminder") in r.subject


def test_unknown_template_is_a_clear_error() -> None:
    inp = dataclasses.replace(make_input(), template="mahnung_9")
    with pytest.raises(NoticeTemplateError, match="mahnung_9"):
        render_notice(inp, NUMBER, make_settings())


def test_template_names_cannot_escape_the_template_dir() -> None:
    inp = dataclasses.replace(make_input(), template="../../etc/passwd")
    with pytest.raises(NoticeTemplateError, match="invalid"):
        render_notice(inp, NUMBER, make_settings())


def test_override_dir_takes_precedence_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "mahnung_1.subject.txt").write_text(
        "Mahnung {{ notice_number }} von {{ seller.name }}\n", encoding="utf-8"
    )
    (tmp_path / "de" / "_claim.txt").write_text(
        "{% for line in lines %}* {{ line.label }}: {{ line.amount }}\n{% endfor %}"
        "Summe: {{ total }}\n",
        encoding="utf-8",
    )
    r = render_notice(make_input(), NUMBER, make_settings(template_dir=tmp_path))
    assert r.subject == f"Mahnung {NUMBER} von Lernwerk & Söhne GmbH"
    assert "* Rate 3 von 6: 1.234,56\u00a0€" in r.text  # the overridden partial
    assert "1. Mahnung" in r.text  # the shipped body around it
    # Without the override the shipped templates are used again.
    shipped = render_notice(make_input(), NUMBER, make_settings())
    assert shipped.subject.startswith("1. Mahnung")


def test_override_dir_can_add_a_new_notice(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    for part, body in {
        "subject.txt": "Vorankündigung {{ contract_id }}",
        "txt": "Hallo {{ customer.name }}, {{ total }} bis {{ deadline }}.",
        "html": "<p>Hallo {{ customer.name }}</p>",
    }.items():
        (tmp_path / "de" / f"vorab.{part}").write_text(body, encoding="utf-8")
    inp = dataclasses.replace(make_input(name="A & B"), template="vorab")
    r = render_notice(inp, NUMBER, make_settings(template_dir=tmp_path))
    assert r.subject == "Vorankündigung ord-2026-0001"
    assert r.text == "Hallo A & B, 1.336,06\u00a0€ bis 20. Januar 2027."
    assert r.html == "<p>Hallo A &amp; B</p>"


def test_rendering_is_deterministic_and_records_the_claim() -> None:
    a = render_notice(make_input(), NUMBER, make_settings())
    b = render_notice(make_input(), NUMBER, make_settings())
    assert isinstance(a, RenderedNotice)
    assert (a.subject, a.text, a.html) == (b.subject, b.text, b.html)
    assert a.data["total"] == 123456 + 9900 + 250
    assert a.data["fees"] == 250
    assert [line["label"] for line in a.data["lines"]] == ["Rate 3 von 6", "Rate 4 von 6"]
    assert a.data["payment_link"] == "https://pay.lernwerk.example/update?contract=ord-2026-0001"


# -- notices read the claim (issue 11) --------------------------------------------------------


def claim_input(stage: str, claim: Any, *, locale: str = "de", kind: str = "consumer") -> Any:
    """A notice input as the workflow builds it: the claim, typed fields, no labels."""
    from domain.schedule import due_instant

    inp = make_input(stage, locale=locale)
    inp.customer.type = kind
    inp.lines = [
        ClaimLine("", item.installment, due_instant(item.due), item.principal)
        for item in claim.items
        if item.principal
    ]
    inp.fees, inp.total = claim.fees, claim.total
    inp.claim = claim
    inp.kind, inp.count = "installments", 6
    inp.deadline_day, inp.deadline_shift_reason = "2026-04-13", "Ostermontag"
    inp.created_at = datetime(2026, 3, 31, 8, tzinfo=UTC)
    return inp


def test_a_notice_prints_the_claim_costs_and_fees_apart() -> None:
    from domain.claim import (
        RETURN_DEBIT,
        ClaimFacts,
        CostFact,
        FeeFact,
        InstallmentFact,
        compute_claim,
    )

    # SEPA return (3,50 € bank costs) and two Mahnungen (2 × 2,50 €), consumer; as of
    # 2026-03-31: 30 interest days on 99,00 € at 6,27 %: 9,900 × 627 × 30 / 3,650,000 =
    # 51.02 → 0,51 €; total 99,00 + 0,51 + 5,00 + 3,50 = 108,01 € (tests/domain).
    facts = ClaimFacts(
        "consumer",
        [InstallmentFact(1, "2026-03-01", 9_900)],
        fees=[
            FeeFact("1:mahnung_1", "2026-03-15", 250, stage="mahnung_1"),
            FeeFact("1:mahnung_2", "2026-03-25", 250, stage="mahnung_2"),
        ],
        costs=[CostFact("return:pi_1", "2026-03-06", 350, kind=RETURN_DEBIT, installment=1)],
    )
    claim = compute_claim(facts, "2026-03-31")
    r = render_notice(claim_input("mahnung_2", claim), NUMBER, make_settings())
    text = plain(r.text)
    assert "Rate 1 von 6 — fällig am 01.03.2026 — 99,00 €" in text  # typed, not parsed
    assert "Mahngebühren — 5,00 €" in text and "Rücklastschriftkosten — 3,50 €" in text
    assert "Weitere Kosten" not in text
    assert "Verzugszinsen auf Rate 1 von 6 vom 02.03.2026 bis 31.03.2026 — 0,51 €" in text
    assert "Gesamtbetrag — 108,01 €" in text
    assert "bis spätestens 13. April 2026" in text  # the last day to pay, as given
    assert r.data["total"] == claim.total == 10_801 and r.data["interest"] == 51
    assert r.data["claim"]["costs"] == 350 and r.data["deadline_day"] == "2026-04-13"
    assert r.data["created_at"] == "2026-03-31T08:00:00+00:00"
    # every notice asks for the claim as it is, the reminder too (interest included)
    reminder = render_notice(claim_input("reminder", claim), NUMBER, make_settings())
    assert "Gesamtbetrag — 108,01 €" in plain(reminder.text)
    assert reminder.data["total"] == claim.total
    assert "kostenfrei" not in plain(reminder.text)  # fees and costs are claimed


def test_a_business_notice_shows_the_lump_sum_and_what_was_credited() -> None:
    from domain.claim import ClaimFacts, FeeFact, InstallmentFact, compute_claim

    # Business, 99,00 € due 2026-03-01: the § 288 (5) lump sum of 40,00 € from 2026-03-02;
    # the 2,50 € Mahnung fee is credited against it (sentence 3): open fees 0, lump sum
    # 40,00 €. Interest 30 days at 10,27 %: 9,900 × 1,027 × 30 / 3,650,000 = 83.57 → 0,84 €.
    facts = ClaimFacts(
        "business",
        [InstallmentFact(1, "2026-03-01", 9_900)],
        fees=[FeeFact("1:mahnung_1", "2026-03-15", 250, stage="mahnung_1")],
    )
    claim = compute_claim(facts, "2026-03-31")
    assert (claim.fees, claim.lump_sums, claim.credited, claim.interest) == (0, 4_000, 250, 84)
    for locale, lump, credit in (
        ("de", "Verzugspauschale § 288 Abs. 5 BGB — 40,00 €", "2,50 € sind auf die"),
        ("en", "Late-payment lump sum (section 288 (5) BGB) — €40.00", "€2.50 are credited"),
    ):
        inp = claim_input("mahnung_1", claim, locale=locale, kind="business")
        text = plain(render_notice(inp, NUMBER, make_settings()).text)
        assert lump in text and credit in text, text
        assert ("139,84 €" if locale == "de" else "€139.84") in text  # 99 + 0,84 + 40


INVOICES = {3: ("RE-000007", "2026-12-01"), 4: ("RE-000009", "2027-01-01")}


@pytest.mark.parametrize("stage", ["reminder", "mahnung_1", "mahnung_2", "handoff"])
@pytest.mark.parametrize("locale", ["de", "en"])
def test_notices_link_the_payment_pages_invoice_list(stage: str, locale: str) -> None:
    """Issue 15 item 4: a notice that claims invoiced installments links the payment page's
    invoice list (the same signed link, `#invoices`); without invoices, or with a payment
    link of the platform's own, there is no such line."""
    own = make_settings().model_copy(
        update={"payment_link_url": "https://mahnwerk.lernwerk.example/pay/{token}"}
    )
    r = render_notice(make_input(stage, locale=locale), NUMBER, own, INVOICES)
    word = "Ihre Rechnungen:" if locale == "de" else "Your invoices:"
    lines = [line for line in r.text.splitlines() if line.startswith(word)]
    assert len(lines) == 1, r.text
    link = lines[0].removeprefix(word).strip()
    pay = r.data["payment_link"]
    assert pay.startswith("https://mahnwerk.lernwerk.example/pay/")
    assert link == f"{pay}#invoices"
    assert f'href="{escape(link)}"' in r.html and html_has(r.html, word)
    assert "RE-000007" in r.text  # the claim still names the invoice of each line

    bare = render_notice(make_input(stage, locale=locale), NUMBER, own)
    assert word not in bare.text and "#invoices" not in bare.html
    platform = render_notice(make_input(stage, locale=locale), NUMBER, make_settings(), INVOICES)
    assert word not in platform.text and "#invoices" not in platform.html
