"""In-memory state with O(1) lookups and O(page) listing.

Every object lives in one dict keyed by id (ids carry their type prefix, as Stripe's do).
List endpoints walk an `OrderedIndex` (creation order plus a position map) from a cursor, so a
page costs the same with 100 or 100,000 objects. Secondary indexes (per customer, per
metadata pair, per event type) are `OrderedIndex`es too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .testvalues import CardProfile, SepaProfile

Obj = dict[str, Any]


class OrderedIndex:
    """Ids in creation order; removal leaves a tombstone so positions stay valid."""

    __slots__ = ("_ids", "_pos")

    def __init__(self) -> None:
        self._ids: list[str | None] = []
        self._pos: dict[str, int] = {}

    def add(self, obj_id: str) -> None:
        if obj_id in self._pos:
            return
        self._pos[obj_id] = len(self._ids)
        self._ids.append(obj_id)

    def remove(self, obj_id: str) -> None:
        pos = self._pos.pop(obj_id, None)
        if pos is not None:
            self._ids[pos] = None

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._pos

    def __len__(self) -> int:
        return len(self._pos)

    def position(self, obj_id: str) -> int:
        return self._pos.get(obj_id, -1)

    def newest_first(self, before: int | None = None) -> Iterator[str]:
        start = len(self._ids) - 1 if before is None else before - 1
        for i in range(start, -1, -1):
            obj_id = self._ids[i]
            if obj_id is not None:
                yield obj_id

    def page(
        self,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], bool] | None:
        """One page, newest first, as Stripe lists; None if a cursor is not in the index."""
        if ending_before is not None:
            pos = self._pos.get(ending_before)
            if pos is None:
                return None
            newer: list[str] = []
            for i in range(pos + 1, len(self._ids)):
                obj_id = self._ids[i]
                if obj_id is not None and (keep is None or keep(obj_id)):
                    newer.append(obj_id)
                    if len(newer) > limit:
                        break
            has_more = len(newer) > limit
            return list(reversed(newer[:limit])), has_more
        before = None
        if starting_after is not None:
            before = self._pos.get(starting_after)
            if before is None:
                return None
        out: list[str] = []
        for obj_id in self.newest_first(before):
            if keep is None or keep(obj_id):
                out.append(obj_id)
                if len(out) > limit:
                    break
        return out[:limit], len(out) > limit


@dataclass
class LedgerEntry:
    """One successful debit: what tests count to assert "charged exactly once"."""

    payment_intent: str
    charge: str
    amount: int
    currency: str
    customer: str | None
    payment_method: str | None
    payment_method_type: str
    metadata: dict[str, str]
    succeeded_at: int
    amount_refunded: int = 0
    disputed: bool = False
    dispute_status: str | None = None  # needs_response ... won / lost
    account: str = "acct_standin"  # the Stripe account the money went to (Connect)

    def to_json(self) -> Obj:
        return dict(self.__dict__)


@dataclass
class Store:
    objects: dict[str, Obj] = field(default_factory=dict)
    indexes: dict[str, OrderedIndex] = field(default_factory=dict)
    # Concrete PaymentMethod id -> the test behaviour it was created with.
    profiles: dict[str, CardProfile | SepaProfile] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    ledger_by_pi: dict[str, LedgerEntry] = field(default_factory=dict)
    # ("key", "value") -> PaymentIntent ids, for search by metadata.
    pi_metadata: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)
    # Unattached PaymentMethods already used once: Stripe refuses to use them again.
    consumed_pms: set[str] = field(default_factory=set)
    mandate_by_pm: dict[str, str] = field(default_factory=dict)
    # Scripted outcomes (stand-in extension, /_standin/scenarios): metadata to match, and the
    # decline codes the next matching card debits get ("succeed" lets one through).
    scripts: list[tuple[dict[str, str], list[str]]] = field(default_factory=list)

    def scripted_outcome(self, metadata: dict[str, str]) -> str | None:
        for match, outcomes in self.scripts:
            if outcomes and all(metadata.get(k) == v for k, v in match.items()):
                return outcomes.pop(0)
        return None

    def index(self, name: str) -> OrderedIndex:
        idx = self.indexes.get(name)
        if idx is None:
            idx = self.indexes[name] = OrderedIndex()
        return idx

    def get(self, obj_id: str | None, object_type: str | None = None) -> Obj | None:
        if not obj_id:
            return None
        obj = self.objects.get(obj_id)
        if obj is None or (object_type is not None and obj.get("object") != object_type):
            return None
        return obj

    def put(self, obj: Obj, *indexes: str) -> Obj:
        self.objects[obj["id"]] = obj
        for name in indexes:
            self.index(name).add(obj["id"])
        return obj

    def index_pi_metadata(self, pi_id: str, old: dict[str, str], new: dict[str, str]) -> None:
        for pair in old.items():
            if new.get(pair[0]) != pair[1]:
                bucket = self.pi_metadata.get(pair)
                if bucket is not None:
                    bucket.pop(pi_id, None)
        for pair in new.items():
            self.pi_metadata.setdefault(pair, {})[pi_id] = None

    def add_ledger(self, entry: LedgerEntry) -> None:
        self.ledger.append(entry)
        self.ledger_by_pi[entry.payment_intent] = entry
