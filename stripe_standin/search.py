"""`GET /v1/payment_intents/search`: Stripe's search query language, the part Mahnwerk uses.

Supported: `metadata['key']:'value'`, `status:'succeeded'`, `customer:'cus_...'`,
`currency:'eur'`, `amount>1000` / `created>=...` (`:` `>` `<` `>=` `<=`), negation with a
leading `-`, clauses joined by all-`AND` or all-`OR` (Stripe forbids mixing them).
A metadata or customer clause in an AND query is answered from an index; other queries scan.
Stripe's search index lags behind writes (docs.stripe.com/search: usually by under a
minute): a PaymentIntent is found only `StandinConfig.search_lag` seconds
(stand-in clock) after its creation; 0 makes it visible at once. Later changes to an object
are searchable at once here (Stripe: also after the lag).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .engine import Engine
from .errors import invalid_param
from .params import Params
from .store import Obj

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-?)(?P<field>[a-z_]+)
        (?:\[\s*(?P<kq>['"])(?P<key>.*?)(?P=kq)\s*\])?
        \s*(?P<op>>=|<=|:|>|<)\s*
        (?:(?P<vq>['"])(?P<value>.*?)(?P=vq)|(?P<number>-?\d+))\s*""",
    re.VERBOSE,
)
_JOIN = re.compile(r"(AND|OR)\s+")
_FIELDS = ("metadata", "status", "customer", "currency", "amount", "created")
_NUMERIC = ("amount", "created")


@dataclass(frozen=True)
class Clause:
    field: str
    key: str | None
    op: str
    value: str
    negated: bool

    def matches(self, pi: Obj) -> bool:
        if self.field == "metadata":
            actual = pi["metadata"].get(self.key or "")
        else:
            actual = pi.get(self.field)
        if self.field in _NUMERIC:
            result = _compare(actual, self.op, self.value)
        else:
            result = actual is not None and str(actual) == self.value
        return result != self.negated


def _compare(actual: object, op: str, value: str) -> bool:
    if not isinstance(actual, int):
        return False
    target = int(value)
    return {
        ":": actual == target,
        ">": actual > target,
        "<": actual < target,
        ">=": actual >= target,
        "<=": actual <= target,
    }[op]


def parse_query(query: str) -> tuple[list[Clause], str]:
    """The clauses and their connector ("AND" or "OR")."""
    clauses: list[Clause] = []
    joins: set[str] = set()
    pos = 0
    while True:
        match = _CLAUSE.match(query, pos)
        if match is None:
            raise _bad(query, pos)
        field = match["field"]
        if field not in _FIELDS or (field == "metadata") != (match["key"] is not None):
            raise invalid_param(
                f"Field '{field}' is an unsupported search field for payment_intents.", "query"
            )
        value = match["value"] if match["value"] is not None else match["number"]
        if match["op"] != ":" and field not in _NUMERIC:
            raise _bad(query, match.start("op"))
        if field in _NUMERIC and not re.fullmatch(r"-?\d+", value or ""):
            raise _bad(query, match.start("op"))
        clauses.append(Clause(field, match["key"], match["op"], value or "", bool(match["neg"])))
        pos = match.end()
        if pos >= len(query):
            break
        join = _JOIN.match(query, pos)
        if join is None:
            raise _bad(query, pos)
        joins.add(join.group(1))
        pos = join.end()
    if len(joins) > 1:
        raise invalid_param("Search queries cannot combine AND and OR.", "query")
    return clauses, joins.pop() if joins else "AND"


def _bad(query: str, pos: int) -> Exception:
    return invalid_param(
        f"We were unable to parse your search query. Try using the format "
        f"`metadata['key']:'value'`. Query: {query!r}, position {pos}.",
        "query",
    )


def _candidates(engine: Engine, clauses: list[Clause], join: str) -> Iterable[str]:
    store = engine.store
    if join == "AND":
        buckets: list[dict[str, None]] = [
            store.pi_metadata.get((c.key or "", c.value), {})
            for c in clauses
            if c.field == "metadata" and c.op == ":" and not c.negated
        ]
        if buckets:
            smallest = buckets[0]
            for bucket in buckets[1:]:
                if len(bucket) < len(smallest):
                    smallest = bucket
            return list(smallest)
        for c in clauses:
            if c.field == "customer" and not c.negated:
                idx = store.indexes.get(f"payment_intent:customer:{c.value}")
                return list(idx.newest_first()) if idx is not None else []
    idx = store.indexes.get("payment_intent")
    return list(idx.newest_first()) if idx is not None else []


def search_payment_intents(engine: Engine, params: Params) -> Obj:
    query = params.req_str("query")
    limit = params.limit()
    page = params.get_str("page") or None
    clauses, join = parse_query(query)
    combine = all if join == "AND" else any
    objects = engine.store.objects
    # Created at or before this moment (stand-in clock) means indexed already.
    indexed_by = engine.clock.now() - engine.config.search_lag
    hits = [
        pi
        for pi in (objects[i] for i in _candidates(engine, clauses, join))
        if pi["created"] <= indexed_by and combine(c.matches(pi) for c in clauses)
    ]
    position = engine.store.index("payment_intent").position
    hits.sort(key=lambda pi: (pi["created"], position(pi["id"])), reverse=True)
    offset = _decode_page(page)
    chunk = hits[offset : offset + limit]
    has_more = offset + limit < len(hits)
    return {
        "object": "search_result",
        "data": chunk,
        "has_more": has_more,
        "next_page": _encode_page(offset + limit) if has_more else None,
        "url": "/v1/payment_intents/search",
    }


def _encode_page(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_page(page: str | None) -> int:
    if page is None:
        return 0
    try:
        return int(base64.urlsafe_b64decode(page.encode()).decode().split(":", 1)[1])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise invalid_param("Invalid page token.", "page") from None
