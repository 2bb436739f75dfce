"""Stripe list pagination (`limit`, `starting_after`, `ending_before`), newest first."""

from __future__ import annotations

from collections.abc import Callable

from .engine import Engine
from .errors import invalid_param
from .objects import list_object
from .params import Params
from .store import Obj


def list_page(
    engine: Engine,
    params: Params,
    index: str,
    url: str,
    keep: Callable[[str], bool] | None = None,
    load: Callable[[str], Obj | None] | None = None,
) -> Obj:
    limit = params.limit()
    starting_after = params.get_str("starting_after") or None
    ending_before = params.get_str("ending_before") or None
    idx = engine.store.indexes.get(index)
    if idx is None:
        return list_object(url, [], False)
    page = idx.page(limit, starting_after, ending_before, keep)
    if page is None:
        cursor = "starting_after" if starting_after else "ending_before"
        raise invalid_param(
            f"Invalid {cursor}: no object with id '{starting_after or ending_before}' in this list",
            cursor,
        )
    ids, has_more = page
    get = load or engine.store.objects.get
    data = [obj for obj in (get(i) for i in ids) if obj is not None]
    return list_object(url, data, has_more)
