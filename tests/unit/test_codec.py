"""The codec: every supported type round-trips with its type, bytes are canonical, failures name a path."""

from __future__ import annotations

import dataclasses
import enum
import math
import pathlib
import socket
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pydantic
import pytest

import durable
from durable._core import codec as _codec


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = ""


class Money:
    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (other.cents, other.currency) == (self.cents, self.currency)

    def __durable_serialize__(self) -> list[object]:
        return [self.cents, self.currency]

    @classmethod
    def __durable_deserialize__(cls, data: list[Any]) -> Money:  # decoded JSON
        return cls(int(data[0]), str(data[1]))


class User(pydantic.BaseModel):
    name: str
    tags: list[str] = []


class OutOfStock(Exception):
    def __init__(self, sku: str, wanted: int) -> None:
        self.sku, self.wanted = sku, wanted
        super().__init__(f"{sku}: only {wanted - 1} left")


VALUES = [
    None, True, False, 0, -7, 2**70, -(2**100), 1.5, -0.0, float("inf"), float("-inf"), "", "héllo ☃",
    b"\x00\xffbytes", bytearray(b"ba"), [1, [2, [3]]], (1, "a", (2,)), {"a": 1, "$weird": 2, "$$": 3},
    {1: "int key", (1, 2): "tuple key", frozenset({3}): "frozenset key", None: "none key"},
    {1, 2, 3}, frozenset({"x", "y"}), datetime(2026, 1, 2, 3, 4, 5, 6), datetime(2026, 1, 2, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Paris")), datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    date(2026, 11, 25), time(23, 59, 58, 1), time(1, 2, tzinfo=UTC), timedelta(days=-3, seconds=5, microseconds=7),
    Decimal("3.14159265358979323846"), uuid.UUID("12345678-1234-5678-1234-567812345678"), Color.RED, Color.BLUE,
    pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("C:\\x"), pathlib.Path("rel/p"), Point(1, 2, "p"),
    Money(1999, "EUR"), User(name="ann", tags=["a"]), {"nested": [Point(0, 0), {Color.RED: (Money(1, "X"),)}]},
]


@pytest.mark.parametrize("value", VALUES, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(VALUES)])
def test_values_round_trip_with_their_types(value: object) -> None:
    """decode(encode(x)) == x, with the same type, for every supported kind of value."""
    decoded = _codec.decode(_codec.encode(value))
    assert type(decoded) is type(value)
    assert decoded == value
    if isinstance(value, datetime):
        assert isinstance(decoded, datetime)
        assert decoded.tzinfo == value.tzinfo or decoded.utcoffset() == value.utcoffset()


def test_nan_round_trips() -> None:
    """NaN is not equal to itself, so it is checked on its own."""
    assert math.isnan(_codec.decode(_codec.encode(float("nan"))))


def test_exceptions_keep_type_attributes_message_and_cause() -> None:
    """An exception is rebuilt without calling __init__: type, attributes, args and __cause__ survive."""
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise OutOfStock("sku-1", 3) from inner
    except OutOfStock as exc:
        decoded = _codec.decode(_codec.encode(exc))
    assert type(decoded) is OutOfStock
    assert (decoded.sku, decoded.wanted, str(decoded)) == ("sku-1", 3, "sku-1: only 2 left")
    assert isinstance(decoded.__cause__, KeyError)
    assert "OutOfStock" in vars(decoded)["__durable_traceback__"]  # set by the codec, unknown to the class


def test_encoding_is_canonical() -> None:
    """Equal dicts and sets give equal bytes whatever their insertion order."""
    a = {"b": 1, "a": {3, 1, 2}, 2: "x", 1: "y"}
    b = {1: "y", 2: "x", "a": {2, 3, 1}, "b": 1}
    assert _codec.encode(a) == _codec.encode(b)
    assert _codec.encode({"z": 1, "a": 2}) == _codec.encode({"a": 2, "z": 1})


def test_user_keys_cannot_forge_tags() -> None:
    """A dict whose only key looks like a tag stays a dict."""
    forged = {"$bytes": "aGk="}
    assert _codec.decode(_codec.encode(forged)) == forged


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"items": [1, 2, 3, {"conn": "SOCKET"}]}, "result['items'][3]['conn']"),
        ([1, (2, "SOCKET")], "result[1][1]"),
        (Point(1, cast(Any, "SOCKET")), "result.y"),  # not an int: a placeholder, swapped for a socket
        ({frozenset({1}): {"k": ["SOCKET"]}}, "result[frozenset({1})]['k'][0]"),
    ],
)
def test_unsupported_values_name_their_path(value: object, path: str) -> None:
    """A value that cannot be encoded raises SerializationError with the path to it and its type."""
    with socket.socket() as sock:
        def swap(v: object) -> object:
            if v == "SOCKET":
                return sock
            if isinstance(v, dict):
                return {k: swap(x) for k, x in v.items()}
            if isinstance(v, list):
                return [swap(x) for x in v]
            if isinstance(v, tuple):
                return tuple(swap(x) for x in v)
            if isinstance(v, Point):
                return Point(v.x, cast(Any, swap(v.y)), v.label)
            return v

        with pytest.raises(durable.SerializationError) as info:
            _codec.encode(swap(value), root="result")
    assert info.value.path == path
    assert str(info.value) == f"{path}: socket.socket is not serializable"


def test_cycles_and_unknown_tags_fail_clearly() -> None:
    """A self-containing list and a payload with an unknown tag raise SerializationError, never a partial object."""
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(durable.SerializationError, match="contains itself"):
        _codec.encode(loop)
    with pytest.raises(durable.SerializationError, match="unknown tag '\\$future'"):
        _codec.decode(b'DJ1:{"$future": 1}')
    with pytest.raises(durable.SerializationError, match="unknown payload format"):
        _codec.decode(b"XXXX{}")
    with pytest.raises(durable.SerializationError, match="cannot be found"):
        _codec.decode(b'DJ1:{"$dataclass": ["no_such_module_xyz:Thing", {}]}')


def test_pickle_is_opt_in_and_refused_by_default() -> None:
    """Pickled payloads decode only when the caller allows pickle."""
    data = _codec.encode(lambda x: x + 1, serializer="pickle")
    with pytest.raises(durable.SerializationError, match="refusing to unpickle"):
        _codec.decode(data)
    assert _codec.decode(data, allow_pickle=True)(1) == 2


# -- found by tests/property/test_codec_roundtrip.py ---------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "time(0, 0, fold=1)",
        "datetime(2024, 10, 27, 2, 30, fold=1)",
        "datetime(2020, 1, 1, tzinfo=timezone(timedelta(microseconds=7)))",
        "time(1, 2, tzinfo=timezone(timedelta(microseconds=7)))",
        "datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-8), 'PST'))",
    ],
)
def test_datetimes_keep_fold_zone_names_and_sub_second_offsets(value: str) -> None:
    """fold, a fixed zone's name and a sub-second UTC offset survive a round trip (isoformat() drops them)."""
    from datetime import datetime, time, timedelta, timezone

    original = eval(value, {"datetime": datetime, "time": time, "timedelta": timedelta, "timezone": timezone})
    decoded = _codec.decode(_codec.encode(original))
    assert decoded == original
    assert decoded.fold == original.fold
    assert decoded.utcoffset() == original.utcoffset()
    assert decoded.tzname() == original.tzname()


def test_plain_datetimes_keep_their_iso_encoding() -> None:
    """The fix above leaves the bytes of ordinary datetimes unchanged, so existing logs still replay."""
    from datetime import datetime

    assert _codec.encode(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == b'DJ1:{"$datetime":"2024-01-02T03:04:05+00:00"}'


def test_strings_with_lone_surrogates_round_trip() -> None:
    """A str holding a lone surrogate encodes (it used to raise UnicodeEncodeError, not even SerializationError)."""
    value = {"\ud800": ["a\udfffb"]}
    assert _codec.decode(_codec.encode(value)) == value
    assert _codec.encode("é") == "DJ1:\"é\"".encode()  # valid text: same bytes as before


def test_builtin_exceptions_keep_state_their_init_sets() -> None:
    """A decoded UnicodeDecodeError has its reason and message, not an empty str()."""
    original = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    decoded = _codec.decode(_codec.encode(original))
    assert type(decoded) is UnicodeDecodeError
    assert decoded.reason == "invalid start byte"
    assert str(decoded) == str(original)
