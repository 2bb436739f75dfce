"""The payload converter of every client and worker: Temporal's default, decoding dataclasses
with their type hints resolved once per class instead of once per payload (issue 17).

Temporal's JSON converter rebuilds a dataclass from a payload by calling
`typing.get_type_hints(cls)` for it and for every nested dataclass, every time. Our
dataclasses are declared under `from __future__ import annotations`, so each call parses
and evaluates every field's annotation string again: in a 2,000-installment due wave that
was 8.5 % of the worker's GIL time (bench/RESULTS.md), for hints that cannot change while
the process runs. `CachedDataclassConverter` is a `JSONTypeConverter` — the converter's
documented extension point, asked first for every hint — that builds dataclasses the same
way with the hints cached per class. Encoding is untouched: the payloads written, and so
every history, are byte for byte what the default converter writes.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

# Bounded: a worker sees a fixed set of workflow and activity types; a process that built
# dataclasses on the fly would not grow without end.
_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _dataclass_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """Each field of the dataclass `cls` with its resolved type hint."""
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


class CachedDataclassConverter(JSONTypeConverter):
    """Builds dataclasses as Temporal's `value_to_type` does (unknown keys ignored, missing
    required fields left to the constructor to refuse, `init=False` fields restored after
    it), with the field hints from a per-class cache; everything else is left to Temporal."""

    def __init__(self) -> None:
        self._converters: list[JSONTypeConverter] = [self]

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init_values: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for field, field_hint in _dataclass_fields(hint):
            raw = value.get(field.name, dataclasses.MISSING)
            if raw is dataclasses.MISSING:
                continue  # the constructor refuses a missing required field
            try:
                converted = value_to_type(field_hint, raw, self._converters)
            except Exception as err:
                raise TypeError(
                    f"Failed converting field {field.name} on dataclass {hint}"
                ) from err
            (init_values if field.init else later)[field.name] = converted
        obj = hint(**init_values)
        for name, converted in later.items():
            object.__setattr__(obj, name, converted)  # frozen dataclasses too
        return obj


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, the JSON one with `CachedDataclassConverter`."""

    def __init__(self) -> None:
        super().__init__(
            *(
                JSONPlainPayloadConverter(custom_type_converters=[CachedDataclassConverter()])
                if isinstance(c, JSONPlainPayloadConverter)
                else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )
