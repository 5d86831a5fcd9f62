"""Strategies for every type the codec supports, a type-strict equality, and order-scrambled copies.

Shared by the codec properties (``test_codec_roundtrip.py``) and by the program generator,
whose steps take arbitrary serializable arguments. ``strict_eq`` exists because ``==`` is
too forgiving to show a round-trip bug: ``1 == 1.0 == True``, ``(1,) != [1]`` but
``{1} == frozenset({1})``, aware datetimes compare equal across time zones, and exceptions
compare by identity.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import pathlib
import random
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

import durable
from durable._core import codec as _codec

# -- classes the codec must carry by name ----------------------------------------------------


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    BLUE = (2, 3)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Point:
    """A frozen (hashable) dataclass: usable as a dict key and a set member."""

    x: int
    y: Any = None


@dataclasses.dataclass
class Box:
    """A mutable dataclass with a default and a field that ``__init__`` does not take."""

    items: list[Any]
    label: str = "box"
    serial: int = dataclasses.field(default=0, init=False)


class Money:
    """A class with the codec's opt-in hooks (and registered under an explicit name too)."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __durable_serialize__(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, Any]) -> Money:
        return cls(data["amount"], data["currency"])

    def __repr__(self) -> str:
        return f"Money({self.amount!r}, {self.currency!r})"


durable.register_class(Money, "tests.money")


class AppError(Exception):
    """An exception whose ``__init__`` signature differs from its ``args`` and that has attributes."""

    def __init__(self, code: int, detail: Any) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"error {code}")


# -- strategies ---------------------------------------------------------------------------------

# Lone surrogates are valid ``str`` values; whether the codec carries them is a property too.
texts = st.text(st.characters(exclude_categories=()), max_size=8) | st.sampled_from(
    ["", "$", "$tuple", "$$x", "a$b", "é", "\x00"]
)
plain_texts = st.text(max_size=8)
ints = st.integers() | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**200, -(2**70)])
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan])

fixed_offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
) | st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8), "PST")])
tzinfos = fixed_offsets | st.timezones()
datetimes = st.datetimes() | st.datetimes(timezones=tzinfos)
times = st.times() | st.times(timezones=fixed_offsets)
decimals = st.decimals(allow_nan=True, allow_infinity=True, places=None) | st.sampled_from(
    [Decimal("-0"), Decimal("1E+2"), Decimal("1.500"), Decimal("sNaN")]
)
paths = st.builds(pathlib.PurePosixPath, plain_texts) | st.builds(pathlib.PureWindowsPath, plain_texts) | st.builds(
    pathlib.Path, plain_texts
)
enums = st.sampled_from(list(Color)) | st.sampled_from(list(Level))


def _hashable_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=8), datetimes, st.dates(), times,
        st.timedeltas(), decimals.filter(lambda d: not d.is_snan()), st.uuids(), enums, paths,
    )


hashables: st.SearchStrategy[Any] = st.recursive(
    _hashable_scalars(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(Point, st.integers(-5, 5), inner),
    ),
    max_leaves=6,
)


def _scalars() -> st.SearchStrategy[Any]:
    return _hashable_scalars() | st.binary(max_size=8).map(bytearray) | decimals


def _exceptions(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[BaseException]:
    def chain(exc: BaseException, cause: BaseException | None) -> BaseException:
        exc.__cause__ = cause
        return exc

    # str(exc) is stored as the message; for exceptions whose message is the repr of their
    # args, args with dicts or sets would make that text depend on insertion order (decoded
    # dicts are key-sorted), so those carry only order-free values. AppError's message does
    # not show its attributes, so they can be anything.
    stable = st.recursive(st.none() | st.integers() | plain_texts, lambda x: st.lists(x, max_size=2), max_leaves=3)
    base = st.one_of(
        st.builds(ValueError, plain_texts),
        st.builds(KeyError, stable.map(lambda v: v if not isinstance(v, list) else tuple(v))),
        st.builds(RuntimeError, plain_texts, stable),
        st.builds(AppError, st.integers(), inner),
        st.builds(OSError, st.sampled_from([2, 13, 17]), plain_texts),  # errno picks the subclass, as in Python
        st.builds(UnicodeDecodeError, st.just("utf-8"), st.binary(min_size=1, max_size=3), st.just(0), st.just(1), plain_texts),
        st.builds(json.JSONDecodeError, plain_texts, plain_texts, st.just(0)),
        st.builds(durable.FatalError, plain_texts),
        st.builds(durable.StepFailed, plain_texts, plain_texts, plain_texts),
    )
    return st.builds(chain, base, st.none() | st.builds(ValueError, plain_texts))


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(texts, inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.builds(Point, st.integers(), inner),
        st.builds(Box, st.lists(inner, max_size=3), plain_texts),
        st.builds(Money, decimals, plain_texts),
        _exceptions(inner),
    )


values: st.SearchStrategy[Any] = st.recursive(_scalars(), _containers, max_leaves=12)
# Smaller values for step arguments, hook payloads and stream chunks inside generated programs.
small_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 2**65), st.floats(), plain_texts, st.binary(max_size=4),
              st.datetimes(timezones=st.none() | fixed_offsets), st.uuids(), enums),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple), st.dictionaries(plain_texts, inner, max_size=3),
        st.dictionaries(hashables, inner, max_size=2), st.frozensets(hashables, max_size=3), st.builds(Point, st.integers(), inner),
    ),
    max_leaves=5,
)


# -- type-strict equality ----------------------------------------------------------------------


def strict_eq(a: Any, b: Any) -> bool:
    """True when ``b`` is ``a`` rebuilt: same types all the way down, same values, NaN equal to NaN."""
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if ta is Decimal:
        return str(a) == str(b)  # keeps the sign of zero, the exponent and the kind of NaN
    if ta in (list, tuple):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict:
        return _matches(list(a.items()), list(b.items()))
    if ta in (set, frozenset):
        return _matches(list(a), list(b))
    if ta is datetime or ta is time:
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and _same_tz(a.tzinfo, b.tzinfo)
        )
    if isinstance(a, BaseException):
        return (
            strict_eq(a.args, b.args)
            and str(a) == str(b)  # C-level state (UnicodeError.reason, ...) shows in the message
            and strict_eq(_attrs(a), _attrs(b))
            and (a.__cause__ is None) == (b.__cause__ is None)
            and (a.__cause__ is None or strict_eq(a.__cause__, b.__cause__))
        )
    if isinstance(a, enum.Enum):
        return a is b
    if dataclasses.is_dataclass(a):
        return all(strict_eq(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if ta is Money:
        return strict_eq(a.amount, b.amount) and strict_eq(a.currency, b.currency)
    return bool(a == b)


def _matches(xs: list[Any], ys: list[Any]) -> bool:
    """Multiset equality under ``strict_eq`` (keys that are ``==`` but not strictly equal must not pair up)."""
    if len(xs) != len(ys):
        return False
    unused = list(ys)
    for x in xs:
        for i, y in enumerate(unused):
            if strict_eq(x, y):
                del unused[i]
                break
        else:
            return False
    return True


def _same_tz(ta: Any, tb: Any) -> bool:
    if ta is None or tb is None:
        return ta is None and tb is None
    if type(ta) is not type(tb):
        return False
    if isinstance(ta, timezone):
        return bool(ta.utcoffset(None) == tb.utcoffset(None) and ta.tzname(None) == tb.tzname(None))
    return bool(getattr(ta, "key", ta) == getattr(tb, "key", tb))


def _attrs(exc: BaseException) -> dict[str, Any]:
    return {k: v for k, v in vars(exc).items() if not k.startswith("__")}


# -- the same value built another way ------------------------------------------------------------


def scrambled(value: Any, rng: random.Random) -> Any:
    """An equal copy whose dicts were filled in another order and whose sets grew in other tables.

    Sets are built inside a larger table (extra sentinel members added, then removed), so
    even members whose hashes do not collide iterate in another order.
    """
    t = type(value)
    if t is list:
        return [scrambled(v, rng) for v in value]
    if t is tuple:
        return tuple(scrambled(v, rng) for v in value)
    if t is dict:
        items = [(scrambled(k, rng), scrambled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if t in (set, frozenset):
        # Canonical order first: set iteration can depend on id() (NaN hashes by identity),
        # and the random draws below must not, or Hypothesis cannot replay the example.
        members = [scrambled(m, rng) for m in sorted(value, key=_codec.encode)]
        rng.shuffle(members)
        sentinels = [object() for _ in range(rng.randrange(0, 40))]
        grown: set[Any] = set(sentinels[: len(sentinels) // 2])
        grown.update(members)
        grown.update(sentinels[len(sentinels) // 2 :])
        grown.difference_update(sentinels)
        return grown if t is set else frozenset(grown)
    if t is Point:
        return Point(scrambled(value.x, rng), scrambled(value.y, rng))
    if t is Box:
        box = Box(scrambled(value.items, rng), value.label)
        box.serial = value.serial
        return box
    return value


# -- values the codec must refuse, and where they sit ------------------------------------------------


class Opaque:
    """A plain class without codec hooks: never serializable."""

    def __repr__(self) -> str:
        return "Opaque()"


def _cycle() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


unsupported = st.sampled_from(
    ["opaque", "object", "lambda", "complex", "range", "ellipsis", "generator", "zoned-time", "cycle"]
).map(
    lambda kind: {
        "opaque": lambda: Opaque(),
        "object": lambda: object(),
        "lambda": lambda: (lambda: 1),
        "complex": lambda: complex(1, 2),
        "range": lambda: range(3),
        "ellipsis": lambda: ...,
        "generator": lambda: (i for i in range(2)),
        "zoned-time": lambda: time(1, 2, tzinfo=_zone()),
        "cycle": _cycle,
    }[kind]()
)


def _zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Paris")

