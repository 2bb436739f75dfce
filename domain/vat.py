"""VAT on a seller's invoice: which tax applies to a supply, at which rate (issue 15).

Mahnwerk does not give tax advice. The seller configures what only they (and their tax
adviser) can decide — small business (§ 19 UStG), the § 4 Nr. 21 UStG certificate for
courses, OSS registration, each product's category — and this module applies the rules
below to those settings, the customer and the date of supply. docs/invoices.md lists them.

The decision, in this order (place of supply first, then German exemptions):

1. **EU business with a VAT id, outside Germany** → reverse charge: the place of supply of a
   service to a business is where the business is (§ 3a Abs. 2 UStG, Art. 44 VAT Directive
   2006/112/EC); the customer owes the VAT (Art. 196 VAT Directive; § 13b Abs. 1, Abs. 5
   UStG for the German side). The invoice shows no VAT, both VAT ids and the note
   "Steuerschuldnerschaft des Leistungsempfängers" (§ 14a Abs. 1, Abs. 5 UStG).
   EN 16931 category ``AE``.
2. **A business outside the EU** → not taxable in Germany (§ 3a Abs. 2 UStG), category ``O``.
3. **A consumer outside the EU buying an electronically supplied service** → taxable where
   the consumer lives (§ 3a Abs. 5 UStG), not in Germany: category ``O``.
4. **A consumer (or a business without a VAT id) in another EU country, an electronically
   supplied service, the seller registered for OSS** → the destination country's standard
   VAT (§ 3a Abs. 5 UStG, declared through the One-Stop-Shop, § 18j UStG). Below the
   EU-wide threshold of 10,000 € (§ 3a Abs. 5 Satz 3 UStG) the place of supply stays in
   Germany unless the seller opted in: that is what "registered for OSS" means here.
   Only standard rates are in :data:`STANDARD_RATES`; where a country taxes the product at
   a reduced rate, the seller must not rely on this table.
5. Otherwise the place of supply is Germany:
   a. **small business** (§ 19 Abs. 1 UStG) → no VAT, the note that none is charged
      (category ``E``);
   b. **a course exempt under § 4 Nr. 21 Buchst. a Doppelbuchst. bb UStG** (the seller holds
      the certificate of the Land authority that the course prepares for a profession or an
      exam) → exempt, category ``E``;
   c. German VAT: 19 % (§ 12 Abs. 1 UStG) or, for a product the seller marks as reduced
      (e.g. e-books, § 12 Abs. 2 Nr. 14 UStG), 7 % (category ``S``).

Rates are integers in basis points (19 % = 1900, 25.5 % = 2550), amounts in minor units:
no floats. Pure module, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

DE: Final = "DE"

# EU member states (ISO 3166-1 alpha-2; Greece is GR here, "EL" in VAT ids).
EU_COUNTRIES: Final = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)
# VAT id prefixes that differ from the ISO country code.
_VAT_PREFIX_COUNTRY: Final = {"EL": "GR", "XI": "GB"}


@dataclass(frozen=True)
class Rate:
    country: str  # ISO 3166-1 alpha-2
    kind: str  # standard | reduced
    valid_from: str  # ISO date: the rate applies to supplies on and after this day
    bp: int  # basis points
    source: str


_EC = (
    "European Commission (DG TAXUD), VAT rates applied in the Member States of the "
    "European Union, situation at 1 January 2025"
)

# German rates (§ 12 UStG), with the temporary reduction of the second Corona tax relief act
# (Zweites Corona-Steuerhilfegesetz, 29 Jun 2020: 16 % / 5 % from 1 Jul to 31 Dec 2020).
GERMAN_RATES: Final[tuple[Rate, ...]] = (
    Rate(DE, "standard", "2007-01-01", 1900, "§ 12 Abs. 1 UStG"),
    Rate(DE, "standard", "2020-07-01", 1600, "§ 28 Abs. 1 UStG (Corona-Steuerhilfegesetz)"),
    Rate(DE, "standard", "2021-01-01", 1900, "§ 12 Abs. 1 UStG"),
    Rate(DE, "reduced", "2007-01-01", 700, "§ 12 Abs. 2 UStG"),
    Rate(DE, "reduced", "2020-07-01", 500, "§ 28 Abs. 2 UStG (Corona-Steuerhilfegesetz)"),
    Rate(DE, "reduced", "2021-01-01", 700, "§ 12 Abs. 2 UStG"),
)

# Standard VAT rates of the other member states, for OSS destination taxation. One row per
# change; a country's rate is the row with the latest `valid_from` on or before the date of
# supply. Operators add later changes with MAHNWERK_VAT_RATES (core.settings).
STANDARD_RATES: Final[tuple[Rate, ...]] = (
    Rate("AT", "standard", "2016-01-01", 2000, _EC),
    Rate("BE", "standard", "2016-01-01", 2100, _EC),
    Rate("BG", "standard", "2016-01-01", 2000, _EC),
    Rate("CY", "standard", "2016-01-01", 1900, _EC),
    Rate("CZ", "standard", "2016-01-01", 2100, _EC),
    Rate("DK", "standard", "2016-01-01", 2500, _EC),
    Rate("EE", "standard", "2016-01-01", 2000, _EC),
    Rate("EE", "standard", "2024-01-01", 2200, _EC),
    Rate("EE", "standard", "2025-07-01", 2400, "Estonian VAT Act amendment (RT I, 2024): 24 %"),
    Rate("ES", "standard", "2016-01-01", 2100, _EC),
    Rate("FI", "standard", "2016-01-01", 2400, _EC),
    Rate("FI", "standard", "2024-09-01", 2550, _EC),
    Rate("FR", "standard", "2016-01-01", 2000, _EC),
    Rate("GR", "standard", "2016-06-01", 2400, _EC),
    Rate("HR", "standard", "2016-01-01", 2500, _EC),
    Rate("HU", "standard", "2016-01-01", 2700, _EC),
    Rate("IE", "standard", "2021-03-01", 2300, _EC),
    Rate("IT", "standard", "2016-01-01", 2200, _EC),
    Rate("LT", "standard", "2016-01-01", 2100, _EC),
    Rate("LU", "standard", "2016-01-01", 1700, _EC),
    Rate("LU", "standard", "2023-01-01", 1600, _EC),
    Rate("LU", "standard", "2024-01-01", 1700, _EC),
    Rate("LV", "standard", "2016-01-01", 2100, _EC),
    Rate("MT", "standard", "2016-01-01", 1800, _EC),
    Rate("NL", "standard", "2016-01-01", 2100, _EC),
    Rate("PL", "standard", "2016-01-01", 2300, _EC),
    Rate("PT", "standard", "2016-01-01", 2300, _EC),
    Rate("RO", "standard", "2017-01-01", 1900, _EC),
    Rate("RO", "standard", "2025-08-01", 2100, "Romanian Law 141/2025: 21 %"),
    Rate("SE", "standard", "2016-01-01", 2500, _EC),
    Rate("SI", "standard", "2016-01-01", 2200, _EC),
    Rate("SK", "standard", "2016-01-01", 2000, _EC),
    Rate("SK", "standard", "2025-01-01", 2300, "Slovak Act 278/2024: 23 %"),
)

RATES: Final[tuple[Rate, ...]] = GERMAN_RATES + STANDARD_RATES

_RATE_RE = re.compile(r"([A-Z]{2}):(\d{4}-\d{2}-\d{2}):(\d{1,4})")


def parse_rates(raw: str) -> tuple[Rate, ...]:
    """``FR:2027-01-01:2100,…`` (country:valid_from:basis points) → standard-rate rows with
    the source MAHNWERK_VAT_RATES; ValueError names the entry that is not."""
    rows: list[Rate] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        m = _RATE_RE.fullmatch(entry)
        if m is None:
            raise ValueError(
                f"entry {entry!r} is not CC:YYYY-MM-DD:basis_points (FR:2027-01-01:2100)"
            )
        country = m.group(1)
        if country not in EU_COUNTRIES:
            raise ValueError(f"entry {entry!r}: {country} is not an EU member state")
        rows.append(Rate(country, "standard", m.group(2), int(m.group(3)), "MAHNWERK_VAT_RATES"))
    return tuple(rows)


def rate_on(country: str, kind: str, day: str, rates: Iterable[Rate] = RATES) -> Rate | None:
    """The `kind` rate of `country` for a supply on `day` (ISO), or None if unknown."""
    found: Rate | None = None
    for r in rates:
        if r.country == country and r.kind == kind and r.valid_from <= day:
            if found is None or r.valid_from >= found.valid_from:
                found = r
    return found


# -- the decision ----------------------------------------------------------------------------

# EN 16931 VAT category codes (UNTDID 5305, the subset EN 16931 allows)
STANDARD: Final = "S"
REVERSE_CHARGE: Final = "AE"
EXEMPT: Final = "E"
NOT_SUBJECT: Final = "O"

# Product tax categories the seller assigns (checkout `product.tax_category`, default
# MAHNWERK_INVOICE_PRODUCT_TAX)
PRODUCT_CATEGORIES: Final = ("standard", "reduced", "education")


@dataclass(frozen=True)
class SellerTax:
    """The seller's tax settings (core.invoice_seller)."""

    small_business: bool = False  # § 19 UStG
    education_certificate: bool = False  # § 4 Nr. 21 Buchst. a Doppelbuchst. bb UStG
    oss: bool = False  # destination VAT for EU consumers (electronically supplied services)


@dataclass(frozen=True)
class TaxCustomer:
    type: str  # consumer | business
    country: str  # ISO 3166-1 alpha-2; "" unknown (treated as Germany)
    vat_id: str = ""


@dataclass(frozen=True)
class TaxProduct:
    category: str = "standard"  # standard | reduced | education
    electronic: bool = True  # an electronically supplied service (§ 3a Abs. 5 Satz 2 Nr. 3)


@dataclass(frozen=True)
class TaxDecision:
    key: str  # de_standard | de_reduced | small_business | education_exempt
    #           | reverse_charge | oss | not_taxable
    category: str  # EN 16931 / UNTDID 5305: S | AE | E | O
    rate_bp: int
    country: str  # whose VAT applies (the place of supply)
    basis: str  # the law the decision rests on
    note_de: str = ""  # printed on the invoice (and BT-120 for AE / E / O)
    note_en: str = ""
    exemption_code: str = ""  # BT-121 (CEF VATEX code list), where one exists
    rate_source: str = ""


def vat_id_country(vat_id: str) -> str:
    prefix = vat_id[:2].upper()
    return _VAT_PREFIX_COUNTRY.get(prefix, prefix)


def customer_country(customer: TaxCustomer) -> str:
    """The customer's country: the address, else the VAT id's prefix, else Germany."""
    if customer.country:
        return customer.country.upper()
    if customer.vat_id:
        return vat_id_country(customer.vat_id)
    return DE


class VatRateMissing(ValueError):
    """No rate known for a country and day (MAHNWERK_VAT_RATES can add it)."""


def decide(
    seller: SellerTax,
    customer: TaxCustomer,
    product: TaxProduct,
    supply_day: str,
    rates: Sequence[Rate] = RATES,
) -> TaxDecision:
    """The tax treatment of one supply (module docstring: the order of the rules)."""
    if product.category not in PRODUCT_CATEGORIES:
        raise ValueError(f"unknown product tax category {product.category!r}")
    country = customer_country(customer)
    business = customer.type == "business"
    in_eu = country in EU_COUNTRIES
    if business and customer.vat_id and in_eu and country != DE:
        return TaxDecision(
            "reverse_charge",
            REVERSE_CHARGE,
            0,
            country,
            "§ 3a Abs. 2, § 13b Abs. 1, Abs. 5 UStG; Art. 44, 196 MwStSystRL",
            "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge, § 13b UStG).",
            "Reverse charge: VAT is due from the recipient (Art. 196 Directive 2006/112/EC).",
            "VATEX-EU-AE",
        )
    if not in_eu and (business or product.electronic):
        basis = "§ 3a Abs. 2 UStG" if business else "§ 3a Abs. 5 UStG"
        return TaxDecision(
            "not_taxable",
            NOT_SUBJECT,
            0,
            country,
            basis,
            f"Nicht im Inland steuerbare Leistung (Leistungsort {country}, {basis}).",
            f"Not subject to German VAT (place of supply {country}, {basis}).",
            "VATEX-EU-O",
        )
    if in_eu and country != DE and product.electronic and seller.oss:
        rate = rate_on(country, "standard", supply_day, rates)
        if rate is None:
            raise VatRateMissing(f"no standard VAT rate of {country} for {supply_day}")
        return TaxDecision(
            "oss",
            STANDARD,
            rate.bp,
            country,
            "§ 3a Abs. 5 UStG, § 18j UStG (One-Stop-Shop)",
            f"Leistungsort {country} (§ 3a Abs. 5 UStG); Umsatzsteuer {country}, "
            "erklärt im One-Stop-Shop-Verfahren (§ 18j UStG).",
            f"Place of supply {country}; VAT of {country}, declared through the One-Stop-Shop.",
            rate_source=rate.source,
        )
    if seller.small_business:
        return TaxDecision(
            "small_business",
            EXEMPT,
            0,
            DE,
            "§ 19 Abs. 1 UStG",
            "Gemäß § 19 UStG wird keine Umsatzsteuer berechnet (Kleinunternehmerregelung).",
            "No VAT is charged: small business (§ 19 German VAT Act).",
        )
    if product.category == "education" and seller.education_certificate:
        return TaxDecision(
            "education_exempt",
            EXEMPT,
            0,
            DE,
            "§ 4 Nr. 21 Buchst. a Doppelbuchst. bb UStG",
            "Steuerfreie Bildungsleistung nach § 4 Nr. 21 Buchst. a Doppelbuchst. bb UStG.",
            "VAT-exempt educational service (§ 4 No. 21 German VAT Act).",
            "VATEX-EU-132-1I",
        )
    kind = "reduced" if product.category == "reduced" else "standard"
    rate = rate_on(DE, kind, supply_day, rates)
    if rate is None:
        raise VatRateMissing(f"no {kind} German VAT rate for {supply_day}")
    return TaxDecision(
        f"de_{kind}",
        STANDARD,
        rate.bp,
        DE,
        rate.source,
        rate_source=rate.source,
    )


# -- amounts -------------------------------------------------------------------------------


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero (commercial rounding)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((2 * abs(numerator) + denominator) // (2 * denominator))


def net_of_gross(gross: int, rate_bp: int) -> int:
    """The net amount contained in a gross price, rounded per line (EN 16931 BT-131 has two
    decimals): gross × 10000 / (10000 + rate)."""
    return round_half_up(gross * 10000, 10000 + rate_bp)


def tax_of_net(net: int, rate_bp: int) -> int:
    """EN 16931 BR-CO-17: the tax of a VAT category is its taxable amount × rate, rounded."""
    return round_half_up(net * rate_bp, 10000)
