"""Request parameters checked against the `stripe` SDK's own parameter types.

Stripe refuses a request whose parameters its API version does not define: an unknown or
misplaced parameter is a 400 `invalid_request_error` with code `parameter_unknown` and the
full bracketed name (`Received unknown parameter: payment_method_options[card][foo]`). The
installed SDK (`stripe.params.*Params`, generated from Stripe's OpenAPI description for the
API version the SDK pins) describes exactly which parameters exist, so every endpoint of the
stand-in names its SDK params type (routes.py) and `check()` walks the decoded form data
against it before the endpoint runs.

How the SDK's annotations are read (`compile_type`):

- A TypedDict is a hash: its keys are the known parameters, `__required_keys__` the required
  ones. The keys of `RequestOptions` (api_key, idempotency_key, ...) are client options sent
  as headers, never form parameters, so they are not parameters here.
- `Literal["a", "b"] | str` is how the SDK spells an enum (the trailing `str` keeps old SDKs
  working when Stripe adds values; the API itself refuses values outside the enum of the
  pinned version), so such a union is a closed enum.
- `Literal[""]` in a union means "an empty string unsets this"; without it, an empty string is
  refused with `parameter_invalid_empty`, as Stripe does.
- `List[X]` is an array (`expand[0]=a` or `expand[]=a`), `Dict[str, str]` a free hash of
  strings (metadata), `int`/`float`/`bool`/`str` scalars (sent as strings in the form).

Error messages and codes follow Stripe's (see tests/standin/test_strict.py for each):
`parameter_unknown`, `parameter_missing`, `parameter_invalid_empty`,
`parameter_invalid_integer`; invalid booleans, decimals, enum values, hashes and arrays are
answered with the message and `param` only (Stripe sets no `code` on those).
"""

from __future__ import annotations

import decimal
import functools
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ForwardRef, Literal, Union

from .errors import StripeError, invalid_param
from .formparse import as_list

# --- compiled schema ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    kind: str  # "str" | "int" | "float" | "bool" | "any"


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


@dataclass(frozen=True)
class ListOf:
    item: Schema


@dataclass(frozen=True)
class MapOf:
    value: Schema


@dataclass
class Hash:
    name: str
    fields: dict[str, Schema]
    required: frozenset[str]


@dataclass(frozen=True)
class OneOf:
    options: tuple[Schema, ...]
    clearable: bool  # `Literal[""]` among the options: an empty string unsets the param


Schema = Union[Scalar, Enum, ListOf, MapOf, Hash, OneOf]  # noqa: UP007 - a runtime alias

_REQUEST_OPTIONS = frozenset(
    (
        "api_key",
        "stripe_version",
        "stripe_account",
        "stripe_context",
        "max_network_retries",
        "idempotency_key",
        "content_type",
        "headers",
    )
)
_SCALARS = {str: "str", int: "int", float: "float", bool: "bool", decimal.Decimal: "float"}


def sdk_params_type(name: str) -> type:
    """`PaymentIntentCreateParams` -> the class from `stripe.params`;
    `checkout.SessionCreateParams` -> from `stripe.params.checkout`."""
    import importlib

    package, _, short = name.rpartition(".")
    module = importlib.import_module("stripe.params" + (f".{package}" if package else ""))
    cls = getattr(module, short, None)
    if cls is None or not isinstance(cls, type):
        raise LookupError(f"stripe.params has no {name} (stripe {_sdk_version()})")
    return cls


def _sdk_version() -> str:
    import stripe

    return str(getattr(stripe, "VERSION", "?"))


@functools.cache
def compile_params(name: str) -> Hash:
    """The schema of an SDK params TypedDict, by class name (cached: built once)."""
    schema = _compile_typeddict(sdk_params_type(name), {})
    assert isinstance(schema, Hash)
    return schema


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__required_keys__") and hasattr(tp, "__total__")


def _compile_typeddict(cls: type, seen: dict[type, Hash]) -> Hash:
    if cls in seen:
        return seen[cls]  # recursive types share one node
    node = Hash(cls.__name__, {}, frozenset())
    seen[cls] = node
    module = sys.modules[cls.__module__].__dict__
    required: set[str] = set()
    required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    for key, annotation in cls.__annotations__.items():
        if key in _REQUEST_OPTIONS and _declared_by_request_options(cls, key):
            continue
        resolved = _resolve(annotation, module)
        tp, is_required = _unwrap_required(resolved, key in required_keys)
        node.fields[key] = _compile(tp, module, seen)
        if is_required:
            required.add(key)
    node.required = frozenset(required)
    return node


def _declared_by_request_options(cls: type, key: str) -> bool:
    return any(
        base.__name__ == "RequestOptions" and key in getattr(base, "__annotations__", {})
        for base in getattr(cls, "__orig_bases__", ()) + cls.__mro__
        if isinstance(base, type)
    )


def _unwrap_required(tp: Any, required: bool) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    name = getattr(origin, "_name", None) or getattr(origin, "__name__", None)
    if name == "NotRequired":
        return typing.get_args(tp)[0], False
    if name == "Required":
        return typing.get_args(tp)[0], True
    return tp, required


def _resolve(annotation: Any, module: dict[str, Any]) -> Any:
    """Evaluate string and ForwardRef annotations in the SDK module's namespace."""
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        namespace = {**typing.__dict__, **module}
        return eval(annotation, namespace)  # noqa: S307 - the SDK's own annotations
    return annotation


def _compile(tp: Any, module: dict[str, Any], seen: dict[type, Hash]) -> Schema:
    tp = _resolve(tp, module)
    tp, _ = _unwrap_required(tp, True)
    if tp in _SCALARS:
        return Scalar(_SCALARS[tp])
    if tp is Any or tp is object:
        return Scalar("any")
    if _is_typeddict(tp):
        return _compile_typeddict(tp, seen)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return OneOf((Enum(tuple(str(a) for a in args if a != "")),), "" in args)
    if origin in (list, typing.List):  # noqa: UP006 - matching the SDK's spelling
        return ListOf(_compile(args[0], module, seen))
    if origin in (dict, typing.Dict, Mapping) or _is_untyped_object(tp):  # noqa: UP006
        value = args[1] if len(args) == 2 else str
        return MapOf(_compile(value, module, seen))
    if origin is Union or isinstance(tp, types.UnionType):
        return _compile_union(args, module, seen)
    raise TypeError(f"unsupported annotation in the SDK params: {tp!r}")


def _is_untyped_object(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return getattr(origin, "__name__", "") == "UntypedStripeObject"


def _compile_union(args: tuple[Any, ...], module: dict[str, Any], seen: dict[type, Hash]) -> Schema:
    literals: list[str] = []
    clearable = False
    has_str = False
    options: list[Schema] = []
    for arg in args:
        arg = _resolve(arg, module)
        if typing.get_origin(arg) is Literal:
            for value in typing.get_args(arg):
                if value == "":
                    clearable = True
                else:
                    literals.append(str(value))
        elif arg is str:
            has_str = True
        elif arg is type(None):
            continue
        else:
            options.append(_compile(arg, module, seen))
    if literals:
        # `Literal[...] | str`: the SDK's forward-compatible enum; the API's enum is closed.
        options.append(Enum(tuple(literals)))
    elif has_str:
        options.append(Scalar("str"))
    return OneOf(tuple(options), clearable)


# --- checking ----------------------------------------------------------------------------


def check(params_type: str, data: Mapping[str, Any]) -> None:
    """Raise Stripe's 400 for the first parameter `data` has that the SDK type forbids."""
    _check_hash(compile_params(params_type), data, "")


def _name(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def unknown(name: str) -> StripeError:
    return invalid_param(f"Received unknown parameter: {name}", name, "parameter_unknown")


def _empty(name: str) -> StripeError:
    return invalid_param(
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from "
        "your request or supply a non-empty value.",
        name,
        "parameter_invalid_empty",
    )


def _check_hash(node: Hash, value: Any, name: str) -> None:
    if not isinstance(value, dict):
        raise invalid_param(f"Invalid object: {_short(value)}", name or "params")
    for key, item in value.items():
        field = node.fields.get(key)
        if field is None:
            raise unknown(_name(name, key))
        _check(field, item, _name(name, key))
    for key in sorted(node.required):
        if key not in value:
            full = _name(name, key)
            raise invalid_param(f"Missing required param: {full}.", full, "parameter_missing")


def _check(schema: Schema, value: Any, name: str) -> None:
    if isinstance(schema, OneOf):
        _check_one_of(schema, value, name)
    elif value == "":
        # A bare empty string for a param that cannot be unset.
        raise _empty(name)
    elif isinstance(schema, Hash):
        _check_hash(schema, value, name)
    elif isinstance(schema, ListOf):
        _check_list(schema, value, name)
    elif isinstance(schema, MapOf):
        _check_map(schema, value, name)
    elif isinstance(schema, Enum):
        _check_enum(schema, value, name)
    else:
        _check_scalar(schema, value, name)


def _check_one_of(schema: OneOf, value: Any, name: str) -> None:
    if value == "":
        if schema.clearable:
            return
        raise _empty(name)
    if len(schema.options) == 1:
        _check(schema.options[0], value, name)
        return
    # Pick the option matching the value's shape: a hash, an array, or a plain string.
    if isinstance(value, dict):
        lists = [o for o in schema.options if isinstance(o, ListOf)]
        if lists and as_list(value) is not None and value:
            _check(lists[0], value, name)
            return
        hashes = [o for o in schema.options if isinstance(o, Hash | MapOf)]
        if hashes:
            _check(hashes[0], value, name)
            return
        _check(schema.options[0], value, name)
        return
    first_error: StripeError | None = None
    for option in schema.options:
        if isinstance(option, Hash | MapOf | ListOf):
            continue
        try:
            _check(option, value, name)
            return
        except StripeError as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    _check(schema.options[0], value, name)


def _check_list(schema: ListOf, value: Any, name: str) -> None:
    items = as_list(value)
    if items is None:
        raise invalid_param(f"Invalid array: {_short(value)}", name)
    for i, item in enumerate(items):
        _check(schema.item, item, f"{name}[{i}]")


def _check_map(schema: MapOf, value: Any, name: str) -> None:
    if not isinstance(value, dict):
        raise invalid_param(f"Invalid hash: {_short(value)}", name)
    for key, item in value.items():
        if item == "":
            continue  # `metadata[key]=` deletes that key
        _check(schema.value, item, _name(name, key))


def _check_enum(schema: Enum, value: Any, name: str) -> None:
    if not isinstance(value, str) or value not in schema.values:
        raise invalid_param(f"Invalid {_leaf(name)}: must be one of {_one_of(schema.values)}", name)


def _check_scalar(schema: Scalar, value: Any, name: str) -> None:
    if schema.kind == "any":
        return
    if not isinstance(value, str):
        if schema.kind == "str":
            raise invalid_param(f"Invalid string: {_short(value)}", name)
        raise invalid_param(f"Invalid {schema.kind}: {_short(value)}", name)
    if schema.kind == "int":
        try:
            int(value)
        except ValueError:
            raise invalid_param(
                f"Invalid integer: {value}", name, "parameter_invalid_integer"
            ) from None
    elif schema.kind == "float":
        try:
            float(value)
        except ValueError:
            raise invalid_param(f"Invalid decimal: {value}", name) from None
    elif schema.kind == "bool" and value.lower() not in ("true", "false"):
        raise invalid_param(f"Invalid boolean: {value}", name)


def _leaf(name: str) -> str:
    return name.rsplit("[", 1)[-1].rstrip("]")


def _one_of(values: tuple[str, ...]) -> str:
    """Stripe's wording: `a or b`, `a, b, or c`."""
    if len(values) <= 2:
        return " or ".join(values)
    return f"{', '.join(values[:-1])}, or {values[-1]}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- introspection (tests, docs) -----------------------------------------------------------


def known_params(params_type: str) -> frozenset[str]:
    return frozenset(compile_params(params_type).fields)


def enum_values(params_type: str, path: str) -> tuple[str, ...]:
    """The enum values of a param (`automatic_payment_methods.allow_redirects`)."""
    node: Schema = compile_params(params_type)
    for part in path.split("."):
        while isinstance(node, OneOf) and len(node.options) == 1:
            node = node.options[0]
        if isinstance(node, OneOf):
            node = next(o for o in node.options if isinstance(o, Hash))
        assert isinstance(node, Hash), path
        node = node.fields[part]
    while isinstance(node, OneOf | ListOf):
        node = node.options[0] if isinstance(node, OneOf) else node.item
    assert isinstance(node, Enum), path
    return node.values
