"""Allocation of a payment to the open claim, §§ 366, 367 BGB (SPEC §2 "Claim").

The law:

* § 367 (1) BGB: "Hat der Schuldner außer der Hauptleistung Zinsen und Kosten zu entrichten,
  so wird eine zur Tilgung der ganzen Schuld nicht ausreichende Leistung zunächst auf die
  Kosten, dann auf die Zinsen und zuletzt auf die Hauptleistung angerechnet."
* § 366 (2) BGB (several debts, no determination by the debtor): first the debt that is due,
  among due debts the one offering the creditor less security, among equally secure ones
  the one more burdensome for the debtor, among equally burdensome ones **the older one**,
  and debts of equal age **proportionally** ("bei gleichem Alter jede Schuld
  verhältnismäßig").

The rule applied here (SPEC §2: "costs → interest → principal, oldest installment first"):

1. by kind: all costs, then all interest, then all principal (§ 367 (1));
2. within a kind, oldest ``due`` first: the installments of one contract are equally secure
   (none is secured) and equally burdensome, so § 366 (2) comes down to age;
3. items of one kind with the *same* due date share what is left proportionally to their
   amounts (§ 366 (2) last clause). Cents are shared by the largest-remainder method; a
   leftover cent goes to the larger fractional share, ties to the item listed first.

"Kosten" in § 367 are the costs of pursuing the claim: dunning fees, bank return-debit costs,
collection costs and the § 288 (5) BGB lump sum all go into ``costs``.

Not modelled: a debtor's own determination (§ 366 (1)); under § 367 (2) the creditor could
refuse such a payment, and a support agent records it as a settlement instead.

Pure integers (minor units); items are plain dataclasses (str/int fields) so a Claim can be
part of a workflow's state.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Final

from domain.interest import check_amount, iso_date

COSTS: Final = "costs"
INTEREST: Final = "interest"
PRINCIPAL: Final = "principal"
KINDS: Final = (COSTS, INTEREST, PRINCIPAL)  # § 367 (1) BGB order


@dataclass
class Item:
    """One open amount: an installment's principal, its interest, a fee or a cost."""

    key: str  # unique within its kind, e.g. "inst-3", "fee:mahnung_1", "interest:inst-3"
    amount: int  # minor units, ≥ 0
    due: str  # ISO date: when it fell due (orders items by age, § 366 (2) BGB)


@dataclass
class Claim:
    costs: list[Item] = field(default_factory=list)
    interest: list[Item] = field(default_factory=list)
    principal: list[Item] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Item]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        items: list[Item] = getattr(self, kind)
        return items

    def kind_total(self, kind: str) -> int:
        return sum(item.amount for item in self.of_kind(kind))

    @property
    def total(self) -> int:
        """Everything owed: costs + interest + principal."""
        return sum(self.kind_total(kind) for kind in KINDS)


@dataclass
class AllocationPart:
    key: str
    kind: str  # costs | interest | principal
    amount: int


@dataclass
class Allocation:
    """Where a payment went. ``remainder`` is the overpayment (payment − claim total, if
    positive); ``outstanding`` is the claim after the payment (items paid off are dropped)."""

    payment: int
    parts: list[AllocationPart] = field(default_factory=list)
    remainder: int = 0
    outstanding: Claim = field(default_factory=Claim)

    @property
    def applied(self) -> int:
        return sum(part.amount for part in self.parts)

    def applied_to(self, kind: str) -> int:
        return sum(part.amount for part in self.parts if part.kind == kind)


def _checked(claim: Claim, kind: str) -> list[Item]:
    items = claim.of_kind(kind)
    seen: set[str] = set()
    for item in items:
        if not isinstance(item.key, str) or not item.key:
            raise ValueError(f"{kind}: item key must be a non-empty string, got {item.key!r}")
        if item.key in seen:
            raise ValueError(f"{kind}: duplicate item key {item.key!r}")
        seen.add(item.key)
        check_amount(item.amount, f"{kind} {item.key} amount")
        iso_date(item.due, f"{kind} {item.key} due")
    return items


def _share(available: int, amounts: list[int]) -> list[int]:
    """Split ``available`` (< sum(amounts)) proportionally; largest remainder, ties first."""
    total = sum(amounts)
    floors = [available * amount // total for amount in amounts]
    remainders = [available * amount % total for amount in amounts]
    left = available - sum(floors)
    order = sorted(range(len(amounts)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def _by_age(items: list[Item]) -> Iterator[list[Item]]:
    """Groups of items with the same due date, oldest first; input order kept within a group."""
    ordered = sorted(items, key=lambda item: item.due)  # ISO dates sort as strings; stable
    for _, group in groupby(ordered, key=lambda item: item.due):
        yield list(group)


def allocate(payment: int, claim: Claim) -> Allocation:
    """Allocate ``payment`` to ``claim``: costs → interest → principal, oldest first."""
    check_amount(payment, "payment")
    left = payment
    parts: list[AllocationPart] = []
    paid: dict[tuple[str, str], int] = {}
    for kind in KINDS:
        for same_age in _by_age(_checked(claim, kind)):
            group = [item for item in same_age if item.amount > 0]
            if not group or left == 0:
                continue
            amounts = [item.amount for item in group]
            shares = amounts if left >= sum(amounts) else _share(left, amounts)
            for item, share in zip(group, shares, strict=True):
                if share:
                    parts.append(AllocationPart(key=item.key, kind=kind, amount=share))
                    paid[(kind, item.key)] = share
            left -= sum(shares)
    outstanding = Claim(
        **{
            kind: [
                Item(key=item.key, amount=item.amount - paid.get((kind, item.key), 0), due=item.due)
                for item in claim.of_kind(kind)
                if item.amount - paid.get((kind, item.key), 0) > 0
            ]
            for kind in KINDS
        }
    )
    return Allocation(payment=payment, parts=parts, remainder=left, outstanding=outstanding)
