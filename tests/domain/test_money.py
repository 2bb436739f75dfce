from datetime import UTC, date, datetime

import pytest

from domain.money import currency_exponent, format_amount, format_date, format_number


@pytest.mark.parametrize(
    ("minor", "currency", "de", "en"),
    [
        # 123456 minor units = 1234 units and 56 cents
        (123456, "eur", "1.234,56 €", "€1,234.56"),
        (9900, "eur", "99,00 €", "€99.00"),
        (250, "eur", "2,50 €", "€2.50"),
        (5, "eur", "0,05 €", "€0.05"),
        (0, "eur", "0,00 €", "€0.00"),
        (100000, "eur", "1.000,00 €", "€1,000.00"),
        # 123456789 = 1 234 567 units and 89 cents: two thousands separators
        (123456789, "eur", "1.234.567,89 €", "€1,234,567.89"),
        (-250, "eur", "-2,50 €", "-€2.50"),
        (-123456, "eur", "-1.234,56 €", "-€1,234.56"),
        (123456, "EUR", "1.234,56 €", "€1,234.56"),
        (123456, "usd", "1.234,56 $", "$1,234.56"),
        (123456, "gbp", "1.234,56 £", "£1,234.56"),
        # no symbol known: the ISO code
        (123456, "chf", "1.234,56 CHF", "CHF 1,234.56"),
        (-123456, "chf", "-1.234,56 CHF", "-CHF 1,234.56"),
        # zero-decimal currency: 1234 minor units are 1234 yen
        (1234, "jpy", "1.234 JPY", "JPY 1,234"),
        # three-decimal currency: 1234 minor units are 1.234 dinar
        (1234, "kwd", "1,234 KWD", "KWD 1.234"),
    ],
)
def test_format_amount(minor: int, currency: str, de: str, en: str) -> None:
    assert format_amount(minor, currency, "de") == de
    assert format_amount(minor, currency, "en") == en


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("de", "1.234,56 €"),
        ("de-DE", "1.234,56 €"),
        ("de_AT", "1.234,56 €"),
        ("DE", "1.234,56 €"),
        ("en", "€1,234.56"),
        ("en-GB", "€1,234.56"),
        ("fr", "€1,234.56"),  # unsupported locales fall back to English
    ],
)
def test_locale_variants(locale: str, expected: str) -> None:
    assert format_amount(123456, "eur", locale) == expected


def test_large_amount_uses_integers_only() -> None:
    # 10**20 + 1 minor units: a float would lose the final cent
    assert format_amount(10**20 + 1, "eur", "de") == "1.000.000.000.000.000.000,01 €"


@pytest.mark.parametrize("bad", [True, 12.5, "1234"])
def test_amount_must_be_int(bad: object) -> None:
    with pytest.raises(TypeError, match="minor units"):
        format_amount(bad, "eur", "de")  # type: ignore[arg-type]


def test_format_number_and_exponent() -> None:
    assert currency_exponent("eur") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("bhd") == 3
    assert format_number(627, 2, "de") == "6,27"
    assert format_number(-5, 2, "en") == "-0.05"


@pytest.mark.parametrize(
    ("value", "de", "en"),
    [
        ("2026-12-01", "01.12.2026", "1 December 2026"),
        ("2027-02-28", "28.02.2027", "28 February 2027"),
        (date(2026, 7, 9), "09.07.2026", "9 July 2026"),
        # an instant shows its Berlin date: 23:30Z on 30 Nov is 00:30 CET on 1 Dec
        (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "01.12.2026", "1 December 2026"),
        ("2026-11-30T23:30:00Z", "01.12.2026", "1 December 2026"),
        ("2026-06-30T21:59:00Z", "30.06.2026", "30 June 2026"),  # 23:59 CEST
    ],
)
def test_format_date(value: str | date | datetime, de: str, en: str) -> None:
    assert format_date(value, "de") == de
    assert format_date(value, "en") == en


def test_format_date_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_date(datetime(2026, 12, 1, 10, 0), "de")
