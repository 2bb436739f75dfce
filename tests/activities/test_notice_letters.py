"""Notices a lawyer signs off (issue 11 item 8): every template in `de` and `en`, for a
consumer and for a business, with the seller's bank account, GiroCode and legal footer;
the seller settings and their start-up check; one notice through the real SMTP catcher.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import segno.helpers
from sqlalchemy.orm import Session, sessionmaker

from activities.notice_render import (
    SHIPPED_TEMPLATES,
    epc_payload,
    epc_qr,
    epc_qr_png,
    format_day,
    format_money,
    qr_cid,
    render_notice,
)
from activities.notices import NoticeActivities
from core.cli import main as cli_main
from core.devstack import child_env, plan_stack
from core.seller import DEMO_SELLER_ENV, seller_legal_problems
from core.settings import ConfigError, Settings, load_settings
from core.smtp_catcher import Catcher
from tests.activities.test_notices import (  # noqa: F401  (fixtures)
    CUSTOMER_EMAIL,
    catcher,
    run,
    sessions,
    stored_notices,
)
from tests.activities.test_notices import make_input as smtp_input
from tests.activities.test_notices import make_settings as smtp_settings
from workflows.types import (
    CallInNotice,
    ClaimLine,
    Customer,
    DebitAnnouncement,
    MessageInfo,
    NoticeInput,
    Product,
)

NUMBER = "MW-ord-2026-0001-1-x"
IBAN = "DE89370400440532013000"  # the ISO 13616 registry's German example
IBAN_DISPLAY = "DE89 3704 0044 0532 0130 00"
BIC = "COBADEFFXXX"

SELLER: dict[str, Any] = {
    "seller_name": "Lernwerk GmbH",
    "seller_address": "Hauptstraße 5, 80331 München",
    "seller_email": "buchhaltung@lernwerk.example",
    "seller_iban": IBAN,
    "seller_bic": BIC,
    "seller_legal_form": "GmbH",
    "seller_register_court": "Amtsgericht München",
    "seller_register_number": "HRB 123456",
    "seller_managing_directors": "Erika Beispiel, Max Muster",
    "seller_vat_id": "DE999999995",
    "payment_link_url": "https://pay.lernwerk.example/{contract_id}",
    "template_dir": None,
}

# Every notice that asks for money carries the bank block; the SEPA pre-notification
# announces a debit, and offering a transfer there would invite paying twice.
ASKS_FOR_MONEY = {
    "reminder",
    "mahnung_1",
    "mahnung_2",
    "access_locked",
    "handoff",
    "authentication_required",
    "residual",  # what stayed open once the principal was paid (issue 11)
    "call_in",  # the § 498 BGB deadline before the rest of the plan falls due (issue 12)
}
NO_MONEY = {"sepa_prenotification"}
# Customer messages beyond dunning (issue 12): they ask for nothing (a payment failed asks for
# a new payment method, by link), so no bank block either.
MESSAGES = {
    "payment_failed",
    "payment_received",
    "access_restored",
    "plan_completed",
    "withdrawal_confirmed",
    "refund_confirmed",
}

LEGAL = {
    "de": [
        "Lernwerk GmbH · Hauptstraße 5, 80331 München",
        "Sitz: München · Registergericht: Amtsgericht München, HRB 123456",
        "Geschäftsführer: Erika Beispiel, Max Muster",
        "USt-IdNr.: DE999999995",
    ],
    "en": [
        "Lernwerk GmbH · Hauptstraße 5, 80331 München",
        "Registered office: München · Register court: Amtsgericht München, HRB 123456",
        "Managing directors: Erika Beispiel, Max Muster",
        "VAT ID: DE999999995",
    ],
}
# Words that give away the other language (proper names such as "Amtsgericht" or the
# German legal terms the English notices explain in brackets are not among them).
GERMAN_ONLY = [
    *("Guten Tag", "Sehr geehrte", "Mit freundlichen", "Gesamtbetrag", "Bitte "),
    *("Verwendungszweck", "Empfänger", "Geschäftsführer", "kostenfrei", " Sie "),
]
ENGLISH_ONLY = [
    *("Dear ", "Kind regards", "Total", "Please", "Reference", "Account holder"),
    *("Managing directors", "free of charge", " you "),
]
FREE = {"de": ["kostenfrei", "keine Kosten"], "en": ["free of charge"]}


def shipped_notices() -> set[str]:
    names = {
        p.name.removesuffix(".subject.txt") for p in SHIPPED_TEMPLATES.glob("de/*.subject.txt")
    }
    en = {p.name.removesuffix(".subject.txt") for p in SHIPPED_TEMPLATES.glob("en/*.subject.txt")}
    assert names == en, "every notice exists in de and en"
    return names


def test_every_shipped_notice_is_classified() -> None:
    # A new template must decide whether it asks for money (and so needs the bank block).
    assert shipped_notices() == ASKS_FOR_MONEY | NO_MONEY | MESSAGES


def notice_input(template: str, locale: str, customer_type: str, *, fees: int) -> NoticeInput:
    business = customer_type == "business"
    lines = [ClaimLine("installment 3 of 6", 3, datetime(2026, 11, 30, 23, tzinfo=UTC), 123456)]
    debit = None
    if template == "sepa_prenotification":
        debit = DebitAnnouncement(
            seq=3,
            attempt=1,
            label="installment 3 of 6",
            amount=123456 + fees,
            debit_at=datetime(2026, 12, 4, 8, tzinfo=UTC),
            iban_last4="3000",
            mandate_reference="MNDT-42",
            collection_date="2026-12-05",
        )
    return NoticeInput(
        contract_id="ord-2026-0001",
        case_no=1,
        stage=template,
        template=template,
        customer=Customer(
            id="cus-42",
            name="Muster GmbH" if business else "Erika Mustermann",
            email="kunde@example.org",
            locale=locale,
            type=customer_type,
            address={"line1": "Musterstr. 1", "postal_code": "10115", "city": "Berlin"},
        ),
        product=Product(id="course-x", name="Kurs X"),
        currency="eur",
        lines=lines,
        fees=fees,
        total=123456 + fees,
        deadline=datetime(2026, 12, 20, 12, tzinfo=UTC),
        created_at=datetime(2026, 12, 15, 9, tzinfo=UTC),
        # interest has its own tests; here the bank block must carry whatever total is shown
        interest_mode="none",
        debit=debit,
        message=MessageInfo(
            template,
            datetime(2026, 12, 15, 9, tzinfo=UTC),
            installment=3,
            amount=123456,
            failure_class="never",
            reason="withdrawal",
            refund=123456,
        )
        if template in MESSAGES
        else None,
        call_in=(
            CallInNotice(
                arrears=123456 + fees,
                future=990000,
                installments=10,
                remainder=123456 + fees + 990000,
            )
            if template == "call_in"
            else None
        ),
    )


def first_sentence_after(text: str, greeting: str) -> str:
    after = text.split(greeting, 1)[1]
    return after.lstrip("\n <>/p").strip()


@pytest.mark.parametrize("customer_type", ["consumer", "business"])
@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("template", sorted(ASKS_FOR_MONEY | NO_MONEY | MESSAGES))
@pytest.mark.parametrize("fees", [0, 350])
def test_every_notice_renders_with_bank_details_legal_footer_and_salutation(
    template: str, locale: str, customer_type: str, fees: int
) -> None:
    settings = Settings(**SELLER)
    r = render_notice(notice_input(template, locale, customer_type, fees=fees), NUMBER, settings)
    assert r.locale == locale
    text, html = r.text, r.html

    # Salutation: a firm is not greeted by name.
    greeting = {
        ("de", "consumer"): "Guten Tag Erika Mustermann,",
        ("de", "business"): "Sehr geehrte Damen und Herren,",
        ("en", "consumer"): "Dear Erika Mustermann,",
        ("en", "business"): "Dear Sir or Madam,",
    }[(locale, customer_type)]
    assert greeting in text and greeting in html
    assert "Guten Tag Muster GmbH" not in text and "Dear Muster GmbH" not in text
    if locale == "en":  # an English sentence starts with a capital letter
        assert first_sentence_after(text, greeting)[0].isupper()
        assert first_sentence_after(html, greeting)[0].isupper()

    # The seller's business-letter details (§ 35a GmbHG) in both parts.
    for line in LEGAL[locale]:
        assert line in text, f"{line!r} missing from {template}/{locale} text"
        assert line in html, f"{line!r} missing from {template}/{locale} html"

    # One language per notice.
    for word in GERMAN_ONLY if locale == "en" else ENGLISH_ONLY:
        assert word not in text, f"{word!r} in the {locale} text of {template}"

    bank = r.data["bank_transfer"]
    if template in NO_MONEY | MESSAGES:
        assert IBAN_DISPLAY not in text and "cid:" not in html
        assert bank is None and r.images == ()
        return

    # The bank block: holder, IBAN, BIC, amount, reference = the notice number.
    amount = format_money(r.data["total"], "eur", locale)
    label = {"de": "Verwendungszweck:", "en": "Reference:"}[locale]
    assert re.search(rf"IBAN:\s+{IBAN_DISPLAY}\n", text)
    assert re.search(rf"BIC:\s+{BIC}\n", text)
    assert re.search(rf"{label}\s+{NUMBER}\n", text)
    assert re.search(rf"{'Betrag' if locale == 'de' else 'Amount'}:\s+{re.escape(amount)}\n", text)
    holder = {"de": "Empfänger:", "en": "Account holder:"}[locale]
    assert re.search(rf"{holder}\s+Lernwerk GmbH\n", text)
    assert IBAN_DISPLAY in html and NUMBER in html

    # The GiroCode: the payload written out by hand from EPC069-12, the HTML shows it by
    # Content-ID, and the attached PNG is the QR code of exactly that payload.
    euros = f"{Decimal(r.data['total']).scaleb(-2):.2f}"
    expected = f"BCD\n002\n1\nSCT\n{BIC}\nLernwerk GmbH\n{IBAN}\nEUR{euros}\n\n\n{NUMBER}"
    assert bank["epc_payload"] == expected
    assert bank["amount"] == r.data["total"] and bank["reference"] == NUMBER
    cid = qr_cid(NUMBER)
    assert bank["qr_cid"] == cid
    assert f'src="cid:{cid}"' in html
    [image] = r.images
    assert (image.cid, image.content_type) == (cid, "image/png")
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.data == epc_qr_png(expected)

    # "kostenfrei" only when the notice charges nothing besides the claim itself.
    # (Compared with whitespace collapsed: a phrase may wrap.)
    flat_text, flat_html = " ".join(text.split()), " ".join(html.split())
    charged = r.data["fees"] + r.data["costs"]
    for word in FREE[locale]:
        if charged:
            assert word not in flat_text and word not in flat_html, f"{word!r} above a fee"
    if template in {"reminder", "authentication_required"} and not charged:
        assert any(w in flat_text for w in FREE[locale])
        assert any(w in flat_html for w in FREE[locale])


def test_without_an_iban_no_bank_block_is_invented() -> None:
    settings = Settings(**{**SELLER, "seller_iban": "", "seller_bic": ""})
    r = render_notice(notice_input("mahnung_1", "de", "consumer", fees=250), NUMBER, settings)
    assert "IBAN" not in r.text and "cid:" not in r.html
    assert r.images == () and r.data["bank_transfer"] is None


def test_an_override_showing_only_the_girocode_still_attaches_it(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "_bank.txt").write_text("", encoding="utf-8")  # no bank block in text
    settings = Settings(**{**SELLER, "template_dir": tmp_path})
    r = render_notice(notice_input("mahnung_1", "de", "consumer", fees=250), NUMBER, settings)
    assert IBAN_DISPLAY not in r.text and f'src="cid:{qr_cid(NUMBER)}"' in r.html
    assert r.data["bank_transfer"]["qr_cid"] == qr_cid(NUMBER)
    assert [i.cid for i in r.images] == [qr_cid(NUMBER)]


def test_non_euro_notices_get_bank_details_but_no_girocode() -> None:
    # SEPA credit transfers, and so EPC QR codes, are in euro only (EPC069-12 element 8).
    inp = dataclasses.replace(notice_input("mahnung_1", "de", "consumer", fees=0), currency="chf")
    r = render_notice(inp, NUMBER, Settings(**SELLER))
    assert IBAN_DISPLAY in r.text and "1.234,56\u00a0CHF" in r.text
    assert "cid:" not in r.html and r.images == ()
    assert r.data["bank_transfer"]["epc_payload"] is None


def test_handoff_subject_hands_over_our_claim() -> None:
    settings = Settings(**SELLER)
    for locale, route, want in [
        ("de", "inkasso", "Übergabe unserer Forderung an ein Inkassounternehmen"),
        ("de", None, "Abgabe unserer Forderung zur Beitreibung"),
        ("en", "inkasso", "Our claim has been handed over to a debt collection agency"),
        ("en", None, "Our claim has been handed over for collection"),
    ]:
        inp = notice_input("handoff", locale, "consumer", fees=250)
        # the renderer reads the optional `route` the workflow passes on hand-off notices
        setattr(inp, "route", route)  # noqa: B010
        r = render_notice(inp, NUMBER, settings)
        assert r.subject.startswith(want), r.subject
        assert "Ihrer Forderung" not in r.subject and "Your claim" not in r.subject


# -- formatting ------------------------------------------------------------------------------


def test_amounts_and_dates_follow_cldr() -> None:
    assert format_money(123456, "eur", "de") == "1.234,56\u00a0€"
    assert format_money(-250, "eur", "de") == "-2,50\u00a0€"
    assert format_money(123456, "eur", "en") == "€1,234.56"
    assert format_money(1234, "jpy", "de") == "1.234\u00a0¥"  # zero-decimal currency
    # 5 Dec 2026 00:00 in Berlin is 4 Dec 23:00 UTC: the Berlin date is shown.
    instant = datetime(2026, 12, 4, 23, tzinfo=UTC)
    assert format_day(instant, "de") == "5. Dezember 2026"
    assert format_day(instant, "en") == "5 December 2026"
    assert format_day("2026-03-05", "de", numeric=True) == "05.03.2026"
    with pytest.raises(TypeError):
        format_money(1.5, "eur", "de")  # type: ignore[arg-type]


def test_running_text_uses_long_dates_and_tables_numeric_ones() -> None:
    r = render_notice(
        notice_input("mahnung_1", "de", "consumer", fees=250), NUMBER, Settings(**SELLER)
    )
    assert "bis spätestens 20. Dezember 2026" in r.text
    assert f"Nr. {NUMBER} vom 15. Dezember 2026" in r.text
    assert "Rate 3 von 6 — fällig am 01.12.2026 — 1.234,56\u00a0€" in r.text


def test_subject_keeps_the_no_break_space_but_no_line_breaks() -> None:
    inp = notice_input("sepa_prenotification", "de", "consumer", fees=0)
    inp.product = Product(id="course-x", name="Kurs\r\nBcc: x@example.org")
    r = render_notice(inp, NUMBER, Settings(**SELLER))
    assert r.subject == (
        "Ankündigung Ihrer SEPA-Lastschrift über 1.234,56\u00a0€ am 5. Dezember 2026"
        " – Kurs Bcc: x@example.org"
    )


# -- the EPC payload -------------------------------------------------------------------------


def test_epc_payload_is_what_segnos_own_epc_helper_encodes() -> None:
    # segno.helpers.make_epc_qr is an independent implementation of EPC069-12: the same
    # matrix means the same bytes in the code. (Amounts with a non-zero last digit: segno
    # drops trailing zeros, "EUR12.3", which the standard also allows.)
    for name, bic, cents, text in [
        ("Lernwerk GmbH", BIC, 133606, NUMBER),
        ("Müller & Söhne GmbH & Co. KG", None, 1, "MW-x-1-mahnung_2"),
        ("A" * 70, None, 99_999_999_999, "R" * 140),
    ]:
        payload = epc_payload(name=name, iban=IBAN, bic=bic, amount_minor=cents, remittance=text)
        reference = segno.helpers.make_epc_qr(
            name, IBAN, Decimal(cents).scaleb(-2), text=text, bic=bic, encoding=1
        )
        ours = epc_qr(payload)
        assert ours.matrix == reference.matrix
        assert int(ours.version) <= 13 and ours.error == "M"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "A" * 71}, "1–70"),
        ({"amount_minor": 0}, "0.01"),
        ({"amount_minor": 100_000_000_000}, "999999999.99"),
        ({"remittance": "R" * 141}, "1–140"),
        ({"name": "Evil\nSCT"}, "line breaks"),
    ],
)
def test_epc_payload_refuses_what_the_standard_forbids(
    kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {
        "name": "Lernwerk GmbH",
        "iban": IBAN,
        "bic": None,
        "amount_minor": 100,
        "remittance": NUMBER,
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        epc_payload(**{**args, **kwargs})


# -- settings and the start-up check ---------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ({"seller_iban": "DE89370400440532013001"}, "MAHNWERK_SELLER_IBAN: not a valid IBAN"),
        ({"seller_bic": "COBADEF"}, "MAHNWERK_SELLER_BIC: not a valid BIC"),
        ({"seller_vat_id": "DE999999990"}, "MAHNWERK_SELLER_VAT_ID: DE999999990 fails"),
        ({"seller_vat_id": "DE12345"}, "MAHNWERK_SELLER_VAT_ID: a German VAT id is DE"),
        ({"seller_legal_form": "Ltd"}, "MAHNWERK_SELLER_LEGAL_FORM: unknown legal form"),
        ({"seller_register_number": "12345"}, "MAHNWERK_SELLER_REGISTER_NUMBER: must be"),
        ({"seller_account_holder": "A" * 71}, "MAHNWERK_SELLER_ACCOUNT_HOLDER: at most 70"),
    ],
)
def test_bad_seller_settings_stop_loading_with_one_line(
    override: dict[str, Any], line: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(**{**SELLER, **override})
    message = str(exc.value.code)
    assert message.startswith(f"configuration error: {line}") and "\n" not in message


def test_seller_values_are_normalised() -> None:
    s = load_settings(
        seller_iban="de89 3704 0044 0532 0130 00",
        seller_legal_form="ug (haftungsbeschränkt)",
        seller_vat_id="de 999 999 995",
        seller_register_number="HRB  4711   B",
    )
    assert s.seller_iban == IBAN
    assert s.seller_legal_form == "UG (haftungsbeschränkt)"
    assert s.seller_vat_id == "DE999999995"
    assert s.seller_register_number == "HRB 4711 B"


def problems(**override: Any) -> list[str]:
    return seller_legal_problems(Settings(**{**SELLER, **override}))


def variables(found: list[str]) -> list[str]:
    return [p.split(":", 1)[0] for p in found]


def test_legal_details_required_per_legal_form() -> None:
    assert problems() == []
    # GmbH (§ 35a GmbHG): register court, number and managing directors.
    assert variables(
        problems(seller_register_court="", seller_register_number="", seller_managing_directors="")
    ) == [
        "MAHNWERK_SELLER_REGISTER_COURT",
        "MAHNWERK_SELLER_REGISTER_NUMBER",
        "MAHNWERK_SELLER_MANAGING_DIRECTORS",
    ]
    # AG (§ 80 AktG): also the chair of the supervisory board.
    assert variables(problems(seller_legal_form="AG")) == [
        "MAHNWERK_SELLER_SUPERVISORY_BOARD_CHAIR"
    ]
    assert problems(seller_legal_form="AG", seller_supervisory_board_chair="Hans Aufsicht") == []
    # e.K. (§ 37a HGB): register details, no managing directors.
    assert problems(seller_legal_form="e.K.", seller_managing_directors="") == []
    # A sole trader without a register entry: the owner's name, no register details.
    assert (
        problems(
            seller_legal_form="Einzelunternehmen",
            seller_register_court="",
            seller_register_number="",
        )
        == []
    )
    assert variables(
        problems(seller_legal_form="Einzelunternehmen", seller_managing_directors="")
    ) == ["MAHNWERK_SELLER_MANAGING_DIRECTORS"]
    # No legal form, no IBAN: both named.
    assert variables(problems(seller_legal_form="", seller_iban="")) == [
        "MAHNWERK_SELLER_IBAN",
        "MAHNWERK_SELLER_LEGAL_FORM",
    ]
    # The seat is taken from the address unless set; without either it is missing.
    assert variables(problems(seller_address="Postfach 12")) == ["MAHNWERK_SELLER_SEAT"]
    assert problems(seller_address="Postfach 12", seller_seat="München") == []


def test_the_legal_name_carries_the_legal_form() -> None:
    r = render_notice(
        notice_input("reminder", "de", "consumer", fees=0),
        NUMBER,
        Settings(**{**SELLER, "seller_name": "Lernwerk", "seller_legal_form": "gmbh"}),
    )
    assert "Lernwerk GmbH · Hauptstraße 5, 80331 München" in r.text
    assert "Lernwerk GmbH\n" in r.data["bank_transfer"]["epc_payload"]


@pytest.fixture
def clean_seller_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in list(DEMO_SELLER_ENV) + ["MAHNWERK_SELLER_SEAT", "MAHNWERK_SELLER_ACCOUNT_HOLDER"]:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize("command", ["api", "worker"])
def test_production_start_refuses_missing_seller_details(
    command: str, clean_seller_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main([command])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("configuration error: MAHNWERK_SELLER_IBAN: not set")
    assert "MAHNWERK_SELLER_LEGAL_FORM: not set" in err and "\n" not in err


def test_dev_stack_children_get_complete_seller_details(
    clean_seller_env: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    env = child_env(plan_stack(settings, environ={}), settings, None, environ={})
    for var, value in DEMO_SELLER_ENV.items():
        assert env[var] == value
        clean_seller_env.setenv(var, value)
    assert seller_legal_problems(load_settings()) == []


# -- through SMTP ----------------------------------------------------------------------------


def test_mahnung_through_smtp_carries_text_html_and_the_girocode(
    catcher: Catcher,  # noqa: F811
    sessions: sessionmaker[Session],  # noqa: F811
) -> None:
    settings = smtp_settings(
        catcher.url,
        seller_iban=IBAN,
        seller_legal_form="GmbH",
        seller_register_court="Amtsgericht München",
        seller_register_number="HRB 123456",
        seller_managing_directors="Erika Beispiel",
    )
    result = run(NoticeActivities(settings, sessions), smtp_input("mahnung_1"))
    [mail] = catcher.store.find(to=CUSTOMER_EMAIL)

    # multipart/alternative [text/plain, multipart/related [text/html, image/png]]
    assert mail.get_content_type() == "multipart/alternative"
    text_part, related = mail.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.iter_parts()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    assert image.get_content_disposition() == "inline"
    cid = qr_cid(result.notice_number)
    assert image["Content-ID"] == f"<{cid}>"
    assert f'src="cid:{cid}"' in html_part.get_content()

    [notice] = stored_notices(sessions)
    payload = notice.data["bank_transfer"]["epc_payload"]
    assert payload.endswith(f"\n{result.notice_number}")
    assert image.get_content() == epc_qr_png(payload)
    body = text_part.get_content()
    assert IBAN_DISPLAY in body and result.notice_number in body
    assert "Geschäftsführer: Erika Beispiel" in body


def test_a_notice_without_bank_details_stays_multipart_alternative(
    catcher: Catcher,  # noqa: F811
    sessions: sessionmaker[Session],  # noqa: F811
    tmp_path: Path,
) -> None:
    run(NoticeActivities(smtp_settings(catcher.url), sessions), smtp_input("mahnung_1"))
    [mail] = catcher.store.find(to=CUSTOMER_EMAIL)
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
