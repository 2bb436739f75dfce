"""Allocation of payments, §§ 366, 367 BGB: costs → interest → principal, oldest first."""

import pytest

from domain.allocation import Allocation, AllocationPart, Claim, Item, allocate


def claim() -> Claim:
    """Two unpaid installments of 99.00 € with a return-debit cost, a Mahnung fee, interest.

    costs:     return-debit:inst-1  3.50 € (due 2026-12-03), fee:mahnung_1 2.50 € (2026-12-15)
    interest:  interest:inst-1      0.80 € (2026-12-01),     interest:inst-2 0.20 € (2027-01-01)
    principal: inst-1              99.00 € (2026-12-01),     inst-2         99.00 € (2027-01-01)
    total = 350 + 250 + 80 + 20 + 9,900 + 9,900 = 20,500 ct
    Listed newest first on purpose: the order of the lists must not matter.
    """
    return Claim(
        costs=[
            Item("fee:mahnung_1", 250, "2026-12-15"),
            Item("return-debit:inst-1", 350, "2026-12-03"),
        ],
        interest=[
            Item("interest:inst-2", 20, "2027-01-01"),
            Item("interest:inst-1", 80, "2026-12-01"),
        ],
        principal=[
            Item("inst-2", 9_900, "2027-01-01"),
            Item("inst-1", 9_900, "2026-12-01"),
        ],
    )


def test_total() -> None:
    assert claim().total == 350 + 250 + 80 + 20 + 9_900 + 9_900 == 20_500
    assert claim().kind_total("costs") == 600
    assert Claim().total == 0


def test_partial_payment_costs_then_interest_then_principal_oldest_first() -> None:
    # 50.00 € = 5,000 ct:
    #   costs, oldest first: return-debit 350 (left 4,650), fee 250 (left 4,400)
    #   interest, oldest first: inst-1 80 (left 4,320), inst-2 20 (left 4,300)
    #   principal, oldest first: inst-1 gets 4,300 of 9,900 → 5,600 open; inst-2 untouched
    result = allocate(5_000, claim())
    assert result.parts == [
        AllocationPart("return-debit:inst-1", "costs", 350),
        AllocationPart("fee:mahnung_1", "costs", 250),
        AllocationPart("interest:inst-1", "interest", 80),
        AllocationPart("interest:inst-2", "interest", 20),
        AllocationPart("inst-1", "principal", 4_300),
    ]
    assert result.remainder == 0
    assert result.applied == 5_000
    assert (result.applied_to("costs"), result.applied_to("interest")) == (600, 100)
    assert result.outstanding == Claim(
        costs=[],
        interest=[],
        principal=[Item("inst-2", 9_900, "2027-01-01"), Item("inst-1", 5_600, "2026-12-01")],
    )
    # 20,500 − 5,000 = 15,500
    assert result.outstanding.total == 15_500


def test_small_payment_stops_inside_the_costs() -> None:
    # 4.00 € = 400 ct: return-debit 350, then 50 of the 250 fee → 200 of it open
    result = allocate(400, claim())
    assert result.parts == [
        AllocationPart("return-debit:inst-1", "costs", 350),
        AllocationPart("fee:mahnung_1", "costs", 50),
    ]
    assert result.outstanding.costs == [Item("fee:mahnung_1", 200, "2026-12-15")]
    assert result.outstanding.total == 20_500 - 400


def test_exact_cover() -> None:
    result = allocate(20_500, claim())
    assert result.remainder == 0
    assert result.applied == 20_500
    assert result.outstanding.total == 0
    assert result.outstanding == Claim()
    assert [part.key for part in result.parts] == [
        "return-debit:inst-1",
        "fee:mahnung_1",
        "interest:inst-1",
        "interest:inst-2",
        "inst-1",
        "inst-2",
    ]


def test_overpayment_leaves_a_remainder() -> None:
    # 250.00 € − 205.00 € = 45.00 € overpaid
    result = allocate(25_000, claim())
    assert result.remainder == 4_500
    assert result.applied == 20_500
    assert result.outstanding.total == 0


def test_zero_payment() -> None:
    assert allocate(0, claim()) == Allocation(payment=0, parts=[], remainder=0, outstanding=claim())


def test_same_due_date_shares_proportionally() -> None:
    # § 366 (2) BGB: "bei gleichem Alter jede Schuld verhältnismäßig"
    # 20.01 € on a = 30.00 € and b = 10.00 €, both due 2026-12-01:
    #   a: 2,001 × 3,000 / 4,000 = 1,500.75 → 1,500 (+ the leftover cent: larger remainder .75)
    #   b: 2,001 × 1,000 / 4,000 =   500.25 →   500
    #   1,500 + 500 = 2,000, 1 cent left → a → 1,501 + 500 = 2,001
    owed = Claim(principal=[Item("a", 3_000, "2026-12-01"), Item("b", 1_000, "2026-12-01")])
    result = allocate(2_001, owed)
    assert result.parts == [
        AllocationPart("a", "principal", 1_501),
        AllocationPart("b", "principal", 500),
    ]
    # equal remainders: the cent goes to the item listed first
    even = Claim(principal=[Item("x", 1_000, "2026-12-01"), Item("y", 1_000, "2026-12-01")])
    assert [p.amount for p in allocate(1_001, even).parts] == [501, 500]


def test_older_debt_first_even_when_smaller() -> None:
    owed = Claim(principal=[Item("new", 100, "2027-02-01"), Item("old", 9_900, "2027-01-01")])
    result = allocate(150, owed)
    assert result.parts == [AllocationPart("old", "principal", 150)]


def test_zero_items_get_no_parts() -> None:
    owed = Claim(costs=[Item("waived", 0, "2026-12-01")], principal=[Item("p", 100, "2026-12-01")])
    result = allocate(100, owed)
    assert result.parts == [AllocationPart("p", "principal", 100)]
    assert result.outstanding == Claim()


@pytest.mark.parametrize(
    ("payment", "owed", "message"),
    [
        (-1, Claim(), "payment must not be negative"),
        (100, Claim(principal=[Item("p", -5, "2026-12-01")]), "must not be negative"),
        (100, Claim(principal=[Item("p", 5, "01.12.2026")]), "ISO date"),
        (
            100,
            Claim(principal=[Item("p", 5, "2026-12-01"), Item("p", 6, "2027-01-01")]),
            "duplicate item key 'p'",
        ),
        (100, Claim(costs=[Item("", 5, "2026-12-01")]), "non-empty string"),
    ],
)
def test_invalid(payment: int, owed: Claim, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        allocate(payment, owed)
