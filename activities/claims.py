"""Claim activities of the workflow: the § 247 BGB base-rate table it computes with, and the
legacy interest computation of contracts started before the claim model (issue 11).

Activities, not workflow code, because the base-rate table can be extended by configuration
(`MAHNWERK_BASE_RATES`): the workflow must not read settings, and the recorded result keeps
replays deterministic.
"""

from __future__ import annotations

from temporalio import activity

from core.settings import Settings
from domain.interest import BaseRate, MissingBaseRate, claim_interest, pinned_rates, with_rates
from domain.schedule import berlin_date
from workflows.types import InterestInput, InterestOutput


class ClaimActivities:
    def __init__(self, settings: Settings) -> None:
        self.rates = with_rates(settings.extra_base_rates)

    @activity.defn(name="base_rates")
    def base_rates(self, today: str) -> list[BaseRate]:
        """The table this worker computes with (the rows in code plus MAHNWERK_BASE_RATES).

        A contract asks when the claim needs a half-year its pinned table lacks (at most
        once a day, workflows.contract `_refresh_rates`); `today` is only for the log."""
        activity.logger.info("base-rate table asked for on %s: %d rows", today, len(self.rates))
        return pinned_rates(self.rates)

    @activity.defn(name="claim_interest")
    def claim_interest(self, inp: InterestInput) -> InterestOutput:
        """Legacy: the settlement of contracts started before PATCH_CLAIM (workflows.base)
        still calls this; everything else reads domain.claim. Kept registered for them."""
        items = [(line.amount, berlin_date(line.due_at)) for line in inp.lines]
        try:
            results = claim_interest(items, berlin_date(inp.as_of), inp.customer_type, self.rates)
        except MissingBaseRate as exc:
            # Never guess a rate: the caller allocates without interest and says why.
            return InterestOutput(amounts=[0] * len(items), total=0, unavailable=str(exc))
        amounts = [r.amount for r in results]
        return InterestOutput(amounts=amounts, total=sum(amounts))
