"""Hand-off rules: route, write-off, Mahnantrag fields, court fee, limitation, Inkasso cap."""

import pytest

from domain.collection import (
    INKASSOKOSTEN,
    MAHNKOSTEN,
    RUECKLASTSCHRIFTKOSTEN,
    AncillaryClaim,
    Invoice,
    MahnantragClaim,
    catalogue_for,
    court_fee_estimate,
    gkg_fee,
    handoff_decision,
    interest_from,
    limitation_end,
    mahnantrag_fields,
    max_collection_fee,
    rvg_fee,
)

# --------------------------------------------------------------------------- route


@pytest.mark.parametrize(
    ("principal", "route", "contested", "expected"),
    [
        (4_999, "auto", False, "write_off"),  # below 50.00 €
        (5_000, "auto", False, "court"),  # equal to the threshold is NOT written off
        (5_000, "auto", True, "inkasso"),  # auto: court unless contested, then inkasso
        (19_800, "court", False, "court"),
        (19_800, "court", True, "inkasso"),  # contested never goes to court automatically
        (19_800, "inkasso", False, "inkasso"),
        (19_800, "inkasso", True, "inkasso"),
        (100, "court", True, "write_off"),  # too small for either
    ],
)
def test_handoff_decision(principal: int, route: str, contested: bool, expected: str) -> None:
    assert handoff_decision(principal, 5_000, route, contested) == expected


def test_handoff_without_threshold_and_invalid_route() -> None:
    assert handoff_decision(1, 0, "auto", False) == "court"
    with pytest.raises(ValueError, match="route must be one of"):
        handoff_decision(19_800, 5_000, "mahnbescheid", False)


# --------------------------------------------------------------------------- catalogue


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("course", (16, "Lehrgangs-/Unterrichtskosten")),
        ("coaching", (5, "Dienstleistungsvertrag")),
        ("membership", (5, "Dienstleistungsvertrag")),
        ("subscription", (5, "Dienstleistungsvertrag")),
        ("purchase", (11, "Kaufvertrag")),
        (" Course ", (16, "Lehrgangs-/Unterrichtskosten")),
    ],
)
def test_catalogue_for(category: str, expected: tuple[int, str]) -> None:
    assert catalogue_for(category) == expected


def test_unknown_category() -> None:
    with pytest.raises(ValueError, match="no Mahnantrag catalogue number for product category"):
        catalogue_for("webinar")


# --------------------------------------------------------------------------- court fee


@pytest.mark.parametrize(
    ("value_eur", "fee_eur"),
    [
        # § 34 (1) GKG: 40 € up to 500 €, then + 21 € per started 500 € up to 2,000 €,
        # + 22.50 € per started 1,000 € up to 10,000 €, … (checked against Anlage 2 GKG)
        (1, "40.00"),
        (500, "40.00"),
        (1_000, "61.00"),  # 40 + 21
        (1_500, "82.00"),  # 40 + 2 × 21
        (2_000, "103.00"),  # 40 + 3 × 21
        (3_000, "125.50"),  # 103 + 22.50
        (10_000, "283.00"),  # 103 + 8 × 22.50
        (13_000, "313.50"),  # 283 + 30.50
        (50_000, "638.00"),  # 283 + 5 × 30.50 + 5 × 40.50
        (65_000, "778.00"),  # 638 + 140
        (230_000, "2248.00"),  # 638 + 10 × 140 + 210
    ],
)
def test_gkg_fee_table(value_eur: int, fee_eur: str) -> None:
    assert gkg_fee(value_eur * 100) == int(fee_eur.replace(".", ""))


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        # KV 1100 GKG: 0.5 fee, at least 38 € (DOMAIN.md §2's computed examples)
        (50_000, 3_800),  # 500 €: 0.5 × 40 = 20 → minimum 38 €
        (100_000, 3_800),  # 1,000 €: 0.5 × 61 = 30.50 → minimum 38 €
        (100_001, 4_100),  # 1,000.01 €: 0.5 × 82 = 41 €
        (150_000, 4_100),  # 1,500 €: 0.5 × 82 = 41 €
        (200_000, 5_150),  # 2,000 €: 0.5 × 103 = 51.50 €
        (300_000, 6_275),  # 3,000 €: 0.5 × 125.50 = 62.75 €
    ],
)
def test_court_fee_estimate(principal: int, expected: int) -> None:
    assert court_fee_estimate(principal) == expected


def test_court_fee_needs_a_claim() -> None:
    with pytest.raises(ValueError, match="positive"):
        court_fee_estimate(0)


# --------------------------------------------------------------------------- limitation


@pytest.mark.parametrize(
    ("arose", "end"),
    [
        # §§ 195, 199 (1) BGB: 3 years from the end of the year the claim arose
        ("2026-12-01", "2029-12-31"),
        ("2026-01-01", "2029-12-31"),
        ("2026-12-31", "2029-12-31"),
        ("2027-01-01", "2030-12-31"),
    ],
)
def test_limitation_end(arose: str, end: str) -> None:
    assert limitation_end(arose) == end


# --------------------------------------------------------------------------- Inkasso cap


@pytest.mark.parametrize(
    ("value_eur", "fee_eur"),
    [
        # § 13 (1) RVG: 51.50 € up to 500 €, + 41.50 € per started 500 € up to 2,000 €,
        # + 59.50 € per started 1,000 € up to 10,000 € (checked against Anlage 2 RVG)
        (500, "51.50"),
        (1_000, "93.00"),
        (1_500, "134.50"),
        (2_000, "176.00"),
        (3_000, "235.50"),
        (8_000, "533.00"),
        (50_000, "1357.00"),
        (65_000, "1456.50"),
    ],
)
def test_rvg_fee_table(value_eur: int, fee_eur: str) -> None:
    assert rvg_fee(value_eur * 100) == int(fee_eur.replace(".", ""))


# DOMAIN.md §3 "Maximum recoverable fee, EUR net of VAT (fee + post flat rate, computed)".
# 1.0 fee: 31.50 € (undisputed ≤ 50 €, § 13 (2) RVG), 51.50 € (≤ 500 €), 93.00 € (≤ 1,000 €).
# fee = 1.0 fee × rate; post = 20 % of the fee, at most 20 € (VV 7002 RVG).
#   ≤ 50:      0.5: 15.75 + 3.15 = 18.90   0.9: 28.35 + 5.67 = 34.02    1.3: 40.95 + 8.19 = 49.14
#   ≤ 500:     0.5: 25.75 + 5.15 = 30.90   0.9: 46.35 + 9.27 = 55.62    1.3: 66.95 + 13.39 = 80.34
#   ≤ 1,000:   0.5: 46.50 + 9.30 = 55.80   0.9: 83.70 + 16.74 = 100.44  1.3: 120.90 + 20.00 = 140.90
#                                                                  (20 % would be 24.18: capped)
DOMAIN_TABLE = {
    "≤ 50": (1_850, {5: 1_890, 9: 3_402, 13: 4_914}),
    "50.01–500": (30_000, {5: 3_090, 9: 5_562, 13: 8_034}),
    "500.01–1,000": (75_000, {5: 5_580, 9: 10_044, 13: 14_090}),
}


@pytest.mark.parametrize("row", DOMAIN_TABLE)
@pytest.mark.parametrize("tenths", [5, 9, 13])
def test_max_collection_fee_domain_table(row: str, tenths: int) -> None:
    claim, expected = DOMAIN_TABLE[row]
    assert max_collection_fee(claim, tenths) == expected[tenths]


@pytest.mark.parametrize(
    ("claim", "row"),
    [
        (5_000, "≤ 50"),  # 50.00 € is still in the first row
        (5_001, "50.01–500"),
        (50_000, "50.01–500"),
        (50_001, "500.01–1,000"),
        (100_000, "500.01–1,000"),
    ],
)
def test_max_collection_fee_row_boundaries(claim: int, row: str) -> None:
    assert max_collection_fee(claim, 9) == DOMAIN_TABLE[row][1][9]


def test_disputed_small_claim_uses_the_normal_table() -> None:
    # § 13 (2) RVG's 31.50 € is for undisputed claims only: 0.5 × 51.50 = 25.75 + 5.15 = 30.90
    assert max_collection_fee(1_850, 5, undisputed=False) == 3_090


@pytest.mark.parametrize("tenths", [4, 14, True])
def test_collection_rate_bounds(tenths: int) -> None:
    with pytest.raises(ValueError, match="rate_tenths"):
        max_collection_fee(30_000, tenths)


# --------------------------------------------------------------------------- Mahnantrag


def test_mahnantrag_fields_consumer_course() -> None:
    invoices = [
        Invoice(number="R-2026-0001", date="2026-11-27", due="2026-12-01", amount=9_900),
        Invoice(number="R-2026-0002", date="2026-12-27", due="2027-01-01", amount=9_900),
    ]
    fields = mahnantrag_fields(
        "course",
        invoices,
        "consumer",
        ancillary=[
            AncillaryClaim(MAHNKOSTEN, 500),  # two Mahnungen at 2.50 €
            AncillaryClaim(RUECKLASTSCHRIFTKOSTEN, 350),
            AncillaryClaim(INKASSOKOSTEN, 0),  # nothing to claim: left out
        ],
    )
    assert (fields.catalogue_number, fields.catalogue_label) == (16, "Lehrgangs-/Unterrichtskosten")
    assert fields.principal == 19_800  # 2 × 99.00 €
    assert (fields.interest_mode, fields.interest_pp) == ("pp_above_base", 5)
    assert fields.claims[0] == MahnantragClaim(
        catalogue_number=16,
        catalogue_label="Lehrgangs-/Unterrichtskosten",
        invoice_number="R-2026-0001",
        invoice_date="2026-11-27",
        principal=9_900,
        interest_mode="pp_above_base",
        interest_pp=5,
        interest_from="2026-12-02",  # the day after the due date
    )
    assert fields.claims[1].interest_from == "2027-01-02"
    assert [(a.label, a.amount) for a in fields.ancillary] == [
        ("Mahnkosten", 500),
        ("Rücklastschriftkosten", 350),
    ]
    # value 198.00 € ≤ 500 €: 0.5 × 40 € = 20 € → minimum 38 €
    assert fields.court_fee_estimate == 3_800


def test_mahnantrag_fields_business_and_no_interest() -> None:
    invoices = [Invoice("R-7", "2026-11-27", "2026-12-01", 150_000)]
    business = mahnantrag_fields("coaching", invoices, "business")
    assert (business.catalogue_number, business.interest_pp) == (5, 9)
    assert business.court_fee_estimate == 4_100  # 1,500 € → 0.5 × 82 €
    plain = mahnantrag_fields("coaching", invoices, "business", interest=False)
    assert (plain.interest_mode, plain.interest_pp) == ("none", 0)
    assert plain.claims[0].interest_from == ""


def test_mahnantrag_needs_an_unpaid_invoice() -> None:
    with pytest.raises(ValueError, match="at least one"):
        mahnantrag_fields("course", [], "consumer")
    with pytest.raises(ValueError, match="unpaid amount"):
        mahnantrag_fields("course", [Invoice("R-1", "2026-11-27", "2026-12-01", 0)], "consumer")


def test_interest_from() -> None:
    assert interest_from("2026-12-31") == "2027-01-01"
    assert interest_from("2028-02-28") == "2028-02-29"


# --------------------------------------------------------------------------- decide_handoff


@pytest.mark.parametrize(
    ("principal", "route", "contested", "approval", "expected"),
    [
        (4_999, "auto", True, True, ("write_off", "")),  # too small, whatever else
        (19_800, "auto", False, False, ("hand_off", "court")),  # auto: court
        (19_800, "inkasso", False, False, ("hand_off", "inkasso")),
        # contested: automatic escalation stops (SPEC §4 contest); offered route inkasso,
        # even when the policy says court (never court automatically)
        (19_800, "auto", True, False, ("await_approval", "inkasso")),
        (19_800, "court", True, False, ("await_approval", "inkasso")),
        (19_800, "court", False, True, ("await_approval", "court")),
    ],
)
def test_decide_handoff(
    principal: int, route: str, contested: bool, approval: bool, expected: tuple[str, str]
) -> None:
    from domain.collection import decide_handoff

    decision = decide_handoff(principal, 5_000, route, contested, approval)
    assert (decision.action, decision.route) == expected
    assert decision.reason


def test_approved_route() -> None:
    from domain.collection import approved_route

    assert approved_route(None, "auto", contested=False) == "court"
    assert approved_route(None, "court", contested=True) == "inkasso"  # the workflow said court
    assert approved_route("court", "auto", contested=True) == "court"  # a human may choose it
    with pytest.raises(ValueError, match="court or inkasso"):
        approved_route("auto", "auto", contested=False)


# --------------------------------------------------------------------------- receivables age


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(0, "0-30"), (30, "0-30"), (31, "31-60"), (60, "31-60"), (61, "61-90"), (90, "61-90"),
     (91, "90+"), (4_000, "90+")],
)  # fmt: skip
def test_age_bucket(days: int, bucket: str) -> None:
    from domain.collection import age_bucket

    assert age_bucket(days) == bucket


def test_age_days() -> None:
    from domain.collection import age_bucket, age_days

    # 2026-10-01 → 2026-12-05: 30 (Oct) + 30 (Nov) + 5 = 65 days
    assert age_days("2026-10-01", "2026-12-05") == 65
    assert age_bucket(age_days("2026-10-01", "2026-12-05")) == "61-90"
    assert age_days("2026-12-10", "2026-12-05") == 0  # not yet due: no negative age
    with pytest.raises(ValueError, match="days must not be negative"):
        age_bucket(-1)


# -- limitation after hand-off (issue 12) ------------------------------------------------------


def test_a_title_runs_thirty_years_from_the_day_it_became_final() -> None:
    from domain.collection import title_limitation_end

    assert title_limitation_end("2027-03-15") == "2057-03-15"
    assert title_limitation_end("2028-02-29") == "2058-02-28"  # § 188 (3) BGB
    with pytest.raises(ValueError):
        title_limitation_end("15.03.2027")


def test_limitation_of_a_case_regular_then_title() -> None:
    from domain.collection import REGULAR_BASIS, TITLE_BASIS, limitation

    regular = limitation([(2, "2027-02-01"), (1, "2026-12-01")], None)
    assert [(x.installment, x.arose, x.ends) for x in regular.regular] == [
        (1, "2026-12-01", "2029-12-31"),
        (2, "2027-02-01", "2030-12-31"),
    ]
    assert regular.title is None and regular.next_end == "2029-12-31"
    assert regular.regular[0].basis == REGULAR_BASIS
    titled = limitation([(1, "2026-12-01")], "2027-06-30")
    assert titled.title is not None and titled.title.basis == TITLE_BASIS
    assert (titled.title.arose, titled.title.ends, titled.next_end) == (
        "2027-06-30",
        "2057-06-30",
        "2057-06-30",
    )
    # § 201 sentence 1: never before the claim arose
    early = limitation([(3, "2027-08-01")], "2027-06-30")
    assert early.title is not None and early.title.arose == "2027-08-01"
