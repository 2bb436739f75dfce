"""When the default ladder's rungs happen for a contract due on a given day, and the last
day to pay each notice prints — from the rules in domain/ (deadline_before, § 193 BGB with
the seller's Land, the send window), so workflow tests can sleep to the right instant
whatever day the test server's clock starts on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from core.settings import PROJECT_ROOT
from domain.deadlines import deadline_before, next_send_time
from domain.policy import load_policy
from domain.schedule import berlin_midnight


@dataclass
class Rung:
    stage: str
    planned: datetime  # due date + offset (00:00 Berlin)
    at: datetime  # when it happens: after the previous deadline, inside the send window
    deadline: str  # the last day to pay the notice sent at the previous rung prints


def rungs(due: date, policy: str = "default", state: str = "BE") -> dict[str, Rung]:
    p = load_policy(policy, PROJECT_ROOT / "policies")
    out: dict[str, Rung] = {}
    for step in p.ladder:
        planned = berlin_midnight(due) + step.offset()
        d = deadline_before(planned, state, p.day_based())
        at = next_send_time(d.next_step_at, p.send_window, state)
        out[step.stage] = Rung(step.stage, planned, at, d.last_day)
    return out


def after(rung: Rung, minutes: int = 60) -> datetime:
    return rung.at + timedelta(minutes=minutes)


def interest(principal: int, due: str, as_of: str, stack_rates: str, kind: str = "consumer") -> int:
    """§ 288 interest on `principal` from the day after `due` up to and including `as_of`
    (domain.interest.default_interest with the test settings' MAHNWERK_BASE_RATES)."""
    from core.settings import parse_base_rates
    from domain.interest import default_interest, with_rates

    if as_of <= due:
        return 0
    rates = with_rates(parse_base_rates(stack_rates))
    return default_interest(principal, due, as_of, kind, rates).amount
