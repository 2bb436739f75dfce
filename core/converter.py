"""The payload converter of every client and worker: Temporal's default, decoding dataclasses
with their type hints resolved once per class instead of once per payload (issue 17).

Temporal's JSON converter rebuilds a dataclass from a payload by calling
`typing.get_type_hints(cls)` for it and for every nested dataclass, every time. Our
dataclasses are declared under `from __future__ import annotations`, so each call parses
and evaluates every field's annotation string again: in a 2,000-installment due wave that
was 8.5 % of the worker's GIL time (bench/RESULTS.md), for hints that cannot change while
the process runs. `CachedDataclassConverter` is a `JSONTypeConverter` — the converter's
documented extension point, asked first for every hint — that builds dataclasses the same
way with the hints cached per class. Encoding writes, byte for byte, what the default
converter writes — and so every history — without `dataclasses.asdict`'s deep copy of every
value first (`ShallowDataclassEncoder`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

# Bounded: a worker sees a fixed set of workflow and activity types; a process that built
# dataclasses on the fly would not grow without end.
_CACHE_SIZE = 1024


# Field values that Temporal's `value_to_type` returns as they are, told apart without
# calling it: JSON's scalars under a hint of exactly their type, and None under an optional
# hint. `value_to_type` tries a union's members in order and catches each one's TypeError,
# so a None under `str | None` cost a formatted exception per field — most of our
# dataclasses' optional fields are None (a due wave: ~7 % of the worker's GIL time decoding
# activity inputs, issue 17).
_SCALARS = (str, int, float, bool)


@dataclasses.dataclass(frozen=True)
class _Field:
    field: dataclasses.Field[Any]
    hint: Any
    optional: bool  # a union with None: None decodes to None
    exact: type | None  # `T` or `T | None` for a JSON scalar T: a value of type T is T(value)


def _plan(field: dataclasses.Field[Any], hint: Any) -> _Field:
    args = typing.get_args(hint)
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    optional = union and type(None) in args
    if hint in _SCALARS:
        exact: type | None = hint
    elif optional and len(args) == 2:
        (other,) = (a for a in args if a is not type(None))
        exact = other if other in _SCALARS else None
    else:
        exact = None
    return _Field(field, hint, optional, exact)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _dataclass_fields(cls: type) -> tuple[_Field, ...]:
    """Each field of the dataclass `cls` with its resolved type hint (and what it decodes
    without Temporal's `value_to_type`)."""
    hints = typing.get_type_hints(cls)
    return tuple(_plan(f, hints[f.name]) for f in dataclasses.fields(cls))


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
        for plan in _dataclass_fields(hint):
            field = plan.field
            raw = value.get(field.name, dataclasses.MISSING)
            if raw is dataclasses.MISSING:
                continue  # the constructor refuses a missing required field
            if raw is None and plan.optional:
                converted = None
            elif plan.exact is not None and type(raw) is plan.exact:
                converted = raw  # what `value_to_type` returns: str(s), int(i), float(f), bool(b)
            else:
                try:
                    converted = value_to_type(plan.hint, raw, self._converters)
                except Exception as err:
                    raise TypeError(
                        f"Failed converting field {field.name} on dataclass {hint}"
                    ) from err
            (init_values if field.init else later)[field.name] = converted
        obj = hint(**init_values)
        for name, converted in later.items():
            object.__setattr__(obj, name, converted)  # frozen dataclasses too
        return obj


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class ShallowDataclassEncoder(AdvancedJSONEncoder):
    """Temporal's JSON encoder, with a dataclass turned into a dict one level at a time.

    `AdvancedJSONEncoder` encodes a dataclass as `dataclasses.asdict(o)`, which walks the
    whole value first and deep-copies every leaf (`copy.deepcopy` of each string, number and
    datetime) before the encoder walks it again; encoding a workflow's ledger write spent
    most of its time there. Here a dataclass becomes the dict of its fields as they are, and
    the encoder meets the nested dataclasses, lists and datetimes itself and asks this method
    again for each: the same JSON, byte for byte (tests/test_converter.py compares them)."""

    def default(self, o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {name: getattr(o, name) for name in _field_names(type(o))}
        return super().default(o)


@functools.cache
def _encoding_converters() -> tuple[EncodingPayloadConverter, ...]:
    """Temporal's default encoding converters, the JSON one with `CachedDataclassConverter`:
    built once and shared, as Temporal's default converter shares its own (none of them keeps
    state or takes a serialization context)."""
    return tuple(
        JSONPlainPayloadConverter(
            encoder=ShallowDataclassEncoder, custom_type_converters=[CachedDataclassConverter()]
        )
        if isinstance(c, JSONPlainPayloadConverter)
        else c
        for c in DefaultPayloadConverter.default_encoding_payload_converters
    )


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, the JSON one with `CachedDataclassConverter`.

    Constructed often: every `DataConverter.with_context` and every workflow task's
    per-command converter builds a new payload converter (and then replaces it) — so the
    encoding converters are built once (`_encoding_converters`), not per instance."""

    def __init__(self) -> None:
        super().__init__(*_encoding_converters())
