"""core/converter.py: dataclasses decoded with cached type hints, exactly as Temporal's default
converter decodes them (issue 17)."""

from __future__ import annotations

import dataclasses
import enum
import typing
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
import temporalio.converter
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from core.converter import CachedDataclassConverter, PayloadConverter, _dataclass_fields
from core.settings import Settings
from core.temporal import data_converter
from tests.conftest import STACK_CODEC_KEY
from workflows.types import (
    ChargeResult,
    ContractState,
    Fact,
    InstallmentState,
    LedgerSync,
    PaymentMethodInfo,
)

DEFAULT = temporalio.converter.DefaultPayloadConverter()
CACHED = PayloadConverter()


@dataclass(frozen=True)
class Leaf:
    name: str
    at: datetime | None = None


@dataclass
class Tree:
    leaves: list[Leaf]
    by_name: dict[str, Leaf] = field(default_factory=dict)
    either: Leaf | int | None = None
    derived: int = field(default=0, init=False)


def both(value: Any, hint: type) -> tuple[Any, Any]:
    """`value` encoded once, decoded by Temporal's default converter and by ours."""
    (payload,) = DEFAULT.to_payloads([value])
    return (DEFAULT.from_payloads([payload], [hint])[0], CACHED.from_payloads([payload], [hint])[0])


def test_nested_dataclasses_decode_as_the_default_converter_decodes_them() -> None:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    tree = Tree(leaves=[Leaf("a", at), Leaf("b")], by_name={"c": Leaf("c", at)}, either=Leaf("d"))
    tree.derived = 7  # init=False: encoded, restored after the constructor
    default, cached = both(tree, Tree)
    assert cached == default == tree
    assert cached.derived == 7
    assert isinstance(cached.leaves[0], Leaf) and cached.leaves[0].at == at
    assert isinstance(cached.by_name["c"], Leaf)
    assert both(Tree(leaves=[], either=5), Tree)[1].either == 5  # the union's other member


def test_the_projects_own_types_decode_unchanged() -> None:
    due = datetime(2026, 12, 1, tzinfo=UTC)
    state = ContractState(
        installments=[
            InstallmentState(seq=1, due_at=due, amount=5000, status="paid", attempt_times=[due])
        ],
        method=PaymentMethodInfo("pm_1", "sepa_debit", last4="3000", mandate="mandate_1"),
        paid_total=5000,
    )
    for value, hint in [
        (state, ContractState),
        (ChargeResult(status="succeeded", payment_intent="pi_1", amount=5000), ChargeResult),
        (
            LedgerSync(
                "c1", "active", "none", "none", 0, 0, 0, None, installments=[*state.installments]
            ),
            LedgerSync,
        ),
    ]:
        default, cached = both(value, hint)
        assert cached == default == value


@dataclass
class Scalars:
    """Fields whose values the converter passes through without `value_to_type` (and the
    unions where it must not)."""

    s: str | None = None
    i: int | None = None
    f: float | None = None
    b: bool | None = None
    n: None | int = None  # None first
    plain_f: float = 0.0
    plain_i: int = 0
    either: int | str | None = None
    wide: float | int = 0  # the first member that takes the value wins: float(3) == 3.0
    at: datetime | None = None
    leaf: Leaf | None = None
    anything: Any = None
    tag: typing.Literal["a", "b"] | None = None


SCALAR_VALUES: list[Any] = [None, "x", "", 0, 3, -7, 2.5, 0.0, True, False, "2026-12-01T09:00:00Z"]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Scalars)])
def test_scalar_and_optional_fields_decode_as_the_default_converter_decodes_them(
    name: str,
) -> None:
    for raw in SCALAR_VALUES:
        (payload,) = DEFAULT.to_payloads([{name: raw}])
        try:
            expected = DEFAULT.from_payloads([payload], [Scalars])[0]
        except Exception as exc:  # noqa: BLE001 - the default refuses: so must we
            with pytest.raises(type(exc)):
                CACHED.from_payloads([payload], [Scalars])
            continue
        got = CACHED.from_payloads([payload], [Scalars])[0]
        assert got == expected, (name, raw)
        assert type(getattr(got, name)) is type(getattr(expected, name)), (name, raw)


def test_errors_are_the_default_converters() -> None:
    (not_a_dict,) = DEFAULT.to_payloads([[1, 2]])
    with pytest.raises(TypeError, match="not dict"):
        CACHED.from_payloads([not_a_dict], [Leaf])
    (bad_field,) = DEFAULT.to_payloads([{"leaves": [{"name": "a", "at": 5}]}])
    with pytest.raises(TypeError, match="Failed converting field leaves"):
        CACHED.from_payloads([bad_field], [Tree])
    (missing,) = DEFAULT.to_payloads([{"at": None, "unknown": 1}])  # `name` is required
    with pytest.raises(TypeError, match="name"):
        CACHED.from_payloads([missing], [Leaf])


def test_type_hints_are_resolved_once_per_class() -> None:
    _dataclass_fields.cache_clear()
    (payload,) = DEFAULT.to_payloads([Tree(leaves=[Leaf("a"), Leaf("b")])])
    with mock.patch.object(typing, "get_type_hints", wraps=typing.get_type_hints) as hints:
        for _ in range(50):
            CACHED.from_payloads([payload], [Tree])
    assert sorted(c.args[0].__name__ for c in hints.call_args_list) == ["Leaf", "Tree"]


def test_non_dataclass_hints_are_left_to_temporal() -> None:
    converter = CachedDataclassConverter()
    assert converter.to_typed_value(int, 5) is temporalio.converter.JSONTypeConverter.Unhandled
    assert (
        converter.to_typed_value(typing.cast(type, Leaf("x")), {})
        is temporalio.converter.JSONTypeConverter.Unhandled
    )


def test_every_client_gets_it_and_writes_the_default_payloads() -> None:
    state = ContractState(paid_total=1)
    keyed = Settings(codec_key=SecretStr(STACK_CODEC_KEY))
    for settings in (Settings(codec_key=None), keyed):
        converter = data_converter(settings)
        assert converter.payload_converter_class is PayloadConverter
        written: list[Payload] = converter.payload_converter.to_payloads([state])
        assert written == DEFAULT.to_payloads([state])


def test_the_encoding_converters_are_built_once_and_shared() -> None:
    # Every DataConverter.with_context builds a payload converter: it must be cheap, and the
    # shared converters keep no state between payloads.
    one, two = PayloadConverter(), PayloadConverter()
    assert one.converters is not two.converters
    assert list(one.converters.values()) == list(two.converters.values())
    assert all(
        a is b for a, b in zip(one.converters.values(), two.converters.values(), strict=True)
    )
    (payload,) = one.to_payloads([Tree(leaves=[Leaf("a")])])
    assert two.from_payloads([payload], [Tree])[0] == one.from_payloads([payload], [Tree])[0]


class Colour(enum.StrEnum):
    RED = "red"


class Plain(enum.Enum):  # no JSON form: both converters refuse it
    ONE = 1


class Level(enum.IntEnum):
    HIGH = 3


@dataclass
class Rich:
    """Every kind of value a payload of ours can hold, nested."""

    tree: Tree
    when: datetime
    ids: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    data: dict[str, Any] = field(default_factory=dict)
    key: uuid.UUID | None = None
    colour: Colour | None = None
    level: Level = Level.HIGH
    ratio: float = 0.1
    text: str = 'Grüße, € 5 — "quoted"\n'


def test_encoding_writes_the_default_converters_bytes() -> None:
    at = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    due = datetime(2026, 12, 1, tzinfo=UTC)
    values: list[Any] = [
        Rich(
            tree=Tree(
                leaves=[Leaf("a", at), Leaf("b")], by_name={"c": Leaf("c")}, either=Leaf("d")
            ),
            when=at,
            ids=("x", "y"),
            tags=frozenset({"only"}),
            data={"n": 1, "at": at, "nested": [{"leaf": Leaf("e", at)}, (1, 2)], "none": None},
            key=uuid.UUID(int=7),
            colour=Colour.RED,
        ),
        ContractState(
            installments=[
                InstallmentState(seq=1, due_at=due, amount=5000, status="paid", attempt_times=[due])
            ],
            method=PaymentMethodInfo("pm_1", "sepa_debit", last4="3000", mandate="mandate_1"),
            paid_total=5000,
        ),
        LedgerSync(
            "c1",
            "active",
            "none",
            "none",
            0,
            0,
            0,
            None,
            facts=[Fact("k1", "payment.succeeded", at, data={"amount": 5000, "at": at})],
        ),
        [Leaf("list"), {"k": Leaf("v")}],
        None,
        "plain",
    ]
    for value in values:
        assert CACHED.to_payloads([value]) == DEFAULT.to_payloads([value]), value
    for converter in (DEFAULT, CACHED):
        with pytest.raises(TypeError, match="Plain"):
            converter.to_payloads([Rich(tree=Tree(leaves=[]), when=at, data={"p": Plain.ONE})])
