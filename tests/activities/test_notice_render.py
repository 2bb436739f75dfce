"""Notice rendering: what the customer reads, in German and English, text and HTML."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from activities.notice_render import (
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
        "deadline": "20.01.2027",
        "notice_date": "10.01.2027",
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
    assert "Coaching Paket — fällig am 01.12.2026 — 497,00 €" in r.text
    assert "Rate" not in r.text


def test_subscription_periods_and_unknown_labels() -> None:
    lines = [
        ClaimLine("period 4", 4, datetime(2026, 11, 30, 23, tzinfo=UTC), 2900),
        ClaimLine("Sonderposten", 5, datetime(2026, 11, 30, 23, tzinfo=UTC), 100),
    ]
    r = render_notice(make_input("reminder", lines=lines, locale="en"), NUMBER, make_settings())
    assert "Subscription period 4 — due on 1 December 2026 — €29.00" in r.text
    assert "Sonderposten — due on 1 December 2026 — €1.00" in r.text


def test_interest_and_costs_are_itemised_when_the_input_carries_them() -> None:
    """Forward-compatible: NoticeInput may gain interest fields (with defaults)."""

    @dataclasses.dataclass
    class WithInterest(NoticeInput):
        interest: int = 0
        interest_rate: str | None = None
        interest_from: datetime | None = None
        interest_to: datetime | None = None
        costs: int = 0
        route: str | None = None

    base = make_input("mahnung_2")
    inp = WithInterest(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(NoticeInput)},
        interest=1234,
        interest_rate="6.27",
        interest_from=datetime(2026, 12, 1, 23, tzinfo=UTC),
        interest_to=datetime(2027, 1, 9, 23, tzinfo=UTC),
        costs=4000,
        route="court",
    )
    text = plain(render_notice(inp, NUMBER, make_settings()).text)
    assert "Verzugszinsen (6,27 % p. a., 02.12.2026 bis 10.01.2027) — 12,34 €" in text
    assert "Weitere Kosten — 40,00 €" in text
    assert "Mahnbescheids im gerichtlichen Mahnverfahren beantragen" in text
    assert "Inkassounternehmen" not in text


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
    assert "* Rate 3 von 6: 1.234,56 €" in r.text  # the overridden partial
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
    assert r.text == "Hallo A & B, 1.336,06 € bis 20.01.2027."
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
