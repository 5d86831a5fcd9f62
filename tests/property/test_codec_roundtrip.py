"""Property 4: serialization round-trips, is canonical, and refuses what it cannot carry.

- ``decode(encode(x))`` is ``x`` rebuilt, type-strictly (:func:`values.strict_eq`), for every
  type the codec supports nested arbitrarily: dict keys that are tuples, ints, frozensets, aware
  and naive datetimes, NaN and infinities, big ints, bytes, enums, dataclasses, classes with
  ``__durable_serialize__``, exceptions with causes and attributes.
- Encoding is deterministic: equal values give the same bytes whatever order their dicts were
  filled and their sets grown in, and re-encoding a decoded value gives the bytes back. Replay
  compares argument bytes, so a non-canonical encoding would be a false NonDeterminismError.
- An unsupported value anywhere raises ``SerializationError`` whose ``path`` names exactly where
  it sits, and nothing of a workflow's command is issued.
- Decoding arbitrary tagged JSON either returns a value or raises ``SerializationError``.
"""

from __future__ import annotations

import contextlib
import json
import random
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import durable
from durable._core import codec as _codec
from durable._core.events import Event, EventKind
from durable._engine.instance import WorkflowInstance
from durable._workflow.workflow import Workflow
from tests.helpers import encode_args

from .conftest import examples
from .values import Box, Money, Point, scrambled, strict_eq, unsupported, values


@settings(max_examples=examples(400))
@given(values)
def test_decode_of_encode_rebuilds_the_value_with_its_types(value: Any) -> None:
    """Every supported value, however nested, decodes to an equal value of the same types all the way down."""
    data = _codec.encode(value)
    decoded = _codec.decode(data)
    note(f"encoded: {data!r}\ndecoded: {decoded!r}")
    assert strict_eq(value, decoded)


@settings(max_examples=examples(300))
@given(values, st.randoms(use_true_random=False))
def test_equal_values_encode_to_the_same_bytes(value: Any, rng: random.Random) -> None:
    """Encoding ignores dict insertion order and set growth history, and re-encoding a decoded value is stable."""
    data = _codec.encode(value)
    assert _codec.encode(scrambled(value, rng)) == data
    assert _codec.encode(_codec.decode(data)) == data


@settings(max_examples=examples(300))
@given(values | st.deferred(lambda: json_values))
def test_the_plain_data_shortcut_writes_what_tagging_writes(value: Any) -> None:
    """Plain JSON data skips the tagging pass; the bytes must be those the tagging pass would write."""
    assert _codec.encode(value) == _codec.JSON_TAG + _codec.dumps_json(_codec.to_tagged(value))


# -- refusing what cannot be encoded ------------------------------------------------------------------


def _unhashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return True
    return False


@st.composite
def _embedded(draw: st.DrawFn) -> tuple[Any, str]:
    """An unsupported value buried at a generated place, and the path the codec must report for it."""
    bad = draw(unsupported)
    path_tail = "[1]" if isinstance(bad, list) else ""  # a cycle is found one level in
    value: Any = bad
    path: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        filler = draw(st.lists(st.integers(-3, 3) | st.text(max_size=2), max_size=2))
        how = draw(st.sampled_from(["list", "tuple", "dict", "map", "key", "set", "dataclass", "box", "custom"]))
        if how in ("key", "set") and _unhashable(value):
            how = "list"
        if how == "list":
            value, seg = [*filler, value], f"[{len(filler)}]"
        elif how == "tuple":
            value, seg = (*filler, value), f"[{len(filler)}]"
        elif how == "dict":
            key = draw(st.text(max_size=3))
            value, seg = {"$a" if key == "" else f"k{key}": value}, ""
            seg = f"[{next(iter(value))!r}]"
        elif how == "map":
            value, seg = {7: value}, "[7]"
        elif how == "key":
            value, seg = {value: 1}, f"<key {value!r}>"
        elif how == "set":
            value, seg = frozenset([value]), "{…}"
        elif how == "dataclass":
            value, seg = Point(1, value), ".y"
        elif how == "box":
            value, seg = Box([*filler, value]), f".items[{len(filler)}]"
        else:
            value, seg = Money(value, "EUR"), "['amount']"
        path.insert(0, seg)
    return value, "value" + "".join(path) + path_tail


@settings(max_examples=examples(200))
@given(_embedded())
def test_unsupported_values_raise_serialization_error_naming_their_path(case: tuple[Any, str]) -> None:
    """An unencodable value raises SerializationError whose path points at it, never another error or bytes."""
    value, expected_path = case
    with pytest.raises(durable.SerializationError) as info:
        _codec.encode(value)
    if expected_path.endswith("[1]") and "contains itself" in info.value.problem:
        # A cycle is found by depth, deep inside the loop, and long paths are shortened in the
        # middle ("…"): what is shown must lead to the loop.
        shown = info.value.path.split("…")[0]
        assert info.value.path.startswith(expected_path) or ("…" in info.value.path and expected_path.startswith(shown)), (
            info.value.path
        )
    else:
        assert info.value.path == expected_path


@durable.step(name="prop.codec.take")
async def take(value: Any) -> Any:
    return value


@settings(max_examples=examples(50))
@given(_embedded())
def test_a_step_call_with_an_unsupported_argument_issues_no_command(case: tuple[Any, str]) -> None:
    """Calling a step with an unencodable argument raises in the workflow and records nothing for it."""
    value, _ = case

    async def workflow() -> str:
        try:
            await take(value)
        except durable.SerializationError as exc:
            return exc.path
        return "no error"

    instance = WorkflowInstance(Workflow(workflow, name="codec", serializer="json"), run_id="r", input=encode_args(), seed="s")
    try:
        outcome = instance.advance([Event("r", 1, EventKind.RUN_STARTED, None, 1.0)])
    finally:
        instance.close()
    assert outcome.status == "completed", outcome
    assert outcome.commands == []
    assert _codec.decode(outcome.result or b"").startswith("arguments of step 'prop.codec.take'")


# -- decoding what others wrote ------------------------------------------------------------------------

TAGS = [
    "$tuple", "$int", "$float", "$bytes", "$bytearray", "$map", "$set", "$frozenset", "$datetime", "$date", "$time",
    "$timedelta", "$decimal", "$uuid", "$path", "$enum", "$dataclass", "$pydantic", "$obj", "$exception", "$nope", "$$x",
]
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    | st.builds(lambda tag, v: {tag: v}, st.sampled_from(TAGS), inner),
    max_leaves=10,
)


@settings(max_examples=examples(300))
@given(json_values)
def test_decoding_arbitrary_tagged_json_returns_or_raises_serialization_error(obj: Any) -> None:
    """Foreign or corrupt payloads fail with SerializationError (never TypeError, KeyError, ... or a half-built object)."""
    data = _codec.JSON_TAG + json.dumps(obj).encode()
    with contextlib.suppress(durable.SerializationError):  # the only error allowed to escape
        _codec.decode(data)


def test_strict_eq_tells_apart_what_equality_conflates() -> None:
    """The control for the properties above: strict_eq rejects values that == accepts but that lost their type."""
    from datetime import datetime, timedelta, timezone

    assert not strict_eq(1, 1.0)
    assert not strict_eq(1, True)
    assert not strict_eq((1,), [1])
    assert not strict_eq({1}, frozenset({1}))
    assert not strict_eq(-0.0, 0.0)
    assert not strict_eq({(1,): 1}, {(True,): 1})
    utc = datetime(2024, 1, 1, tzinfo=UTC)
    assert not strict_eq(utc, utc.astimezone(timezone(timedelta(hours=1))))
    assert not strict_eq(ValueError("a"), ValueError("b"))
    assert strict_eq(float("nan"), float("nan"))
    assert strict_eq({float("nan"): [1]}, {float("nan"): [1]})
