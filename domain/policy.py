"""Dunning policies: the model, YAML loading and validation (SPEC §3).

A policy is data. It is loaded and validated here (the only I/O in ``domain/``: reading the
YAML file in :func:`load_policy`), then copied into the workflow input when a contract
starts, so later edits to the file never change running contracts (DESIGN.md decision 5).

The dataclasses hold only str/int/bool/list fields (durations stay strings such as "3d"),
so they pass through Temporal's default JSON converter unchanged.
"""

import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final, NoReturn

from domain.deadlines import SEND_DAYS, SendWindow, parse_hhmm
from domain.durations import DURATION_FORM, parse_duration
from domain.endings import ACCESS_END, ACCESS_MODES, REFUND_FULL, REFUND_MODES
from domain.fees import (
    FEE_PLAUSIBILITY_CAP,
    first_reminder_index,
    free_step_fee_error,
    implausible_fee_error,
)

# Stripe: "Stripe recommends a maximum of eight retries for charges that permit retries"
# (docs.stripe.com/declines/card, quoted in IanFoxDev/decline-codes data/stripe.json).
# Visa caps categories 2–4 at 20 reattempts in 30 days (Visa Core Rules 2026-04-18).
MAX_RETRIES: Final = 8

ROUTES: Final = ("court", "inkasso", "auto")
INTEREST_MODES: Final = ("statutory", "none")
# What a debit retry collects (issue 11): the open principal (a card or mandate authorises the
# agreed amounts), or the whole claim (principal, interest, fees, costs, lump sums).
COLLECT_PRINCIPAL: Final = "principal"
COLLECT_CLAIM: Final = "claim"
COLLECT_MODES: Final = (COLLECT_PRINCIPAL, COLLECT_CLAIM)
# What happens to the installments not yet due when a claim is handed off or written off
# (issue 12; docs/collection.md): `keep_schedule` debits them on as agreed, each later
# default joining the case at the partner; `call_in` calls the whole remainder in
# (Gesamtfälligstellung) — for consumers only where § 498 BGB allows it
# (domain.call_in), otherwise the schedule is kept; `stop` cancels them, with the reason.
KEEP_SCHEDULE: Final = "keep_schedule"
CALL_IN: Final = "call_in"
STOP: Final = "stop"
ON_DEFAULT_MODES: Final = (KEEP_SCHEDULE, CALL_IN, STOP)
# When access locked by the ladder comes back once the claim went to collection (or was
# written off): `claim_paid` once nothing handed off is claimed any more (paid in full, or
# written off), `principal_paid` once its principal is paid (what stays open — interest,
# fees — stays with the partner), `never` (only a new contract or support grants it).
UNLOCK_CLAIM_PAID: Final = "claim_paid"
UNLOCK_PRINCIPAL_PAID: Final = "principal_paid"
UNLOCK_NEVER: Final = "never"
UNLOCK_MODES: Final = (UNLOCK_CLAIM_PAID, UNLOCK_PRINCIPAL_PAID, UNLOCK_NEVER)
# dunning.stage values that are not ladder steps (SPEC §2 "Contract status").
# `needs_address`: a court hand-off waiting for the debtor's postal address (§ 690 (1) Nr. 1
# ZPO).
RESERVED_STAGES: Final = ("none", "retrying", "needs_address")

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_STAGE_RE: Final = re.compile(r"[a-z0-9_]+")
_TEMPLATE_RE: Final = re.compile(r"[a-z0-9_]+")


@dataclass
class RetryConfig:
    """Re-debits after a failed debit, for soft failures; offsets from the first failure."""

    after: list[str] = field(default_factory=list)
    # Move insufficient-funds retries to the days after German paydays (domain.retry_timing).
    payday_alignment: bool = False

    def offsets(self) -> list[timedelta]:
        return [parse_duration(text) for text in self.after]


@dataclass
class LadderStep:
    """One escalation step; ``after`` is counted from the due date of the oldest unpaid amount."""

    stage: str
    after: str
    notice: str | None = None
    fee: int = 0  # minor units, added to the claim when the stage is reached
    lock_access: bool = False
    handoff: bool = False
    # Why a fee above the plausibility cap is justified (required then; see _check_fees).
    fee_justification: str | None = None

    def offset(self) -> timedelta:
        return parse_duration(self.after)


@dataclass
class CollectionConfig:
    write_off_below: int = 0  # minor units of principal; below it: write-off, not hand-off
    route: str = "auto"  # court | inkasso | auto (court unless contested, then inkasso)
    require_approval: bool = False
    # Access after a hand-off or write-off (UNLOCK_MODES): claim_paid | principal_paid | never
    unlock: str = UNLOCK_CLAIM_PAID


# SEPA Core pre-notification: 14 calendar days before the debit unless the creditor and the
# debtor agreed a shorter period (SEPA rulebook, DOMAIN.md §4: "can be shortened, not
# waived"; Stripe's mandate text agrees 2 calendar days [S-SEPA]). The default when a policy
# says nothing is the rulebook's.
SEPA_PRE_NOTIFICATION_DEFAULT: Final = "14d"


@dataclass
class SepaConfig:
    """SEPA direct debits: how long before each debit the customer is told about it."""

    pre_notification: str = SEPA_PRE_NOTIFICATION_DEFAULT

    def lead(self) -> timedelta:
        return parse_duration(self.pre_notification)


@dataclass
class ResidualConfig:
    """What happens to what stays open once the principal is paid (interest, fees, costs,
    lump sums): claimed by a final notice, or written off when below ``write_off_below``
    (minor units; 0: never written off automatically)."""

    write_off_below: int = 0


@dataclass
class WithdrawalConfig:
    """A withdrawal (Widerruf, § 355 BGB; domain.endings): what is refunded when the request
    names no amount (``full`` | ``pro_rata`` | ``caller``: the request must name it), and
    whether the customer keeps access (``end`` | ``keep``)."""

    refund: str = REFUND_FULL
    access: str = ACCESS_END


@dataclass
class CancellationConfig:
    """A cancellation for another reason than withdrawal or fraud (``cancellation_button``,
    ``goodwill``, ``other``): whether access ends when it takes effect (``end``) or the
    customer keeps it (``keep``). A subscription's access always ends with its last paid
    period; fraud always ends it."""

    access: str = ACCESS_END


# Customer messages beyond dunning (issue 12 item 4), each switchable; all on by default.
MESSAGE_KINDS: Final = (
    "payment_failed",
    "payment_received",
    "access_restored",
    "plan_completed",
    "withdrawal_confirmed",
    "refund_confirmed",
)


@dataclass
class MessagesConfig:
    """Which customer messages beyond dunning are sent (templates `<locale>/<kind>.*`)."""

    payment_failed: bool = True  # a hard decline (fix_data / never): fix it via the link
    payment_received: bool = True  # a payment closed a dunning case
    access_restored: bool = True  # a locked access was unlocked
    plan_completed: bool = True  # the last installment of a plan was paid
    withdrawal_confirmed: bool = True  # a withdrawal received (§ 356a BGB), with its refund
    refund_confirmed: bool = True  # a refund outside a withdrawal (support, Stripe Dashboard)

    def enabled(self, kind: str) -> bool:
        return kind in MESSAGE_KINDS and bool(getattr(self, kind))


@dataclass
class Policy:
    name: str
    retries: RetryConfig
    ladder: list[LadderStep]
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    interest: str = "statutory"  # statutory (§ 288 BGB) | none
    sepa: SepaConfig = field(default_factory=SepaConfig)
    collect: str = COLLECT_PRINCIPAL  # principal | claim: what a debit retry collects
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    send_window: SendWindow = field(default_factory=SendWindow)
    # The installments not yet due at a hand-off or write-off (ON_DEFAULT_MODES)
    on_default: str = KEEP_SCHEDULE
    # `demo: true` in the file: a policy for demos and tests (durations in seconds). Only such
    # a policy may be combined with contract intervals shorter than a day (api/schemas.py):
    # on any other, `PT1S` × 600 would be 600 real debits in ten minutes.
    demo: bool = False
    # Ending a contract early and the customer messages beyond dunning (issue 12; docs/endings.md)
    withdrawal: WithdrawalConfig = field(default_factory=WithdrawalConfig)
    cancellation: CancellationConfig = field(default_factory=CancellationConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)

    def retry_offsets(self) -> list[timedelta]:
        return self.retries.offsets()

    def find_step(self, stage: str) -> LadderStep | None:
        """The ladder step named ``stage``, or None (also for "none"/"retrying")."""
        for step in self.ladder:
            if step.stage == stage:
                return step
        return None

    def day_based(self) -> bool:
        """Whether every ladder offset is whole days: only then are deadlines calendar days
        (``domain.deadlines.deadline_before``); the demo ladder counts in seconds."""
        return all(step.offset() % timedelta(days=1) == timedelta(0) for step in self.ladder)

    def handoff_step(self) -> LadderStep | None:
        """The hand-off step (always the last one), or None if the ladder has none."""
        last = self.ladder[-1] if self.ladder else None
        return last if last is not None and last.handoff else None


class PolicyError(ValueError):
    """An invalid policy: ``"{file}: {key}: {reason}"``.

    ``key`` is a path into the document (``ladder[1].after``, ``retries.after[0]``,
    ``collection.route``), ``(top)`` for the document itself, ``(yaml)`` for syntax errors.
    """

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.file, self.key, self.reason))


# --------------------------------------------------------------------------- loading


@cache
def _strict_loader() -> type[Any]:
    """A SafeLoader that rejects duplicate mapping keys (plain PyYAML keeps the last one).

    PyYAML is imported here, not at module level: workflows import this module for the
    dataclasses only, and YAML (with its C extension) has no business in the sandbox.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_policy(name: str, policy_dir: Path, fee_cap: int = FEE_PLAUSIBILITY_CAP) -> Policy:
    """Load and validate ``{policy_dir}/{name}.yaml``; raises :class:`PolicyError`.

    ``fee_cap``: the plausibility cap per Mahnung (minor units) a fee may exceed only with a
    ``fee_justification`` next to it."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise PolicyError(
            str(policy_dir), "name", f"invalid policy name {name!r}: must match [A-Za-z0-9_-]+"
        )
    path = Path(policy_dir) / f"{name}.yaml"
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(file, "(top)", f"policy {name!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(file, "(top)", f"cannot read file: {exc}") from None
    return parse_policy_text(text, file, fee_cap)


def parse_policy_text(text: str, file: str, fee_cap: int = FEE_PLAUSIBILITY_CAP) -> Policy:
    """Parse YAML text and validate it; syntax errors → key ``(yaml)`` with the line."""
    import yaml

    try:
        data = yaml.load(text, Loader=_strict_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "syntax error"
        raise PolicyError(file, "(yaml)", f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(file, "(yaml)", str(exc)) from None
    return parse_policy(data, file, fee_cap)


# --------------------------------------------------------------------------- validation


class _Checker:
    """Small helpers that raise PolicyError with the file and key path filled in."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, reason: str) -> NoReturn:
        raise PolicyError(self.file, key, reason)

    def mapping(
        self,
        value: object,
        key: str,
        required: tuple[str, ...],
        optional: tuple[str, ...],
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {_kind(value)}")
        allowed = required + optional
        prefix = "" if key == "(top)" else f"{key}."
        for k in value:
            if not isinstance(k, str) or k not in allowed:
                self.fail(f"{prefix}{k}", f"unknown key (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in value:
                self.fail(f"{prefix}{k}", "missing required key")
        return value

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_kind(value)}")
        return value

    def integer(self, value: object, key: str, what: str) -> int:
        # YAML `true` is a Python bool, and bool is a subclass of int: reject it explicitly.
        if isinstance(value, bool):
            self.fail(key, f"must be an integer ({what}), not a boolean")
        if not isinstance(value, int):
            self.fail(key, f"must be an integer ({what}), got {_kind(value)}")
        if value < 0:
            self.fail(key, f"must be >= 0, got {value}")
        return value

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_kind(value)}")
        return value

    def duration(self, value: object, key: str) -> tuple[str, timedelta]:
        if not isinstance(value, str):
            self.fail(key, f"must be a duration {DURATION_FORM}, got {_kind(value)}")
        try:
            return value, parse_duration(value)
        except ValueError:
            self.fail(key, f"invalid duration {value!r}: expected {DURATION_FORM}")

    def choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _file_stem(file: str) -> str:
    name = Path(file).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_policy(data: object, file: str, fee_cap: int = FEE_PLAUSIBILITY_CAP) -> Policy:
    """Validate a parsed YAML document and build the :class:`Policy`.

    ``file`` names the source in errors; the policy's ``name`` must equal its stem
    (``policies/default.yaml`` → ``default``). Raises :class:`PolicyError` on the first
    problem found. Fees are checked against the law and ``fee_cap`` (:func:`_check_fees`).
    """
    c = _Checker(file)
    if data is None:
        c.fail("(top)", "empty document: expected a mapping with name, retries and ladder")
    top = c.mapping(
        data,
        "(top)",
        required=("name", "retries", "ladder"),
        optional=(
            "collection",
            "interest",
            "sepa",
            "collect",
            "residual",
            "send_window",
            "on_default",
            "demo",
            "withdrawal",
            "cancellation",
            "messages",
        ),
    )

    name = c.string(top["name"], "name")
    if not _NAME_RE.fullmatch(name):
        c.fail("name", f"invalid policy name {name!r}: must match [A-Za-z0-9_-]+")
    stem = _file_stem(file)
    if name != stem:
        c.fail("name", f"{name!r} does not match the file name {stem!r}")

    retries = _parse_retries(c, top["retries"])
    ladder = _parse_ladder(c, top["ladder"])
    _check_fees(c, ladder, fee_cap)
    collection = _parse_collection(c, top.get("collection", {}))
    interest = c.choice(top.get("interest", "statutory"), "interest", INTEREST_MODES)
    sepa = _parse_sepa(c, top.get("sepa", {}))
    collect = c.choice(top.get("collect", COLLECT_PRINCIPAL), "collect", COLLECT_MODES)
    residual = _parse_residual(c, top.get("residual", {}))
    send_window = _parse_send_window(c, top.get("send_window", {}))
    on_default = c.choice(top.get("on_default", KEEP_SCHEDULE), "on_default", ON_DEFAULT_MODES)
    demo = c.boolean(top.get("demo", False), "demo")
    withdrawal = _parse_withdrawal(c, top.get("withdrawal", {}))
    cancellation = _parse_cancellation(c, top.get("cancellation", {}))
    messages = _parse_messages(c, top.get("messages", {}))
    return Policy(
        name=name,
        retries=retries,
        ladder=ladder,
        collection=collection,
        interest=interest,
        sepa=sepa,
        collect=collect,
        residual=residual,
        send_window=send_window,
        on_default=on_default,
        demo=demo,
        withdrawal=withdrawal,
        cancellation=cancellation,
        messages=messages,
    )


def _parse_withdrawal(c: _Checker, value: object) -> WithdrawalConfig:
    section = c.mapping(value, "withdrawal", required=(), optional=("refund", "access"))
    return WithdrawalConfig(
        refund=c.choice(section.get("refund", REFUND_FULL), "withdrawal.refund", REFUND_MODES),
        access=c.choice(section.get("access", ACCESS_END), "withdrawal.access", ACCESS_MODES),
    )


def _parse_cancellation(c: _Checker, value: object) -> CancellationConfig:
    section = c.mapping(value, "cancellation", required=(), optional=("access",))
    return CancellationConfig(
        access=c.choice(section.get("access", ACCESS_END), "cancellation.access", ACCESS_MODES)
    )


def _parse_messages(c: _Checker, value: object) -> MessagesConfig:
    section = c.mapping(value, "messages", required=(), optional=MESSAGE_KINDS)
    return MessagesConfig(
        **{kind: c.boolean(section.get(kind, True), f"messages.{kind}") for kind in MESSAGE_KINDS}
    )


def _check_fees(c: _Checker, ladder: list[LadderStep], fee_cap: int) -> None:
    """The fee rules of DOMAIN.md §1, applied when a policy loads (``domain.fees``):

    * no fee on the step that sends the first reminder, nor on any step before it;
    * no fee above ``fee_cap`` (EUR 2.50 per Mahnung by default) unless the step states a
      ``fee_justification`` (e.g. proven postage for a registered letter): a policy is used
      for consumers, and for them only material and postage are recoverable.
    """
    first = first_reminder_index([step.notice is not None for step in ladder])
    for i, step in enumerate(ladder):
        error = free_step_fee_error(step.fee, i, first)
        if error:
            c.fail(f"ladder[{i}].fee", error)
        error = implausible_fee_error(step.fee, fee_cap)
        if error and not step.fee_justification:
            c.fail(
                f"ladder[{i}].fee",
                f"{error}; state why it is justified in ladder[{i}].fee_justification",
            )


def _parse_retries(c: _Checker, value: object) -> RetryConfig:
    section = c.mapping(value, "retries", required=("after",), optional=("payday_alignment",))
    payday = section.get("payday_alignment", False)
    if not isinstance(payday, bool):
        c.fail("retries.payday_alignment", f"must be true or false, got {_kind(payday)}")
    after = section["after"]
    if not isinstance(after, list):
        c.fail("retries.after", f"must be a list of durations, got {_kind(after)}")
    if len(after) > MAX_RETRIES:
        c.fail(
            "retries.after",
            f"at most {MAX_RETRIES} retries (Stripe's recommended maximum), got {len(after)}",
        )
    texts: list[str] = []
    previous: timedelta | None = None
    for i, item in enumerate(after):
        key = f"retries.after[{i}]"
        text, offset = c.duration(item, key)
        if offset <= timedelta(0):
            c.fail(key, "must be positive: offsets count from the first failed attempt")
        if previous is not None and offset <= previous:
            c.fail(key, f"offsets must be strictly increasing: {text} is not after {after[i - 1]}")
        previous = offset
        texts.append(text)
    return RetryConfig(after=texts, payday_alignment=payday)


def _parse_ladder(c: _Checker, value: object) -> list[LadderStep]:
    if not isinstance(value, list):
        c.fail("ladder", f"must be a list of steps, got {_kind(value)}")
    if not value:
        c.fail("ladder", "must have at least one step")
    steps: list[LadderStep] = []
    seen: dict[str, int] = {}
    previous: timedelta | None = None
    for i, raw in enumerate(value):
        base = f"ladder[{i}]"
        item = c.mapping(
            raw,
            base,
            required=("stage", "after"),
            optional=("notice", "fee", "fee_justification", "lock_access", "handoff"),
        )
        stage = c.string(item["stage"], f"{base}.stage")
        if not _STAGE_RE.fullmatch(stage):
            c.fail(f"{base}.stage", f"invalid stage name {stage!r}: must match [a-z0-9_]+")
        if stage in RESERVED_STAGES:
            c.fail(f"{base}.stage", f"{stage!r} is reserved (dunning.stage uses it)")
        if stage in seen:
            c.fail(f"{base}.stage", f"duplicate stage {stage!r} (also ladder[{seen[stage]}])")
        seen[stage] = i

        after, offset = c.duration(item["after"], f"{base}.after")
        if previous is not None and offset < previous:
            c.fail(
                f"{base}.after",
                f"steps must be in order: {after} is earlier than the previous step's "
                f"{value[i - 1]['after']}",
            )
        previous = offset

        notice: str | None = None
        if item.get("notice") is not None:
            notice = c.string(item["notice"], f"{base}.notice")
            if not _TEMPLATE_RE.fullmatch(notice):
                c.fail(f"{base}.notice", f"invalid template name {notice!r}: must match [a-z0-9_]+")

        fee = c.integer(item.get("fee", 0), f"{base}.fee", "minor units, e.g. 250 = 2,50 €")
        lock_access = c.boolean(item.get("lock_access", False), f"{base}.lock_access")
        handoff = c.boolean(item.get("handoff", False), f"{base}.handoff")
        if handoff and i != len(value) - 1:
            c.fail(f"{base}.handoff", "only the last step may hand off (and at most one)")
        justification: str | None = None
        if item.get("fee_justification") is not None:
            justification = c.string(item["fee_justification"], f"{base}.fee_justification")
            if not justification.strip():
                c.fail(f"{base}.fee_justification", "must not be empty")
        steps.append(
            LadderStep(
                stage=stage,
                after=after,
                notice=notice,
                fee=fee,
                lock_access=lock_access,
                handoff=handoff,
                fee_justification=justification,
            )
        )
    return steps


# Longer than any sensible notice period: a typo (`140d`) must not delay a debit for months.
MAX_PRE_NOTIFICATION: Final = timedelta(days=31)


def _parse_sepa(c: _Checker, value: object) -> SepaConfig:
    section = c.mapping(value, "sepa", required=(), optional=("pre_notification",))
    text, lead = c.duration(
        section.get("pre_notification", SEPA_PRE_NOTIFICATION_DEFAULT), "sepa.pre_notification"
    )
    if lead > MAX_PRE_NOTIFICATION:
        c.fail("sepa.pre_notification", f"at most 31d before the debit, got {text}")
    return SepaConfig(pre_notification=text)


def _parse_residual(c: _Checker, value: object) -> ResidualConfig:
    section = c.mapping(value, "residual", required=(), optional=("write_off_below",))
    return ResidualConfig(
        write_off_below=c.integer(
            section.get("write_off_below", 0), "residual.write_off_below", "minor units"
        )
    )


def _parse_send_window(c: _Checker, value: object) -> SendWindow:
    section = c.mapping(value, "send_window", required=(), optional=("start", "end", "days"))
    default = SendWindow()
    times: dict[str, str] = {}
    for key in ("start", "end"):
        raw = section.get(key, getattr(default, key))
        try:
            parse_hhmm(raw, f"send_window.{key}")
        except ValueError:
            c.fail(f"send_window.{key}", f"must be a time HH:MM (00:00–24:00), got {_kind(raw)}")
        times[key] = raw
    days = c.choice(section.get("days", default.days), "send_window.days", SEND_DAYS)
    window = SendWindow(start=times["start"], end=times["end"], days=days)
    if parse_hhmm(window.start) >= parse_hhmm(window.end):
        c.fail("send_window.end", f"must be after start {window.start}, got {window.end}")
    return window


def _parse_collection(c: _Checker, value: object) -> CollectionConfig:
    section = c.mapping(
        value,
        "collection",
        required=(),
        optional=("write_off_below", "route", "require_approval", "unlock"),
    )
    return CollectionConfig(
        write_off_below=c.integer(
            section.get("write_off_below", 0), "collection.write_off_below", "minor units"
        ),
        route=c.choice(section.get("route", "auto"), "collection.route", ROUTES),
        require_approval=c.boolean(
            section.get("require_approval", False), "collection.require_approval"
        ),
        unlock=c.choice(
            section.get("unlock", UNLOCK_CLAIM_PAID), "collection.unlock", UNLOCK_MODES
        ),
    )


# --------------------------------------------------------------------------- pinning


def policy_to_dict(p: Policy) -> dict[str, Any]:
    """The policy as a YAML-shaped dict (what the file would contain), for pinning/JSON.

    ``parse_policy(policy_to_dict(p), f"{p.name}.yaml") == p`` and
    ``policy_from_dict(policy_to_dict(p)) == p``.
    """
    ladder: list[dict[str, Any]] = []
    for step in p.ladder:
        entry: dict[str, Any] = {"stage": step.stage, "after": step.after}
        if step.notice is not None:
            entry["notice"] = step.notice
        entry["fee"] = step.fee
        if step.fee_justification is not None:
            entry["fee_justification"] = step.fee_justification
        entry["lock_access"] = step.lock_access
        entry["handoff"] = step.handoff
        ladder.append(entry)
    out: dict[str, Any] = {
        "name": p.name,
        "retries": {"after": list(p.retries.after), "payday_alignment": p.retries.payday_alignment},
        "ladder": ladder,
        "collection": {
            "write_off_below": p.collection.write_off_below,
            "route": p.collection.route,
            "require_approval": p.collection.require_approval,
            "unlock": p.collection.unlock,
        },
        "interest": p.interest,
        "sepa": {"pre_notification": p.sepa.pre_notification},
        "collect": p.collect,
        "residual": {"write_off_below": p.residual.write_off_below},
        "send_window": {
            "start": p.send_window.start,
            "end": p.send_window.end,
            "days": p.send_window.days,
        },
        "on_default": p.on_default,
    }
    if p.demo:  # only then: pinned policies of earlier releases stay byte for byte the same
        out["demo"] = True
    # The same for the sections of issue 12: written only when they differ from the defaults.
    if p.withdrawal != WithdrawalConfig():
        out["withdrawal"] = {"refund": p.withdrawal.refund, "access": p.withdrawal.access}
    if p.cancellation != CancellationConfig():
        out["cancellation"] = {"access": p.cancellation.access}
    if p.messages != MessagesConfig():
        out["messages"] = {kind: getattr(p.messages, kind) for kind in MESSAGE_KINDS}
    return out


def policy_from_dict(d: dict[str, Any]) -> Policy:
    """Rebuild a pinned policy from :func:`policy_to_dict` output.

    Deliberately structural only (no re-validation of rules): a policy pinned into a running
    contract must keep loading even if a later release tightens the validation rules.
    Unknown keys are ignored for the same reason (forward compatibility).
    """
    collection = d.get("collection") or {}
    window = d.get("send_window") or {}
    return Policy(
        name=str(d["name"]),
        retries=RetryConfig(
            after=[str(x) for x in d.get("retries", {}).get("after", [])],
            payday_alignment=bool(d.get("retries", {}).get("payday_alignment", False)),
        ),
        ladder=[
            LadderStep(
                stage=str(s["stage"]),
                after=str(s["after"]),
                notice=None if s.get("notice") is None else str(s["notice"]),
                fee=int(s.get("fee", 0)),
                lock_access=bool(s.get("lock_access", False)),
                handoff=bool(s.get("handoff", False)),
                fee_justification=(
                    None if s.get("fee_justification") is None else str(s["fee_justification"])
                ),
            )
            for s in d["ladder"]
        ],
        collection=CollectionConfig(
            write_off_below=int(collection.get("write_off_below", 0)),
            route=str(collection.get("route", "auto")),
            require_approval=bool(collection.get("require_approval", False)),
            unlock=str(collection.get("unlock", UNLOCK_CLAIM_PAID)),
        ),
        interest=str(d.get("interest", "statutory")),
        sepa=SepaConfig(
            pre_notification=str(
                (d.get("sepa") or {}).get("pre_notification", SEPA_PRE_NOTIFICATION_DEFAULT)
            )
        ),
        # A policy pinned before these keys existed gets their defaults: collect the
        # principal, write nothing off automatically, the default send window.
        collect=str(d.get("collect", COLLECT_PRINCIPAL)),
        residual=ResidualConfig(
            write_off_below=int((d.get("residual") or {}).get("write_off_below", 0))
        ),
        send_window=SendWindow(
            start=str(window.get("start", SendWindow.start)),
            end=str(window.get("end", SendWindow.end)),
            days=str(window.get("days", SendWindow.days)),
        ),
        on_default=str(d.get("on_default", KEEP_SCHEDULE)),
        demo=bool(d.get("demo", False)),
        withdrawal=WithdrawalConfig(
            refund=str((d.get("withdrawal") or {}).get("refund", REFUND_FULL)),
            access=str((d.get("withdrawal") or {}).get("access", ACCESS_END)),
        ),
        cancellation=CancellationConfig(
            access=str((d.get("cancellation") or {}).get("access", ACCESS_END))
        ),
        messages=MessagesConfig(
            **{k: bool((d.get("messages") or {}).get(k, True)) for k in MESSAGE_KINDS}
        ),
    )
