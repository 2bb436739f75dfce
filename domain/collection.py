"""Hand-off rules: write-off or route, the online Mahnantrag fields, court and collection fees,
limitation (DOMAIN.md §§ 1–3, SPEC §§ 3, 6).

Sources (keys as in DOMAIN.md): [BGB] [ZPO] [GKG] [RVG] [RDG] = statute text in
``kmein/gesetze`` ``laws/*.md`` at commit ``cce3209c`` (gesetze-im-internet.de, 2026-08-19);
[MG] = mahngerichte.de; haufe.de "mahnantrag-online-242".
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from typing import Final

from domain.interest import (
    MARGIN_BP,
    check_amount,
    check_customer_type,
    iso_date,
    round_half_up,
)

# --------------------------------------------------------------------------- hand-off route

WRITE_OFF: Final = "write_off"
COURT: Final = "court"
INKASSO: Final = "inkasso"
AUTO: Final = "auto"
HANDOFF_ROUTES: Final = (COURT, INKASSO, AUTO)  # policy `collection.route` (SPEC §3)


def handoff_decision(principal: int, write_off_below: int, route: str, contested: bool) -> str:
    """``write_off``, ``court`` or ``inkasso`` for a claim reaching the hand-off stage.

    * principal **below** ``write_off_below`` → ``write_off`` (equal to it is handed off);
    * ``route: court`` / ``inkasso`` → as configured, except that
    * a **contested** claim never goes to court automatically → ``inkasso``.

    Why: the Mahnverfahren (§§ 688 ff. [ZPO]) examines no evidence; it only works for claims
    the debtor does not dispute. A contested claim would draw a Widerspruch (§ 694 [ZPO]),
    which turns it into a contested court case (§ 696 [ZPO]) that needs a lawyer's
    assessment, not an automatic filing. ``auto`` therefore means "court unless contested,
    then inkasso" (SPEC §3). A human may still choose ``court`` when approving a hand-off.
    """
    amount = check_amount(principal, "principal")
    threshold = check_amount(write_off_below, "write_off_below")
    if route not in HANDOFF_ROUTES:
        raise ValueError(f"route must be one of {', '.join(HANDOFF_ROUTES)}, got {route!r}")
    if amount < threshold:
        return WRITE_OFF
    if contested:
        return INKASSO
    return INKASSO if route == INKASSO else COURT


HAND_OFF: Final = "hand_off"
AWAIT_APPROVAL: Final = "await_approval"


@dataclass
class HandoffDecision:
    """What the hand-off rung does: ``write_off``, ``hand_off`` on ``route``, or
    ``await_approval`` — then ``route`` is the one taken when an admin approves without
    naming one. ``reason`` says why, for the timeline."""

    action: str  # write_off | hand_off | await_approval
    route: str  # court | inkasso; "" for write_off
    reason: str


def decide_handoff(
    principal: int,
    write_off_below: int,
    route: str,
    contested: bool,
    require_approval: bool,
) -> HandoffDecision:
    """The hand-off rung (SPEC §3 ``collection``, §4 ``contest``), in this order:

    1. principal below ``write_off_below`` → write off (contested or not: too small for
       either route);
    2. a **contested** claim: automatic escalation stops before the hand-off and the route
       becomes manual (SPEC §4 ``contest``) → wait for an admin; the route offered is
       :func:`handoff_decision`'s, i.e. ``inkasso`` (never court automatically: a
       Widerspruch would turn the Mahnverfahren into a contested case, §§ 694, 696 ZPO);
    3. ``require_approval`` → wait for an admin; the route offered is the policy's;
    4. otherwise hand off on the policy's route (``auto``: court).
    """
    route_taken = handoff_decision(principal, write_off_below, route, contested)
    if route_taken == WRITE_OFF:
        return HandoffDecision(WRITE_OFF, "", "principal below the write-off threshold")
    if contested:
        return HandoffDecision(AWAIT_APPROVAL, route_taken, "claim contested")
    if require_approval:
        return HandoffDecision(AWAIT_APPROVAL, route_taken, "policy requires approval")
    return HandoffDecision(HAND_OFF, route_taken, f"policy route {route}")


def approved_route(requested: str | None, route: str, contested: bool) -> str:
    """The route of a hand-off an admin approves: the one named (``court`` | ``inkasso``),
    else what :func:`handoff_decision` gives for the policy's route — ``inkasso`` for a
    contested claim even under ``route: court`` (a human may still choose court, by naming
    it)."""
    if requested is not None:
        if requested not in (COURT, INKASSO):
            raise ValueError(f"route must be court or inkasso, got {requested!r}")
        return requested
    return handoff_decision(0, 0, route, contested)


# --------------------------------------------------------------------------- receivables

# The age buckets of the receivables report (SPEC §4 ``GET /v1/reports/receivables``: "0–30,
# 31–60, 61–90, 90+ days"), the customary ageing of accounts receivable. A claim's age is
# counted in Europe/Berlin days from the due date of its oldest open installment.
AGE_BUCKETS: Final[tuple[tuple[str, int | None], ...]] = (
    ("0-30", 30),
    ("31-60", 60),
    ("61-90", 90),
    ("90+", None),
)


def age_days(oldest_due: str, today: str) -> int:
    """Days from the oldest open due date to ``today`` (ISO dates, Berlin), at least 0."""
    return max((iso_date(today, "today") - iso_date(oldest_due, "oldest_due")).days, 0)


def age_bucket(days: int) -> str:
    """``0``–``30`` → ``"0-30"``, ``31``–``60`` → ``"31-60"``, ``61``–``90`` → ``"61-90"``,
    more → ``"90+"`` (SPEC §4)."""
    count = check_amount(days, "days")
    for name, upper in AGE_BUCKETS:
        if upper is None or count <= upper:
            return name
    raise AssertionError("unreachable: the last bucket has no upper bound")


# --------------------------------------------------------------------------- limitation


def limitation_end(claim_arose: str) -> str:
    """Last day of the regular limitation period of a claim that arose on ``claim_arose``.

    § 195 [BGB]: 3 years; § 199 (1) [BGB]: counted from the end of the year in which the
    claim arose and the creditor knew of it (the creditor always knows its own invoice).
    A payment claim arises when it falls due, so pass the installment's due date:
    ``2026-12-01`` → ``2029-12-31``.

    Deliberately the conservative date: if 31 December is a Saturday or Sunday, § 193 [BGB]
    may move the end to the next working day, but acting by 31 December is always in time.
    Service of a Mahnbescheid suspends limitation (§ 204 (1) Nr. 3, (2) [BGB]); that is the
    caller's business, not this function's.
    """
    arose = iso_date(claim_arose, "claim_arose")
    return f"{arose.year + 3:04d}-12-31"


# What the partner or the court reports about a case handed off (POST …/case-status), in
# the order a court procedure usually brings them: the debtor objects to the Mahnbescheid
# (Widerspruch, § 694 [ZPO]: the case becomes a contested one, § 696 [ZPO]); the court issues
# the Vollstreckungsbescheid (§ 699 [ZPO], an enforceable title, § 794 (1) Nr. 4 [ZPO]); a
# title has become final (rechtskräftig: a judgment, or a Vollstreckungsbescheid no longer
# open to an Einspruch, §§ 700, 339 [ZPO]); the partner gives up (uncollectible).
OBJECTION: Final = "objection"
ENFORCEMENT_ORDER: Final = "enforcement_order"
TITLE: Final = "title"
UNCOLLECTIBLE: Final = "uncollectible"
CASE_STATUSES: Final = (OBJECTION, ENFORCEMENT_ORDER, TITLE, UNCOLLECTIBLE)

# § 197 (1) Nr. 3 [BGB]: "rechtskräftig festgestellte Ansprüche" become time-barred in 30
# years; § 201 [BGB]: counted from the day the decision became final (not from the end of a
# year), not before the claim arose. § 197 (2) [BGB]: what falls due periodically in the
# future (interest accruing after the title) keeps the regular period (§ 195).
TITLE_LIMITATION_YEARS: Final = 30
REGULAR_LIMITATION_YEARS: Final = 3  # § 195 [BGB]
REGULAR_BASIS: Final = "§§ 195, 199 Abs. 1 BGB"
TITLE_BASIS: Final = "§§ 197 Abs. 1 Nr. 3, 201 BGB"


def title_limitation_end(final_on: str) -> str:
    """Last day of the 30-year limitation of a claim established by a title that became
    final on ``final_on`` (§§ 197 (1) Nr. 3, 201 [BGB]).

    The period starts with an event, so that day does not count (§ 187 (1) [BGB]) and it
    ends with the day of the 30th year that has the event's date (§ 188 (2) [BGB]); from a
    29 February, with 28 February (§ 188 (3) [BGB]): ``2027-03-15`` → ``2057-03-15``.
    Conservative like :func:`limitation_end` (no § 193 shift).
    """
    final = iso_date(final_on, "final_on")
    try:
        end = final.replace(year=final.year + TITLE_LIMITATION_YEARS)
    except ValueError:
        end = final.replace(year=final.year + TITLE_LIMITATION_YEARS, day=28)
    return end.isoformat()


@dataclass
class LimitationLine:
    """One claim's limitation: when it arose, its last day, and the rule."""

    installment: int
    arose: str
    ends: str
    basis: str


@dataclass
class Limitation:
    """The limitation of a claim handed off, as tracked for the admin (GET …/{id}).

    ``regular``: per installment, 3 years from the end of the year it fell due (§§ 195, 199
    (1) [BGB]); ``title``: 30 years from the day the title became final, for what the title
    established (§§ 197 (1) Nr. 3, 201 [BGB]), None until a title is recorded. ``next_end``
    is the earliest last day that still matters: the title's end once there is one (the
    regular periods no longer bind the titled claim), else the earliest regular end.
    Suspension by a Mahnbescheid's service (§ 204 (1) Nr. 3 [BGB]) is not modelled: the
    dates are conservative (the last day the creditor is certainly in time).
    """

    regular: list[LimitationLine]
    title: LimitationLine | None
    next_end: str | None


def limitation(arose: Sequence[tuple[int, str]], title_on: str | None) -> Limitation:
    """``arose``: (installment, the day its claim arose = fell due) for each installment of
    the case; ``title_on``: the day a title became final, if any."""
    regular = [
        LimitationLine(
            seq,
            iso_date(day, f"installment {seq} arose").isoformat(),
            limitation_end(day),
            REGULAR_BASIS,
        )
        for seq, day in sorted(arose)
    ]
    title = None
    if title_on:
        first = min((line.arose for line in regular), default=title_on)
        # § 201 sentence 1: not before the claim arose
        start = max(iso_date(title_on, "title_on").isoformat(), first)
        title = LimitationLine(0, start, title_limitation_end(start), TITLE_BASIS)
    if title is not None:
        next_end: str | None = title.ends
    else:
        next_end = min((line.ends for line in regular), default=None)
    return Limitation(regular=regular, title=title, next_end=next_end)


# --------------------------------------------------------------------------- fee tables


@dataclass(frozen=True)
class FeeStep:
    """Above the previous band and up to ``up_to`` (None: no limit), the 1.0 fee rises by
    ``increment`` for every started ``per`` of value. All in minor units."""

    up_to: int | None
    per: int
    increment: int


def _table_fee(value: int, first_band: int, first_fee: int, steps: Sequence[FeeStep]) -> int:
    """A § 34 GKG / § 13 RVG style table: ``first_fee`` up to ``first_band``, then steps."""
    if value <= 0:
        raise ValueError(f"value must be positive, got {value}")
    fee = first_fee
    lower = first_band
    for step in steps:
        if value <= lower:
            break
        upper = value if step.up_to is None else min(value, step.up_to)
        started = -(-(upper - lower) // step.per)  # ceil: "für jeden angefangenen Betrag"
        fee += started * step.increment
        if step.up_to is None:
            break
        lower = step.up_to
    return fee


# § 34 (1) [GKG] (as of BGBl. 2025 I Nr. 109, in force since 2025-06-01): "bei einem Streitwert
# bis 500 Euro die Gebühr 40 Euro. Die Gebühr erhöht sich bei einem Streitwert bis … Euro für
# jeden angefangenen Betrag von weiteren … Euro um … Euro". DOMAIN.md §2 quotes the first
# band (EUR 21 per EUR 500 up to EUR 2,000); the rest is the statute's table.
GKG_FIRST_BAND: Final = 50_000
GKG_FIRST_FEE: Final = 4_000
GKG_STEPS: Final[tuple[FeeStep, ...]] = (
    FeeStep(200_000, 50_000, 2_100),
    FeeStep(1_000_000, 100_000, 2_250),
    FeeStep(2_500_000, 300_000, 3_050),
    FeeStep(5_000_000, 500_000, 4_050),
    FeeStep(20_000_000, 1_500_000, 14_000),
    FeeStep(50_000_000, 3_000_000, 21_000),
    FeeStep(None, 5_000_000, 21_000),
)
# KV 1100 [GKG] (Mahnbescheid): a 0.5 fee, at least EUR 38 since 2025-06-01 (EUR 36 before).
# Source: DOMAIN.md §2 (j-lawyer-org seed `seed-feeitem-gkg-kv-1100-2025`; AG Uelzen); the
# Kostenverzeichnis table itself is not in the stored statute text.
MAHNBESCHEID_FEE_TENTHS: Final = 5
MAHNBESCHEID_MIN_FEE: Final = 3_800


def gkg_fee(value: int) -> int:
    """The 1.0 court fee (§ 34 [GKG]) for a value in minor units: 500 € → 40 €, 1,000 € → 61 €."""
    return _table_fee(check_amount(value, "value"), GKG_FIRST_BAND, GKG_FIRST_FEE, GKG_STEPS)


def court_fee_estimate(principal: int) -> int:
    """Court fee for the Mahnbescheid (KV 1100 [GKG]): 0.5 × the 1.0 fee, at least EUR 38.

    The value is the principal only: interest and costs claimed alongside it do not count
    (§ 43 (1) [GKG]). Rounded half-up to the cent (§ 34 (2) [GKG]). It covers the whole
    Mahnverfahren; the court adds it to the claim itself, so it is an estimate for the
    creditor (the advance to pay), not a field of the application (DOMAIN.md §2).
    """
    half = round_half_up(Fraction(gkg_fee(principal) * MAHNBESCHEID_FEE_TENTHS, 10))
    return max(MAHNBESCHEID_MIN_FEE, half)


# § 13 (1) [RVG] (as of BGBl. 2025 I Nr. 109): "bei einem Gegenstandswert bis 500 Euro die
# Gebühr 51,50 Euro", then the steps below. DOMAIN.md §3 quotes the first band (EUR 41.50
# per EUR 500 up to EUR 2,000).
RVG_FIRST_BAND: Final = 50_000
RVG_FIRST_FEE: Final = 5_150
RVG_STEPS: Final[tuple[FeeStep, ...]] = (
    FeeStep(200_000, 50_000, 4_150),
    FeeStep(1_000_000, 100_000, 5_950),
    FeeStep(2_500_000, 300_000, 5_500),
    FeeStep(5_000_000, 500_000, 8_600),
    FeeStep(20_000_000, 1_500_000, 9_950),
    FeeStep(50_000_000, 3_000_000, 14_000),
    FeeStep(None, 5_000_000, 17_500),
)
# § 13 (2) [RVG]: undisputed collection (VV 2300 Anm. 2) with a value up to EUR 50: EUR 31.50.
RVG_SMALL_CLAIM_LIMIT: Final = 5_000
RVG_SMALL_CLAIM_FEE: Final = 3_150
RVG_MIN_FEE: Final = 1_500  # § 13 (3) [RVG]: "Der Mindestbetrag einer Gebühr ist 15 Euro."
# VV 7002 [RVG]: post and telecoms flat rate, 20 % of the fees, at most EUR 20.
POST_FLAT_RATE_PERCENT: Final = 20
POST_FLAT_RATE_MAX: Final = 2_000
# VV 2300 [RVG]: business fee 0.5 to 2.5; for undisputed collection more than 0.9 only if
# particularly extensive or difficult, 0.5 in simple cases (paid within 2 weeks of the first
# demand), hard cap 1.3 (Anm. 2). A collector recovers at most what a lawyer would get
# (§ 13e [RDG]; collector and lawyer together no more than one lawyer, § 13f [RDG]).
COLLECTION_RATE_SIMPLE: Final = 5
COLLECTION_RATE_UNDISPUTED_MAX: Final = 9
COLLECTION_RATE_CAP: Final = 13


def rvg_fee(value: int) -> int:
    """The 1.0 lawyer's fee (§ 13 (1) [RVG]): 500 € → 51.50 €, 1,000 € → 93 €."""
    return _table_fee(check_amount(value, "value"), RVG_FIRST_BAND, RVG_FIRST_FEE, RVG_STEPS)


def max_collection_fee(claim: int, rate_tenths: int, undisputed: bool = True) -> int:
    """Most a creditor can recover for collection of ``claim`` (minor units), net of VAT:
    the VV 2300 business fee at ``rate_tenths`` (5 = 0.5 … 13 = 1.3) plus the VV 7002 post
    flat rate (20 % of the fee, at most EUR 20).

    Fee = 1.0 fee × rate, rounded half-up to the cent (§ 2 (2) [RVG]), at least EUR 15
    (§ 13 (3)); the 1.0 fee is EUR 31.50 for undisputed claims up to EUR 50 (§ 13 (2)),
    else the § 13 (1) table. E.g. EUR 300 at 0.9: 51.50 × 0.9 = 46.35, + 9.27 = 55.62.
    """
    value = check_amount(claim, "claim")
    if isinstance(rate_tenths, bool) or not isinstance(rate_tenths, int):
        raise ValueError(f"rate_tenths must be an int (5 = 0.5 … 13 = 1.3), got {rate_tenths!r}")
    if not COLLECTION_RATE_SIMPLE <= rate_tenths <= COLLECTION_RATE_CAP:
        raise ValueError(
            f"rate_tenths must be between {COLLECTION_RATE_SIMPLE} and {COLLECTION_RATE_CAP} "
            f"(VV 2300 RVG: 0.5 to the 1.3 cap), got {rate_tenths}"
        )
    if undisputed and 0 < value <= RVG_SMALL_CLAIM_LIMIT:
        full = RVG_SMALL_CLAIM_FEE
    else:
        full = rvg_fee(value)
    fee = max(RVG_MIN_FEE, round_half_up(Fraction(full * rate_tenths, 10)))
    post = min(POST_FLAT_RATE_MAX, round_half_up(Fraction(fee * POST_FLAT_RATE_PERCENT, 100)))
    return fee + post


# --------------------------------------------------------------------------- Mahnantrag

# Claim catalogue of the Mahnverfahren (online-mahnantrag.de; haufe.de "mahnantrag-online-242";
# DOMAIN.md §2): the number tells the court what kind of contract the claim comes from.
CATALOGUE: Final[dict[int, str]] = {
    5: "Dienstleistungsvertrag",
    11: "Kaufvertrag",
    16: "Lehrgangs-/Unterrichtskosten",
}
# Our product categories → catalogue number. Courses are teaching (16); coaching, memberships
# and subscriptions are services (5); a plain purchase is a sale (11).
PRODUCT_CATALOGUE: Final[dict[str, int]] = {
    "course": 16,
    "coaching": 5,
    "membership": 5,
    "subscription": 5,
    "purchase": 11,
}

# Labels of itemised ancillary claims (§ 690 (1) Nr. 3 [ZPO]: "Haupt- und Nebenforderungen
# sind gesondert und einzeln zu bezeichnen"; [MG] "auslagen-und-nebenforderungen"). Court and
# lawyer costs of the procedure are added by the court and are not entered.
MAHNKOSTEN: Final = "Mahnkosten"
RUECKLASTSCHRIFTKOSTEN: Final = "Rücklastschriftkosten"
INKASSOKOSTEN: Final = "Inkassokosten"
AUSKUNFTSKOSTEN: Final = "Auskunftskosten"
VERZUGSPAUSCHALE: Final = "Verzugspauschale § 288 Abs. 5 BGB"

PP_ABOVE_BASE: Final = "pp_above_base"
NO_INTEREST: Final = "none"


def catalogue_for(product_category: str) -> tuple[int, str]:
    """``course`` → ``(16, "Lehrgangs-/Unterrichtskosten")``, ``coaching`` → ``(5, …)``."""
    key = product_category.strip().lower() if isinstance(product_category, str) else ""
    if key not in PRODUCT_CATALOGUE:
        raise ValueError(
            f"no Mahnantrag catalogue number for product category {product_category!r}; "
            f"known: {', '.join(PRODUCT_CATALOGUE)}"
        )
    number = PRODUCT_CATALOGUE[key]
    return number, CATALOGUE[number]


def interest_from(due_date: str) -> str:
    """The first day of default interest: the day after the due date (§ 187 (1) [BGB])."""
    return (iso_date(due_date, "due_date") + timedelta(days=1)).isoformat()


@dataclass
class Invoice:
    """One unpaid installment as the Mahnantrag needs it."""

    number: str
    date: str  # ISO date of the invoice
    due: str  # ISO due date
    amount: int  # unpaid principal, minor units


@dataclass
class AncillaryClaim:
    """A Nebenforderung, itemised: ``label`` (e.g. "Mahnkosten") and ``amount``."""

    label: str
    amount: int


@dataclass
class MahnantragClaim:
    """One Hauptforderung: one unpaid installment with its own interest start."""

    catalogue_number: int
    catalogue_label: str
    invoice_number: str
    invoice_date: str
    principal: int
    interest_mode: str  # "pp_above_base" | "none"
    interest_pp: int  # 5 (consumer) or 9 (business); 0 without interest
    interest_from: str  # the day after the due date; "" without interest


@dataclass
class MahnantragFields:
    """The fields of an online Mahnantrag (online-mahnantrag.de) for one contract.

    Each unpaid installment is its own main claim (``claims``) because each has its own
    invoice and its own interest start; ``principal`` is their sum. The top-level catalogue
    and interest fields are the same for every claim of one contract.
    """

    catalogue_number: int
    catalogue_label: str
    principal: int
    interest_mode: str
    interest_pp: int
    claims: list[MahnantragClaim] = field(default_factory=list)
    ancillary: list[AncillaryClaim] = field(default_factory=list)
    court_fee_estimate: int = 0


def mahnantrag_fields(
    product_category: str,
    invoices: Sequence[Invoice],
    customer_type: str,
    ancillary: Sequence[AncillaryClaim] = (),
    interest: bool = True,
) -> MahnantragFields:
    """Build the Mahnantrag fields; interest "pp above the base rate from a date" (§ 288 [BGB]:
    5 pp for consumers, 9 pp for businesses), ancillary claims itemised, zero ones left out."""
    if not invoices:
        raise ValueError("a Mahnantrag needs at least one unpaid invoice")
    number, label = catalogue_for(product_category)
    pp = MARGIN_BP[check_customer_type(customer_type)] // 100 if interest else 0
    mode = PP_ABOVE_BASE if interest else NO_INTEREST
    claims = []
    for invoice in invoices:
        amount = check_amount(invoice.amount, f"invoice {invoice.number} amount")
        if amount == 0:
            continue
        claims.append(
            MahnantragClaim(
                catalogue_number=number,
                catalogue_label=label,
                invoice_number=invoice.number,
                invoice_date=iso_date(invoice.date, f"invoice {invoice.number} date").isoformat(),
                principal=amount,
                interest_mode=mode,
                interest_pp=pp,
                interest_from=interest_from(invoice.due) if interest else "",
            )
        )
    if not claims:
        raise ValueError("a Mahnantrag needs at least one invoice with an unpaid amount")
    items = [
        AncillaryClaim(label=item.label, amount=check_amount(item.amount, item.label))
        for item in ancillary
        if item.amount
    ]
    principal = sum(claim.principal for claim in claims)
    return MahnantragFields(
        catalogue_number=number,
        catalogue_label=label,
        principal=principal,
        interest_mode=mode,
        interest_pp=pp,
        claims=claims,
        ancillary=items,
        court_fee_estimate=court_fee_estimate(principal),
    )
