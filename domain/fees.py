"""Fees and costs that may be added to a claim (DOMAIN.md §§ 1, 4; SPEC §2 "costs").

* § 288 (5) BGB lump sum: "Der Gläubiger einer Entgeltforderung hat bei Verzug des Schuldners,
  wenn dieser kein Verbraucher ist, außerdem einen Anspruch auf Zahlung einer Pauschale in
  Höhe von 40 Euro. Dies gilt auch, wenn es sich bei der Entgeltforderung um eine
  Abschlagszahlung oder sonstige Ratenzahlung handelt." → EUR 40 per installment in default,
  business customers only. Sentence 3: the lump sum "ist auf einen geschuldeten
  Schadensersatz anzurechnen, soweit der Schaden in Kosten der Rechtsverfolgung begründet
  ist" → dunning fees and collection costs of a business customer are covered by the lump
  sums first (:func:`pursuit_costs_after_lump_sum`).
* Bank return-debit costs: the creditor's actual loss when a SEPA debit bounces (damage,
  §§ 280, 286 BGB). Default: Stripe's SEPA failure fee, EUR 3.50 (DOMAIN.md §4, Stripe SEPA
  docs at crawl date); a parameter, because only the cost actually incurred is recoverable,
  and a flat amount in the terms must allow proof of a lower damage (§ 309 Nr. 5 BGB).
  They are not "Kosten der Rechtsverfolgung", so the § 288 (5) lump sum does not absorb them.
* Dunning fees from consumers: only material and postage count, not staff time; EUR 2–3 can
  be adequate if proven (IHK Frankfurt "wie-hoch-duerfen-mahngebuehren-sein"); **max EUR 2.50**
  per AG Brandenburg 31 C 190/06, NJW 2007, 2268 (via mahnerfolg.de). The reminder that first
  puts the debtor in default is never chargeable: damages for delay exist only once in
  default (§ 286 (1), § 280 (2) BGB; abgeordnetenwatch.de, answer by Justice Minister
  Zypries; kanzlei-hubmann.de/mahnung).
"""

from collections.abc import Sequence
from typing import Final

from domain.interest import BUSINESS, check_amount, check_customer_type

B2B_LUMP_SUM: Final = 4000  # § 288 (5) BGB: EUR 40 per claim (and per installment) in default
RETURN_DEBIT_COST_DEFAULT: Final = 350  # Stripe SEPA failure fee EUR 3.50 (DOMAIN.md §4)
CONSUMER_FEE_CAP: Final = 250  # AG Brandenburg 31 C 190/06, NJW 2007, 2268: max EUR 2.50
# The plausibility cap a policy's fee is checked against when it loads (domain.policy): the
# same EUR 2.50 per Mahnung. A policy may go above it only with a stated justification
# (e.g. proven higher postage for letters), and a deployment may configure another cap.
FEE_PLAUSIBILITY_CAP: Final = CONSUMER_FEE_CAP


def lump_sums(customer_type: str, installments_in_default: int) -> int:
    """§ 288 (5) BGB: EUR 40 for each installment in default, only if the debtor is not a
    consumer. ``lump_sums("business", 3)`` → 12000; any consumer → 0."""
    count = check_amount(installments_in_default, "installments_in_default")
    if check_customer_type(customer_type) != BUSINESS:
        return 0
    return B2B_LUMP_SUM * count


def pursuit_costs_after_lump_sum(pursuit_costs: int, lump_sums_claimed: int) -> int:
    """What is left of the costs of legal pursuit (dunning fees, collection costs) once the
    § 288 (5) sentence 3 BGB lump sums are credited against them: ``max(0, costs − lumps)``."""
    costs = check_amount(pursuit_costs, "pursuit_costs")
    lumps = check_amount(lump_sums_claimed, "lump_sums_claimed")
    return max(0, costs - lumps)


def return_debit_costs(returns: int, cost_per_return: int = RETURN_DEBIT_COST_DEFAULT) -> int:
    """Bank costs of ``returns`` bounced SEPA debits the customer is responsible for."""
    return check_amount(returns, "returns") * check_amount(cost_per_return, "cost_per_return")


def _eur(minor: int) -> str:
    units, cents = divmod(minor, 100)
    return f"EUR {units}.{cents:02d}"


def lump_sum_credit(lump_sums_total: int, pursuit_costs_total: int) -> int:
    """How much of the costs of legal pursuit the § 288 (5) sentence 3 BGB lump sums absorb:
    ``min(lump sums, pursuit costs)``. The lump sums "sind auf einen geschuldeten
    Schadensersatz anzurechnen, soweit der Schaden in Kosten der Rechtsverfolgung begründet
    ist": the creditor gets the larger of the two, never both. Dunning fees, collection and
    information costs are such costs; return-debit costs are not (module docstring)."""
    lumps = check_amount(lump_sums_total, "lump_sums_total")
    return min(lumps, check_amount(pursuit_costs_total, "pursuit_costs_total"))


def first_reminder_index(has_notice: Sequence[bool]) -> int:
    """Index of the ladder step whose notice is the first reminder: the one that puts the
    debtor in default (§ 286 (1) BGB) or, with a calendar due date, the first the debtor
    hears of it. No step up to and including it may charge a fee. ``len(has_notice)`` when
    no step sends a notice: then no step may charge one (a fee needs a Mahnung)."""
    for index, notice in enumerate(has_notice):
        if notice:
            return index
    return len(has_notice)


def free_step_fee_error(fee: int, stage_index: int, first_reminder: int) -> str | None:
    """Why ``fee`` may not be charged on the step at ``stage_index``, or None: a step up to
    and including the first reminder (:func:`first_reminder_index`) is free."""
    amount = check_amount(fee, "fee")
    if amount and check_amount(stage_index, "stage_index") <= first_reminder:
        return (
            f"{_eur(amount)} on the step that sends the first reminder (or before it): the "
            "reminder that first causes the default is not chargeable, damages for delay "
            "exist only once in default (§ 286 (1), § 280 (2) BGB; DOMAIN.md §1)"
        )
    return None


def implausible_fee_error(fee: int, cap: int = FEE_PLAUSIBILITY_CAP) -> str | None:
    """Why ``fee`` is implausible (above ``cap``), or None."""
    amount = check_amount(fee, "fee")
    if amount > check_amount(cap, "cap"):
        return (
            f"{_eur(amount)} is above the plausibility cap of {_eur(cap)} per Mahnung: only "
            "material and postage count, not staff time (AG Brandenburg 31 C 190/06, NJW 2007, "
            "2268; a flat fee must allow proof of a lower damage, § 309 Nr. 5 BGB)"
        )
    return None


def check_dunning_fee(fee: int, stage_index: int, customer_type: str) -> list[str]:
    """Warnings for a ladder step's fee (empty list: fine).

    ``stage_index`` is the step's 0-based position in the ladder; step 0 is the first
    reminder, which causes the default and must be free for every customer type. For
    consumers a fee above :data:`CONSUMER_FEE_CAP` is warned about.
    """
    check_amount(fee, "fee")
    index = check_amount(stage_index, "stage_index")
    kind = check_customer_type(customer_type)
    warnings: list[str] = []
    if index == 0 and fee > 0:
        warnings.append(
            f"stage 1 charges {_eur(fee)}: the first reminder must be free, the reminder "
            "that first causes the default is not chargeable (§ 286 (1), § 280 (2) BGB: "
            "damages for delay only once in default)"
        )
    if kind != BUSINESS and fee > CONSUMER_FEE_CAP:
        warnings.append(
            f"stage {index + 1} charges a consumer {_eur(fee)}: more than "
            f"{_eur(CONSUMER_FEE_CAP)} per Mahnung (AG Brandenburg 31 C 190/06, NJW 2007, "
            "2268; only material and postage count)"
        )
    return warnings
