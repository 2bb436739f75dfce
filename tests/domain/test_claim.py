"""The claim, exact (domain.claim; SPEC §2 "Claim", issue 11): hand-computed cases.

Rates used (domain.interest.BASE_RATES): base 1.27 % from 2025-07-01 and from 2026-01-01, so
a consumer pays 1.27 + 5 = 6.27 % (627 bp) and a business 1.27 + 9 = 10.27 % (1027 bp) on
every day between 2025-07-01 and 2026-06-30. The rate from 2026-07-01 is not in the table.
Interest on a principal P for d days: P × rate_bp × d / (10,000 × 365) minor units.
"""

from dataclasses import asdict
from fractions import Fraction

import pytest
from temporalio.converter import DataConverter

from domain.claim import (
    COLLECTION,
    RESIDUAL_CLAIM,
    RESIDUAL_NONE,
    RESIDUAL_WRITE_OFF,
    RETURN_DEBIT,
    Claim,
    ClaimFacts,
    CostFact,
    FeeFact,
    InstallmentFact,
    PaymentFact,
    WaiverFact,
    claim_parts,
    compute_claim,
    debit_amount,
    oldest_open_due,
    residual_action,
)
from domain.interest import BASE_RATES, BaseRate, default_interest, with_rates

SPEC_KEYS = {"as_of", "principal", "interest", "fees", "costs", "lump_sums", "total", "items"}
SPEC_ITEM_KEYS = {"installment", "principal", "interest", "interest_periods", "paid"}


def parts_sum(claim: Claim) -> int:
    return claim.principal + claim.interest + claim.fees + claim.costs + claim.lump_sums


# ---------------------------------------------------------------- interest after partial payments


def test_interest_after_two_partial_payments_on_different_days() -> None:
    # Consumer, one installment of 100.00 € due Sunday 2026-02-01; bank transfers of 40.00 €
    # on 2026-03-03 and 30.00 € on 2026-04-02; claim as of 2026-05-02. Rate 627 bp throughout.
    #
    # 1) 2026-02-02 … 2026-03-03 (27 days in Feb + 3 in Mar = 30 days) on 10,000:
    #      10,000 × 627 × 30 / 3,650,000 = 18,810 / 365 = 51.534… → accrued, rounded: 52
    #    Payment 1 (4,000), § 367: interest 52 first, then principal 3,948 → open 6,052.
    # 2) 2026-03-04 … 2026-04-02 (28 + 2 = 30 days) on 6,052:
    #      6,052 × 627 × 30 / 3,650,000 = 113,838,120 / 3,650,000 = 31.188…
    #    cumulative exact 51.534 + 31.188 = 82.722… → rounded 83; open interest 83 − 52 = 31.
    #    Payment 2 (3,000): interest 31, principal 2,969 → open 3,083.
    # 3) 2026-04-03 … 2026-05-02 (28 + 2 = 30 days) on 3,083:
    #      3,083 × 627 × 30 / 3,650,000 = 57,991,230 / 3,650,000 = 15.888…
    #    cumulative exact 98.610… → rounded 99; open interest 99 − 52 − 31 = 16.
    # Claim: principal 30.83 €, interest 0.16 €, total 30.99 €.
    # (The old computation — 3,083 from the due date for 90 days, 47.66 → 48, minus the 83
    # already paid — found nothing open at all.)
    facts = ClaimFacts(
        "consumer",
        [InstallmentFact(1, "2026-02-01", 10_000)],
        payments=[PaymentFact("p1", "2026-03-03", 4_000), PaymentFact("p2", "2026-04-02", 3_000)],
    )
    claim = compute_claim(facts, "2026-05-02")
    assert (claim.principal, claim.interest, claim.total) == (3_083, 16, 3_099)
    (item,) = claim.items
    assert item.interest_accrued == 99
    assert (item.paid.principal, item.paid.interest) == (6_917, 83)
    assert [(s.start, s.end, s.days, s.principal) for s in item.interest_periods] == [
        ("2026-02-02", "2026-03-03", 30, 10_000),
        ("2026-03-04", "2026-04-02", 30, 6_052),
        ("2026-04-03", "2026-05-02", 30, 3_083),
    ]
    exact = sum(Fraction(s.exact) for s in item.interest_periods)
    assert Fraction(98_610, 1000) < exact < Fraction(98_611, 1000)
    # How each payment was allocated (§ 367 (1) BGB: interest before principal).
    assert [[(p.part, p.amount) for p in a.parts] for a in claim.payments] == [
        [("interest", 52), ("principal", 3_948)],
        [("interest", 31), ("principal", 2_969)],
    ]
    assert claim.paid.interest == 83 and claim.paid.principal == 6_917


def test_without_payments_the_claim_interest_equals_domain_interest() -> None:
    # One rounding per installment: the same figure as domain.interest.default_interest.
    facts = ClaimFacts("business", [InstallmentFact(1, "2025-11-30", 123_456)])
    claim = compute_claim(facts, "2026-06-30")
    expected = default_interest(123_456, "2025-11-30", "2026-06-30", "business")
    assert claim.interest == expected.amount > 0
    assert claim.items[0].interest_periods[0].start == "2025-12-01"


def test_payment_on_the_due_date_leaves_nothing() -> None:
    # Paid on the due date: no day of default, no interest, no lump sum (§ 286 BGB).
    facts = ClaimFacts(
        "business",
        [InstallmentFact(1, "2026-03-01", 9_900)],
        payments=[PaymentFact("pi_1", "2026-03-01", 9_900, installment=1)],
    )
    claim = compute_claim(facts, "2026-04-01")
    assert claim.total == 0 and claim.items == [] and claim.lump_sum_items == []


def test_installments_not_yet_due_are_not_claimed() -> None:
    facts = ClaimFacts(
        "consumer",
        [InstallmentFact(1, "2026-03-01", 9_900), InstallmentFact(2, "2026-04-01", 9_900)],
    )
    claim = compute_claim(facts, "2026-03-31")
    assert [i.installment for i in claim.items] == [1]
    assert claim.principal == 9_900
    assert oldest_open_due(claim) == "2026-03-01"


# ---------------------------------------------------------------- business: lump sums, crediting


def test_business_customer_two_installments_lump_sums_credited_against_collection_costs() -> None:
    # Business customer, two installments of 500.00 € due 2026-01-15 and 2026-02-15, neither
    # paid. Mahnung fees 2.50 € on 2026-01-29 and 2026-02-08; collection costs 100.44 €
    # (Inkasso, 0.9 fee on 1,000 €: 93.00 × 0.9 = 83.70 + 20 % post 16.74) on 2026-03-01.
    # Claim as of 2026-03-15.
    #
    # § 288 (5) BGB: 40.00 € per installment in default: on 2026-01-16 and 2026-02-16 → 80.00 €.
    # § 288 (5) sentence 3: credited against the costs of legal pursuit, min(L, P):
    #   01-29 fee 250:    L = 4,000, P = 250    → credit 250 (fee 1 open 0)
    #   02-08 fee 250:    L = 4,000, P = 500    → credit 500 (fee 2 open 0)
    #   02-16 lump sum 2: L = 8,000, P = 500    → credit stays 500
    #   03-01 Inkasso:    L = 8,000, P = 10,544 → credit 8,000: 7,500 of the 10,044 absorbed,
    #                                              2,544 open
    # So the creditor gets max(L, P) = 10,544 = lump sums 8,000 + costs 2,544 (fees 0).
    # Interest at 1027 bp:
    #   inst 1: 2026-01-16 … 2026-03-15 = 16 + 28 + 15 = 59 days:
    #           50,000 × 1027 × 59 / 3,650,000 = 3,029,650,000 / 3,650,000 = 830.04 → 830
    #   inst 2: 2026-02-16 … 2026-03-15 = 13 + 15 = 28 days:
    #           50,000 × 1027 × 28 / 3,650,000 = 1,437,800,000 / 3,650,000 = 393.92 → 394
    # Total: 100,000 + 1,224 + 0 + 2,544 + 8,000 = 111,768.
    facts = ClaimFacts(
        "business",
        [InstallmentFact(1, "2026-01-15", 50_000), InstallmentFact(2, "2026-02-15", 50_000)],
        fees=[
            FeeFact("1:mahnung_1", "2026-01-29", 250, stage="mahnung_1"),
            FeeFact("1:mahnung_2", "2026-02-08", 250, stage="mahnung_2"),
        ],
        costs=[CostFact("inkasso", "2026-03-01", 10_044, kind=COLLECTION)],
    )
    claim = compute_claim(facts, "2026-03-15")
    assert [i.interest for i in claim.items] == [830, 394]
    assert (claim.principal, claim.interest, claim.fees, claim.costs, claim.lump_sums) == (
        100_000,
        1_224,
        0,
        2_544,
        8_000,
    )
    assert claim.total == 111_768 == parts_sum(claim)
    assert claim.credited == 8_000
    assert [(c.on, c.amount, c.installment) for c in claim.lump_sum_items] == [
        ("2026-01-16", 4_000, 1),
        ("2026-02-16", 4_000, 2),
    ]
    assert [(c.amount, c.credited, c.open) for c in claim.fee_items] == [(250, 250, 0)] * 2
    assert [(c.label, c.amount, c.credited, c.open) for c in claim.cost_items] == [
        ("Inkassokosten", 10_044, 7_500, 2_544)
    ]


def test_consumers_owe_no_lump_sum() -> None:
    facts = ClaimFacts("consumer", [InstallmentFact(1, "2026-01-15", 50_000)])
    assert compute_claim(facts, "2026-03-15").lump_sums == 0


def test_a_second_lump_sum_does_not_credit_twice() -> None:
    # Business; installment 1 due 2026-01-10, installment 2 due 2026-02-10, neither paid.
    #   01-11 lump 1 (4,000); 01-20 fee 250 → credit min(4,000, 250) = 250 against the fee.
    #   01-25 transfer of 40.00 €: § 367, costs first → lump 1 paid in full.
    #   02-11 lump 2 (4,000): L = 8,000, P = 250 → credit stays 250; lump 2 open 4,000.
    facts = ClaimFacts(
        "business",
        [InstallmentFact(1, "2026-01-10", 10_000), InstallmentFact(2, "2026-02-10", 10_000)],
        fees=[FeeFact("f1", "2026-01-20", 250)],
        payments=[PaymentFact("t1", "2026-01-25", 4_000)],
    )
    claim = compute_claim(facts, "2026-02-11")
    assert [(c.paid, c.open) for c in claim.lump_sum_items] == [(4_000, 0), (0, 4_000)]
    assert claim.fee_items[0].credited == 250 and claim.fees == 0
    assert claim.credited == 250


def test_credit_is_taken_from_a_new_lump_sum_when_the_pursuit_costs_were_paid() -> None:
    # Business; installments of 100.00 € due 2026-01-10 and 2026-02-10.
    #   01-11 lump 1 (4,000)
    #   01-20 fee 250              L = 4,000, P = 250    → credit 250 (fee open 0)
    #   02-01 Inkasso 10,044       L = 4,000, P = 10,294 → credit 4,000: 3,750 of the Inkasso
    #                              costs absorbed, 6,294 open
    #   02-05 the customer pays everything open (so the Inkasso costs' 6,294 are paid)
    #   02-11 lump 2 (4,000)       L = 8,000, P = 10,294 → credit 8,000: the 4,000 more cannot
    #                              come from paid costs, so lump 2 is absorbed (open 0).
    # The creditor gets lump 1 4,000 + Inkasso 6,294 = 10,294 = max(L, P): never both.
    facts = ClaimFacts(
        "business",
        [InstallmentFact(1, "2026-01-10", 10_000), InstallmentFact(2, "2026-02-10", 10_000)],
        fees=[FeeFact("f1", "2026-01-20", 250)],
        costs=[CostFact("inkasso", "2026-02-01", 10_044, kind=COLLECTION)],
    )
    before = compute_claim(facts, "2026-02-05")
    assert before.costs == 6_294 and before.lump_sums == 4_000 and before.credited == 4_000
    facts.payments = [PaymentFact("all", "2026-02-05", before.total)]
    claim = compute_claim(facts, "2026-02-11")
    assert [(c.credited, c.paid, c.open) for c in claim.lump_sum_items] == [
        (0, 4_000, 0),
        (4_000, 0, 0),
    ]
    assert claim.credited == 8_000 and claim.lump_sums == 0 and claim.costs == 0
    # Installment 2: one day of default (02-11) at 1027 bp: 10,000 × 1027 / 3,650,000 = 2.81 → 3
    assert (claim.principal, claim.interest) == (10_000, 3)


# ---------------------------------------------------------------- SEPA return and two Mahnungen


def sepa_case() -> ClaimFacts:
    # Consumer, 99.00 € due 2026-03-01, debited by SEPA, returned on 2026-03-06 (bank costs
    # 3.50 €: damage, not a dunning fee); Mahnung fees 2.50 € on 2026-03-15 and 2026-03-25.
    return ClaimFacts(
        "consumer",
        [InstallmentFact(1, "2026-03-01", 9_900)],
        fees=[
            FeeFact("1:mahnung_1", "2026-03-15", 250, stage="mahnung_1"),
            FeeFact("1:mahnung_2", "2026-03-25", 250, stage="mahnung_2"),
        ],
        costs=[CostFact("return:pi_1", "2026-03-06", 350, kind=RETURN_DEBIT, installment=1)],
    )


def test_sepa_return_and_two_mahnungen_costs_and_fees_itemised_apart() -> None:
    # As of 2026-03-31: interest 2026-03-02 … 2026-03-31 = 30 days on 9,900 at 627 bp:
    #   9,900 × 627 × 30 / 3,650,000 = 186,219,000 / 3,650,000 = 51.02 → 51
    # Claim: principal 9,900 + interest 51 + fees 500 + costs 350 = 10,801.
    claim = compute_claim(sepa_case(), "2026-03-31")
    assert (claim.principal, claim.interest, claim.fees, claim.costs, claim.lump_sums) == (
        9_900,
        51,
        500,
        350,
        0,
    )
    assert claim.total == 10_801 == parts_sum(claim)
    assert [(c.label, c.stage, c.amount) for c in claim.fee_items] == [
        ("Mahnkosten", "mahnung_1", 250),
        ("Mahnkosten", "mahnung_2", 250),
    ]
    assert [(c.label, c.kind, c.amount, c.installment) for c in claim.cost_items] == [
        ("Rücklastschriftkosten", "return_debit", 350, 1)
    ]
    assert claim.credited == 0  # consumer: no lump sums to credit
    # As of 2026-03-20 the second fee is not charged yet: facts after as_of do not count.
    assert compute_claim(sepa_case(), "2026-03-20").fees == 250


def test_paying_exactly_the_claim_leaves_nothing_open() -> None:
    facts = sepa_case()
    facts.payments = [PaymentFact("transfer", "2026-03-31", 10_801)]
    claim = compute_claim(facts, "2026-03-31")
    assert claim.total == 0 and claim.credit == 0 and claim.items == []
    # § 367 (1) BGB: costs (oldest first: return-debit costs 03-06, fee 03-15, fee 03-25),
    # then interest, then principal.
    assert [(p.part, p.amount) for p in claim.payments[0].parts] == [
        ("costs", 350),
        ("fees", 250),
        ("fees", 250),
        ("interest", 51),
        ("principal", 9_900),
    ]
    assert asdict(claim.paid) == {
        "principal": 9_900,
        "interest": 51,
        "fees": 500,
        "costs": 350,
        "lump_sums": 0,
    }


def test_a_principal_debit_leaves_the_residual_to_the_policy() -> None:
    # collect: principal — the retry takes 99.00 € for installment 1 on 2026-03-31 and pays
    # its principal (§ 366 (1) BGB determination); 51 + 500 + 350 = 901 stay open.
    facts = sepa_case()
    before = compute_claim(facts, "2026-03-31")
    assert debit_amount(before, "principal", 1) == 9_900
    assert debit_amount(before, "claim", 1) == 10_801
    facts.payments = [PaymentFact("pi_2", "2026-03-31", 9_900, installment=1)]
    claim = compute_claim(facts, "2026-03-31")
    assert (claim.principal, claim.interest, claim.fees, claim.costs) == (0, 51, 500, 350)
    assert claim.total == 901
    assert residual_action(claim, 500) == RESIDUAL_CLAIM  # 9.01 € ≥ 5.00 €: a final notice
    assert residual_action(claim, 1_000) == RESIDUAL_WRITE_OFF  # below 10.00 €: written off
    assert residual_action(before, 1_000) == RESIDUAL_NONE  # principal still open
    # The open interest stops growing with the principal paid: as of 2026-04-30 still 51.
    assert compute_claim(facts, "2026-04-30").interest == 51


def test_overpayment_prepays_the_next_installment_then_is_credit() -> None:
    facts = ClaimFacts(
        "consumer",
        [InstallmentFact(1, "2026-03-01", 5_000), InstallmentFact(2, "2026-04-01", 5_000)],
        payments=[PaymentFact("t", "2026-03-01", 12_000)],
    )
    claim = compute_claim(facts, "2026-03-01")
    assert claim.total == 0
    assert (claim.prepaid, claim.credit) == (5_000, 2_000)
    assert compute_claim(facts, "2026-04-05").total == 0  # installment 2 was prepaid


# ---------------------------------------------------------------- waivers, modes, base rates


def test_waivers_give_up_what_is_open_then() -> None:
    facts = sepa_case()
    facts.waivers = [WaiverFact("w1", "2026-03-20", fees=True, interest=True)]
    claim = compute_claim(facts, "2026-03-31")
    # The fee of 03-15 was waived; the one of 03-25 was charged after the waiver.
    assert [(c.waived, c.open) for c in claim.fee_items] == [(250, 0), (0, 250)]
    # Interest 2026-03-02 … 03-20 = 19 days: 9,900 × 627 × 19 / 3,650,000 = 32.31 → 32 waived,
    # and none accrues afterwards.
    assert claim.waived.interest == 32 and claim.interest == 0
    assert claim.interest_mode == "waived" and claim.interest_until == "2026-03-20"
    assert claim.costs == 350  # costs were not waived
    assert claim.total == 9_900 + 250 + 350


def test_a_waiver_that_does_not_stop_interest_gives_up_only_what_is_open_then() -> None:
    # The residual write-off (policy residual.write_off_below): what is open on 03-20 is
    # given up, but interest keeps accruing afterwards on principal still open.
    facts = sepa_case()
    facts.waivers = [WaiverFact("w1", "2026-03-20", fees=True, interest=True, stop_interest=False)]
    claim = compute_claim(facts, "2026-03-31")
    # 2026-03-02 … 03-20 = 19 days: 9,900 × 627 × 19 / 3,650,000 = 32.31 → 32 waived;
    # 03-02 … 03-31 = 30 days: 9,900 × 627 × 30 / 3,650,000 = 51.02 → 51 accrued, 51 − 32 = 19.
    assert claim.waived.interest == 32 and claim.interest == 19
    assert claim.interest_mode == "statutory" and claim.interest_until == "2026-03-31"


def test_a_write_off_gives_up_principal_and_everything_open_then() -> None:
    # issue 12: writing the claim off waives the installment's principal (and, in the same
    # fact, fees, costs and interest open that day); nothing accrues on it afterwards, and a
    # later installment is claimed as usual.
    facts = sepa_case()
    facts.installments.append(InstallmentFact(2, "2026-04-01", 9_900))
    facts.waivers = [
        WaiverFact(
            "write_off:1",
            "2026-03-20",
            fees=True,
            costs=True,
            lump_sums=True,
            interest=True,
            stop_interest=False,
            principal=[1],
        )
    ]
    written_off = compute_claim(facts, "2026-03-31")
    # interest 03-02 … 03-20 = 19 days on 9,900: 32.31 → 32, waived with the principal
    assert written_off.waived.principal == 9_900 and written_off.waived.interest == 32
    assert written_off.waived.fees == 250 and written_off.waived.costs == 350
    # the fee of 03-25 came after the write-off
    assert written_off.total == 250 and written_off.principal == 0 and written_off.interest == 0
    # installment 2 falls due and into default as usual: 9,900 × 627 × 10 / 3,650,000 = 17.0
    later = compute_claim(facts, "2026-04-11")
    assert later.principal == 9_900 and later.interest == 17
    assert [item.installment for item in later.items] == [2]
    facts.waivers[0].principal = [9]
    with pytest.raises(ValueError, match="installment 9"):
        compute_claim(facts, "2026-03-31")


def test_policy_without_interest() -> None:
    facts = sepa_case()
    facts.interest = "none"
    claim = compute_claim(facts, "2026-03-31")
    assert claim.interest == 0 and claim.interest_mode == "none" and claim.interest_until == ""
    assert claim.items[0].interest_periods == []


def test_a_missing_base_rate_is_never_guessed() -> None:
    # The table has no rate from 2026-07-01: interest up to 2026-06-30 only, and the claim
    # names the missing half-year.
    facts = ClaimFacts("consumer", [InstallmentFact(1, "2026-06-20", 10_000)])
    claim = compute_claim(facts, "2026-08-15")
    # 2026-06-21 … 2026-06-30 = 10 days: 10,000 × 627 × 10 / 3,650,000 = 17.18 → 17
    assert claim.interest == 17
    assert (claim.interest_until, claim.missing_base_rate) == ("2026-06-30", "2026-07-01")
    # Supplied (e.g. by MAHNWERK_BASE_RATES), the rate is used: here 127 bp again, so
    # 2026-06-21 … 2026-08-15 = 10 + 31 + 15 = 56 days: 627 × 56 / 365 = 96.19 → 96.
    facts.rates = list(with_rates([BaseRate("2026-07-01", 127, "test")], BASE_RATES))
    claim = compute_claim(facts, "2026-08-15")
    assert claim.interest == 96 and claim.missing_base_rate == ""


# ---------------------------------------------------------------- shape and payload safety


def test_the_claim_serialises_to_the_spec_shape_and_through_temporal() -> None:
    facts = sepa_case()
    facts.payments = [PaymentFact("t", "2026-03-20", 3_000)]
    claim = compute_claim(facts, "2026-03-31")
    data = asdict(claim)
    assert SPEC_KEYS <= set(data)
    assert all(SPEC_ITEM_KEYS <= set(item) for item in data["items"])
    assert data["total"] == sum(data[k] for k in ("principal", "interest", "fees", "costs"))
    # 30.00 € on 2026-03-20: costs 350 + fee 250 (the second is not charged yet), interest
    # 03-02 … 03-20 = 19 days: 9,900 × 627 × 19 / 3,650,000 = 32.31 → 32, principal the rest:
    # 3,000 − 350 − 250 − 32 = 2,368.
    assert data["items"][0]["paid"] == {"principal": 2_368, "interest": 32}
    assert [part for part, _ in claim_parts(claim)] == [
        "principal",
        "interest",
        "fees",
        "costs",
        "lump_sums",
    ]
    converter = DataConverter.default.payload_converter
    for value, cls in ((claim, Claim), (facts, ClaimFacts)):
        (decoded,) = converter.from_payloads(converter.to_payloads([value]), [cls])
        assert decoded == value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: setattr(f, "customer_type", "robot"), "customer_type"),
        (lambda f: setattr(f, "interest", "usury"), "interest must be one of"),
        (lambda f: f.installments.append(InstallmentFact(1, "2026-04-01", 1)), "given twice"),
        (lambda f: f.fees.append(FeeFact("1:mahnung_1", "2026-03-26", 1)), "given twice"),
        (lambda f: f.costs.append(CostFact("c", "2026-03-26", 1, kind="fine")), "kind must be"),
        (lambda f: f.costs.append(CostFact("c", "26.03.2026", 1)), "cost 'c' on"),
        (lambda f: f.payments.append(PaymentFact("p", "2026-03-26", -1)), "must not be negative"),
        (lambda f: f.payments.append(PaymentFact("p", "2026-03-26", 1, installment=7)), "inst"),
    ],
)
def test_bad_facts_are_named(change, message: str) -> None:  # type: ignore[no-untyped-def]
    facts = sepa_case()
    change(facts)
    with pytest.raises(ValueError, match=message):
        compute_claim(facts, "2026-03-31")
