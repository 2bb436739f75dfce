"""Decode Stripe's form encoding into nested params.

The SDK (`stripe._encode._api_encode`) flattens parameters into
`application/x-www-form-urlencoded` pairs with bracketed keys: `metadata[contract_id]=x`,
`sepa_debit[iban]=...`, lists as `expand[0]=a&expand[1]=b` (older clients and curl send
`expand[]=a`); both decode to index-keyed dicts, turned into lists by `as_list`. GET requests
carry the same encoding in the query string. Values stay strings, as Stripe receives them;
the endpoints coerce types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid_param

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def parse_form(body: bytes | str) -> dict[str, Any]:
    """Parse a urlencoded body (or query string) into nested params."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return parse_pairs(parse_qsl(text, keep_blank_values=True))


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if match is None:
            raise invalid_param(f"Invalid parameter name: {raw_key}", raw_key)
        path: list[str | None] = [match.group(1)]
        path.extend(p if p != "" else None for p in _PART.findall(match.group(2)))
        _insert(root, path, value, raw_key)
    return root


def _insert(node: dict[str, Any], path: list[str | None], value: str, raw_key: str) -> None:
    for i, part in enumerate(path):
        key = str(len(node)) if part is None else part  # `a[]=x`: the next free index
        if i == len(path) - 1:
            if isinstance(node.get(key), dict):
                raise invalid_param(f"Invalid hash for parameter {raw_key}", raw_key)
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise invalid_param(f"Invalid hash for parameter {raw_key}", raw_key)
        node = child


def as_list(value: Any) -> list[Any] | None:
    """A list-valued param: `{"0": a, "1": b}` (as decoded) -> `[a, b]`; None if not a list.

    Lists are decoded as index-keyed dicts because only the endpoint knows whether
    `metadata[0]` is a list element or a metadata key named "0".
    """
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    if value == "":
        return []  # `expand=` clears a list, as Stripe reads an empty value
    return None
