"""Statutory default interest for the workflow (§ 288 BGB, domain.interest).

An activity, not workflow code, because the base-rate table can be extended by
configuration (`MAHNWERK_BASE_RATES`): the workflow must not read settings, and the
recorded result keeps replays deterministic.
"""

from __future__ import annotations

from temporalio import activity

from core.settings import Settings
from domain.interest import MissingBaseRate, claim_interest, with_rates
from domain.schedule import berlin_date
from workflows.types import InterestInput, InterestOutput


class ClaimActivities:
    def __init__(self, settings: Settings) -> None:
        self.rates = with_rates(settings.extra_base_rates)

    @activity.defn(name="claim_interest")
    def claim_interest(self, inp: InterestInput) -> InterestOutput:
        items = [(line.amount, berlin_date(line.due_at)) for line in inp.lines]
        try:
            results = claim_interest(items, berlin_date(inp.as_of), inp.customer_type, self.rates)
        except MissingBaseRate as exc:
            # Never guess a rate: the caller allocates without interest and says why.
            return InterestOutput(amounts=[0] * len(items), total=0, unavailable=str(exc))
        amounts = [r.amount for r in results]
        return InterestOutput(amounts=amounts, total=sum(amounts))
