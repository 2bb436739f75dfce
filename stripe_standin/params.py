"""Typed access to decoded request params, with Stripe's validation messages.

Stripe validates parameters before an endpoint runs and answers 400 `invalid_request_error`
naming the `param`; such failures are not saved for idempotent replay (errors.invalid_param).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import invalid_param, missing_param
from .formparse import as_list

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


class Params:
    """Decoded params of one request; `name` is the prefix used in error messages."""

    __slots__ = ("data", "prefix")

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        """The param's full name as Stripe reports it (`billing_details[name]`)."""
        return f"{self.prefix}[{key}]" if self.prefix else key

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def get_str(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing_param(self.name(key))
            return None
        if not isinstance(value, str):
            raise invalid_param(f"Invalid string: {_short(value)}", self.name(key))
        if value == "" and required:
            raise missing_param(self.name(key))
        return value

    def req_str(self, key: str) -> str:
        value = self.get_str(key, required=True)
        assert value is not None
        return value

    def get_int(self, key: str, *, required: bool = False) -> int | None:
        value = self.get_str(key, required=required)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise invalid_param(
                f"Invalid integer: {value}", self.name(key), "parameter_invalid_integer"
            ) from None

    def req_int(self, key: str) -> int:
        value = self.get_int(key, required=True)
        if value is None:
            raise missing_param(self.name(key))
        return value

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self.get_str(key)
        if value is None or value == "":
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise invalid_param(f"Invalid boolean: {value}", self.name(key))

    def enum(self, key: str, allowed: tuple[str, ...]) -> str | None:
        value = self.get_str(key)
        if value is None or value == "":
            return None
        if value not in allowed:
            raise invalid_param(
                f"Invalid {key}: must be one of {', '.join(allowed)}", self.name(key)
            )
        return value

    def sub(self, key: str) -> Params:
        """A nested hash (`sepa_debit[iban]`); empty if absent."""
        value = self.data.get(key)
        if value is None or value == "":
            return Params({}, self.name(key))
        if not isinstance(value, dict):
            raise invalid_param(f"Invalid hash: {_short(value)}", self.name(key))
        return Params(value, self.name(key))

    def str_list(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        items = as_list(value)
        if items is None or not all(isinstance(v, str) for v in items):
            raise invalid_param(f"Invalid array: {_short(value)}", self.name(key))
        return items

    def expand(self) -> list[str]:
        return self.str_list("expand") or []

    def limit(self) -> int:
        value = self.get_int("limit")
        if value is None:
            return 10
        if not 1 <= value <= 100:
            raise invalid_param(
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                self.name("limit"),
            )
        return value

    def metadata(self) -> dict[str, str] | None:
        """Metadata changes: a key with value "" is deleted; `metadata=""` clears all.

        Returns None when absent, `{}` with the marker key "" removed when cleared.
        Stripe's limits: 50 keys, keys up to 40 and values up to 500 characters.
        """
        if "metadata" not in self.data:
            return None
        value = self.data["metadata"]
        if value == "":
            return {"": ""}  # clear-all marker, see apply_metadata
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise invalid_param("Invalid hash", self.name("metadata"))
        if len(value) > 50:
            raise invalid_param(
                "Invalid metadata: metadata can have a maximum of 50 key-value pairs.",
                self.name("metadata"),
            )
        for key, item in value.items():
            if len(key) > 40:
                raise invalid_param(
                    "Invalid metadata: keys can be a maximum of 40 characters.",
                    f"{self.name('metadata')}[{key}]",
                )
            if len(item) > 500:
                raise invalid_param(
                    "Invalid metadata: values can be a maximum of 500 characters.",
                    f"{self.name('metadata')}[{key}]",
                )
        return dict(value)


def apply_metadata(current: dict[str, str], changes: dict[str, str] | None) -> dict[str, str]:
    """Stripe's metadata update semantics: merge, "" deletes a key, `metadata=""` clears."""
    if changes is None:
        return current
    if changes == {"": ""}:
        return {}
    merged = dict(current)
    for key, value in changes.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
