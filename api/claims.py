"""The claim as the API reads it: computed as of today from the facts the workflow stored
in the ledger (``contracts.claim_facts``), by the one function that computes claims
(``domain.claim.compute_claim``, issue 11), as demanded (``domain.claim.demanded``: without
what is being debited). No Temporal call."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from domain.claim import (
    Claim,
    ClaimFacts,
    CostFact,
    FeeFact,
    InstallmentFact,
    PaymentFact,
    WaiverFact,
    compute_claim,
    demanded,
)
from domain.interest import BaseRate
from domain.schedule import berlin_date


def facts_from_json(data: dict[str, Any]) -> ClaimFacts:
    """``dataclasses.asdict(ClaimFacts)`` as stored by the ledger, back into the dataclass."""
    return ClaimFacts(
        customer_type=data["customer_type"],
        installments=[InstallmentFact(**i) for i in data.get("installments", [])],
        payments=[PaymentFact(**p) for p in data.get("payments", [])],
        fees=[FeeFact(**f) for f in data.get("fees", [])],
        costs=[CostFact(**c) for c in data.get("costs", [])],
        waivers=[WaiverFact(**w) for w in data.get("waivers", [])],
        interest=data.get("interest", "statutory"),
        lump_sums=data.get("lump_sums", True),
        rates=[BaseRate(**r) for r in data.get("rates", [])],
    )


def today() -> str:
    return berlin_date(datetime.now(UTC))


def claim_as_of(
    facts: dict[str, Any], day: str | None = None, written: dict[str, Any] | None = None
) -> Claim:
    """The claim as of `day` (default today, Berlin) — never before the day of the claim
    the workflow last wrote (`written`): a clock behind the workflow's (the time-skipping
    test server runs ahead of the wall clock) must not drop facts already recorded."""
    as_of = day or today()
    if written and isinstance(written.get("as_of"), str) and written["as_of"] > as_of:
        as_of = written["as_of"]
    defaulted = set(facts.get("collecting_defaulted", []))
    collecting = {seq: seq in defaulted for seq in facts.get("collecting", [])}
    return demanded(compute_claim(facts_from_json(facts), as_of), collecting)


def claim_json(claim: Claim) -> dict[str, Any]:
    """The SPEC claim shape (``as_of``, the parts, ``total``, ``items``) plus the claim's
    other fields (fee, cost and lump-sum items, allocation of each payment, …)."""
    return asdict(claim)
