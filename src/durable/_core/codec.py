"""The one codec: arguments, results, errors, hook payloads and stream chunks all pass through it.

Format: ``b"DJ1:"`` followed by canonical JSON (compact, sorted keys). Values JSON has no
word for are tagged objects with a single ``"$tag"`` key; a user dict key that starts with
``$`` is escaped by doubling the ``$``, so user data can never look like a tag. Equal values
encode to equal bytes (dict keys and set members are sorted), which is what lets a replay
compare a step's argument bytes with the recorded ones.

``b"DE1:"`` marks a value encrypted at rest (``durable.Encryption``): the store wrapper that
wrote it decrypts it on the way out; anywhere else it is only recognised, never decoded
(views show ``"<encrypted>"``, :func:`decode` raises ``EncryptedValueError`` naming its key).

``b"DP1:"`` marks cloudpickle, an explicit opt-in for trusted values (``serializer="pickle"``).
It is only ever decoded when the caller says pickle is allowed, and data from outside
(hook payloads, webhook bodies, HTTP) is always encoded and decoded as JSON.

Classes (dataclasses, enums, exceptions, pydantic models, ``__durable_serialize__`` classes)
are named ``module:qualname``. Every class seen while encoding is remembered, so classes
defined in ``__main__`` or in a notebook cell decode in the same process; other processes
import the module.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import importlib
import json
import math
import pathlib
import sys
import traceback as traceback_module
import uuid
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Literal

from .errors import EncryptedValueError, SerializationError, StepFailed

JSON_TAG = b"DJ1:"
PICKLE_TAG = b"DP1:"
ENCRYPTED_TAG = b"DE1:"  # then: key id length (1 byte), key id, context length (2 bytes), context, nonce, ciphertext
ENCRYPTED = "<encrypted>"  # how views show a value they hold no key for
Serializer = Literal["json", "pickle"]

_MAX_SAFE_INT = 2**63
_PATH_TYPES: dict[str, type[pathlib.PurePath]] = {
    "PurePosixPath": pathlib.PurePosixPath,
    "PureWindowsPath": pathlib.PureWindowsPath,
    "PosixPath": pathlib.PosixPath,
    "WindowsPath": pathlib.WindowsPath,
    "Path": pathlib.Path,
}
_classes: dict[str, type] = {}


def register_class(cls: type, name: str | None = None) -> type:
    """Make ``cls`` decodable under ``name`` (default ``module:qualname``); returns ``cls``.

    Use it for classes that another process must decode but cannot import by module name.
    """
    _classes[name or class_ref(cls)] = cls
    return cls


def class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(ref: str, path: str) -> type:
    cls = _classes.get(ref)
    if cls is not None:
        return cls
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname or "<" in qualname:
        raise SerializationError(path, f"class {ref} is not known in this process (register it with durable.register_class)")
    try:
        obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SerializationError(path, f"class {ref} cannot be found ({exc})") from None
    if not isinstance(obj, type):
        raise SerializationError(path, f"{ref} is not a class")
    _classes[ref] = obj
    return obj


# ----------------------------------------------------------------------------------------------
# size: what one stored value may weigh

#: The default bound on one encoded value (arguments, a result, a hook payload, a chunk):
#: ``Runtime(max_value_size=...)`` / ``Client(max_value_size=...)`` change it.
DEFAULT_MAX_VALUE_SIZE = 16 * 1024 * 1024
#: The largest bound that may be configured: far below what the stores can hold in one value
#: (SQLite: 1,000,000,000 bytes per string or BLOB, and per row; PostgreSQL: 1 GB per field),
#: since a step's row holds its arguments and its result, and each is in an event too.
MAX_VALUE_SIZE_LIMIT = 256 * 1024 * 1024


def check_size(data: bytes, limit: int, root: str) -> bytes:
    """``data`` if it is at most ``limit`` bytes; else SerializationError naming both sizes."""
    if len(data) > limit:
        raise SerializationError(
            root, f"encodes to {len(data):,} bytes, more than the {limit:,}-byte limit for one value (max_value_size)"
        )
    return data


# encoding


def encode(value: Any, *, serializer: Serializer = "json", root: str = "value") -> bytes:
    """Encode ``value``; raise ``SerializationError`` naming the offending path before anything is written."""
    if serializer == "pickle":
        import cloudpickle

        try:
            pickled: bytes = cloudpickle.dumps(value)
        except Exception as exc:
            raise SerializationError(root, f"cannot be pickled: {exc}") from exc
        return PICKLE_TAG + pickled
    if _is_plain(value, 0):  # nothing to tag: skip building a tagged copy (the common case)
        return JSON_TAG + dumps_json(value)
    return JSON_TAG + dumps_json(to_tagged(value, root))


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=True)
_SCAN_JSON = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_MAX_DEPTH = 256
# The C encoder behind ``_JSON_ENCODER``, built once: ``JSONEncoder.encode`` builds a new one
# per call. No circular-reference markers: what it is given is acyclic (checked before).
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ENCODE_CHUNKS = (
    _C_ENCODER(None, None, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if _C_ENCODER is not None
    else None
)


def dumps_json(obj: Any) -> bytes:
    """Canonical JSON of plain data (compact, sorted keys, no NaN)."""
    text = "".join(_ENCODE_CHUNKS(obj, 0)) if _ENCODE_CHUNKS is not None else _JSON_ENCODER.encode(obj)
    # surrogatepass: a str may hold lone surrogates ("\ud800"); they must round-trip, not
    # fail with UnicodeEncodeError. Valid text encodes to the same UTF-8 as before.
    return text.encode("utf-8", "surrogatepass")


def _is_plain(v: Any, depth: int) -> bool:
    """True when ``v`` is JSON as it stands: tagging would return an equal copy of it.

    Checking allocates nothing, so it is cheap even when the answer is no.
    """
    t = type(v)
    if t is str or v is None or t is bool:
        return True
    if t is int:
        return bool(-_MAX_SAFE_INT < v < _MAX_SAFE_INT)
    if t is float:
        return math.isfinite(v)
    if t is list:
        items: Any = v
    elif t is dict:
        for key in v:
            if type(key) is not str or key.startswith("$"):
                return False
        items = v.values()
    else:
        return False
    if depth >= _MAX_DEPTH:
        return False  # the tagging path reports it (deep nesting, or a value containing itself)
    for item in items:
        ti = type(item)
        if ti is str or item is None or ti is bool:
            continue
        if ti is int:
            if not -_MAX_SAFE_INT < item < _MAX_SAFE_INT:
                return False
        elif ti is float:
            if not math.isfinite(item):
                return False
        elif not _is_plain(item, depth + 1):
            return False
    return True


class _Unencodable(Exception):
    """Internal: raised deep in the encoder; each level adds its path segment on the way out.

    Paths are only built when something fails, which keeps encoding of good values cheap.
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.segments: list[str] = []


def to_tagged(value: Any, path: str = "value") -> Any:
    """Turn ``value`` into plain JSON data with tags, checking every node."""
    try:
        return _enc(value, 0)
    except _Unencodable as exc:
        segments = exc.segments[::-1]
        if len(segments) > 12:
            segments = [*segments[:6], "…", *segments[-5:]]
        raise SerializationError(path + "".join(segments), exc.problem) from None


def _enc(v: Any, depth: int) -> Any:
    t = type(v)
    if t is str or v is None or t is bool:
        return v
    if t is int:
        return v if -_MAX_SAFE_INT < v < _MAX_SAFE_INT else {"$int": hex(v)}
    if t is float:
        if math.isfinite(v):
            return v
        return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if depth > _MAX_DEPTH:
        raise _Unencodable(f"nested deeper than {_MAX_DEPTH} levels (or contains itself)")
    depth += 1
    if t is dict:
        return _enc_dict(v, depth)
    if t is list:
        return _enc_items(v, depth)
    if t is tuple:
        return {"$tuple": _enc_items(v, depth)}
    if t is bytes or t is bytearray:
        return {"$bytes" if t is bytes else "$bytearray": base64.b64encode(v).decode("ascii")}
    if t is set or t is frozenset:
        try:
            members = [_enc(m, depth) for m in v]
        except _Unencodable as exc:
            exc.segments.append("{…}")
            raise
        return {"$set" if t is set else "$frozenset": _sorted_members(members)}
    if t is datetime:
        return {"$datetime": _enc_datetime(v)}
    if t is date:
        return {"$date": v.isoformat()}
    if t is time:
        if v.tzinfo is not None and type(v.tzinfo) is not timezone:
            raise _Unencodable("time with a non-fixed tzinfo is not serializable")
        return {"$time": v.isoformat() if _iso_exact(v) else [v.replace(tzinfo=None).isoformat(), _enc_tz(v.tzinfo), v.fold]}
    if t is timedelta:
        return {"$timedelta": [v.days, v.seconds, v.microseconds]}
    if t is Decimal:
        return {"$decimal": str(v)}
    if t is uuid.UUID:
        return {"$uuid": str(v)}
    if isinstance(v, enum.Enum):
        return {"$enum": [_ref(t), _enc_at(v.value, depth, ".value")]}
    if isinstance(v, pathlib.PurePath) and t.__name__ in _PATH_TYPES:
        return {"$path": [t.__name__, str(v)]}
    if isinstance(v, BaseException):
        return _enc_exception(v, depth)
    if isinstance(v, type):  # a class, by reference (a classmethod step's cls); before dataclasses: a class is one too
        if "<" in v.__qualname__:
            raise _Unencodable(f"class {v.__qualname__} is defined inside a function: it cannot be named")
        return {"$class": _ref(v)}
    custom = getattr(t, "__durable_serialize__", None)
    if custom is not None:
        return {"$obj": [_ref(t), _enc(_call_serializer(custom, v, t), depth)]}
    if dataclasses.is_dataclass(v):
        fields = {f.name: _enc_at(getattr(v, f.name), depth, f".{f.name}") for f in dataclasses.fields(v)}
        return {"$dataclass": [_ref(t), fields]}
    if _is_pydantic(v):
        return {"$pydantic": [_ref(t), _enc(_call_serializer(lambda m: m.model_dump(mode="python"), v, t), depth)]}
    raise _Unencodable(f"{_describe(t)} is not serializable")


def _call_serializer(fn: Any, value: Any, t: type) -> Any:
    """User serialization code that raises is reported like any other unencodable value."""
    try:
        return fn(value)
    except _Unencodable:
        raise
    except Exception as exc:
        raise _Unencodable(f"{_describe(t)} failed to serialize: {type(exc).__name__}: {exc}") from None


def _enc_at(v: Any, depth: int, segment: str) -> Any:
    try:
        return _enc(v, depth)
    except _Unencodable as exc:
        exc.segments.append(segment)
        raise


def _enc_items(items: Any, depth: int) -> list[Any]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_enc(item, depth))
        except _Unencodable as exc:
            exc.segments.append(f"[{i}]")
            raise
    return out


def _enc_dict(d: dict[Any, Any], depth: int) -> Any:
    out: dict[str, Any] = {}
    plain = True
    for k, val in d.items():
        if type(k) is not str:
            plain = False
            break
        try:
            out["$" + k if k.startswith("$") else k] = _enc(val, depth)
        except _Unencodable as exc:
            exc.segments.append(f"[{k!r}]")
            raise
    if plain:
        return out
    pairs = []
    for k, val in d.items():
        ek = _enc_at(k, depth, f"<key {k!r}>")
        pairs.append([ek, _enc_at(val, depth, f"[{k!r}]")])
    pairs.sort(key=lambda kv: dumps_json(kv[0]))
    return {"$map": pairs}


def _enc_exception(exc: BaseException, depth: int) -> Any:
    # Exceptions travel leniently: arguments or attributes that cannot be encoded are dropped
    # (the message is kept), because losing an error to a SerializationError would hide the
    # real failure.
    try:
        args = _enc_items(exc.args, depth)
    except _Unencodable:
        args = [_safe_str(exc)]
    attrs = {}
    for key, value in vars(exc).items():
        if key.startswith("__"):
            continue
        try:
            attrs[key] = _enc(value, depth)
        except _Unencodable:
            continue
    tb = getattr(exc, "__durable_traceback__", None)
    if tb is None and exc.__traceback__ is not None:
        tb = "".join(traceback_module.format_exception(exc))
    cause = exc.__cause__
    return {
        "$exception": [
            _ref(type(exc)),
            args,
            _safe_str(exc),
            tb or "",
            _enc_at(cause, depth, ".__cause__") if cause is not None else None,
            attrs,
        ]
    }


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return repr(exc)


def _ref(cls: type) -> str:
    ref = class_ref(cls)
    _classes.setdefault(ref, cls)
    return ref


def _sorted_members(items: list[Any]) -> list[Any]:
    return sorted(items, key=dumps_json)


def _iso_exact(v: datetime | time) -> bool:
    """Whether ``isoformat()`` keeps everything: not a fold, a zone name, or a sub-second UTC
    offset (which ``fromisoformat`` drops before Python 3.12)."""
    if v.fold:
        return False
    tz = v.tzinfo
    if tz is None:
        return True
    offset = tz.utcoffset(None)
    return offset is not None and not offset.microseconds and tz.tzname(None) == timezone(offset).tzname(None)


def _enc_tz(tz: tzinfo | None) -> Any:
    """A fixed offset as ``[days, seconds, microseconds]``, plus its name when it has its own."""
    if tz is None:
        return None
    offset = tz.utcoffset(None) or timedelta(0)
    spec: list[Any] = [offset.days, offset.seconds, offset.microseconds]
    name = tz.tzname(None)
    if name != timezone(offset).tzname(None):
        spec.append(name)
    return spec


def _dec_tz(spec: Any) -> timezone | None:
    if spec is None:
        return None
    return timezone(timedelta(days=spec[0], seconds=spec[1], microseconds=spec[2]), *spec[3:])


def _enc_datetime(v: datetime) -> Any:
    tz = v.tzinfo
    if tz is None or type(tz) is timezone:
        # The ISO string when it is exact (the common case, and the format's first form);
        # else [naive ISO, offset as [days, seconds, microseconds(, name)] or None, fold].
        return v.isoformat() if _iso_exact(v) else [v.replace(tzinfo=None).isoformat(), _enc_tz(tz), v.fold]
    key = getattr(tz, "key", None)  # zoneinfo.ZoneInfo keeps its IANA name
    if isinstance(key, str):
        return [v.replace(tzinfo=None).isoformat(), key, v.fold]
    return v.astimezone(timezone(v.utcoffset() or timedelta(0))).isoformat()


def _is_pydantic(v: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(v, pydantic.BaseModel)


def _describe(t: type) -> str:
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# ----------------------------------------------------------------------------------------------
# decoding


def decode(data: bytes, *, allow_pickle: bool = False, root: str = "value") -> Any:
    """Decode bytes made by :func:`encode`. Pickle is refused unless ``allow_pickle`` is true."""
    data = bytes(data)
    head = data[:4]
    if head == JSON_TAG:
        text = data[4:].decode("utf-8", "surrogatepass")
        obj = _loads_json(text, root)
        # Looked for in the text, not the bytes (the same answer: UTF-8 never puts an ASCII byte
        # inside another character): ``bytes in bytes`` first tries its operand as an int, and
        # the TypeError it formats and drops costs more than the search.
        if '"$' not in text:
            return obj  # no tags and no escaped keys anywhere: plain JSON data as is
        return from_tagged(obj, root)
    if head == PICKLE_TAG:
        if not allow_pickle:
            raise SerializationError(root, "refusing to unpickle: pickle is only allowed where serializer='pickle' was chosen")
        import cloudpickle

        return cloudpickle.loads(data[4:])  # trusted: written by our own opt-in pickle serializer
    if head == ENCRYPTED_TAG:
        raise EncryptedValueError(encrypted_key_id(data), root)
    raise SerializationError(root, f"unknown payload format {head!r}")


def is_encrypted(data: bytes | None) -> bool:
    """Whether ``data`` is a value encrypted at rest (which only a process holding its key can read)."""
    return data is not None and data[:4] == ENCRYPTED_TAG


def encrypted_key_id(data: bytes) -> str:
    """The id of the key an encrypted value needs (``"?"`` if its header is damaged)."""
    try:
        size = data[4]
        return bytes(data[5 : 5 + size]).decode("utf-8")
    except (IndexError, UnicodeDecodeError):
        return "?"


def _loads_json(text: str, root: str) -> Any:
    # The decoder's scanner, called directly: ``JSONDecoder.decode`` adds two regex matches
    # for surrounding whitespace, which our compact payloads never have.
    try:
        obj, end = _SCAN_JSON(text, 0)
    except StopIteration as exc:
        raise SerializationError(root, f"corrupt JSON payload: expecting a value at char {exc.value}") from None
    except ValueError as exc:
        raise SerializationError(root, f"corrupt JSON payload: {exc}") from None
    if end != len(text):
        raise SerializationError(root, f"corrupt JSON payload: extra data at char {end}")
    return obj


def from_tagged(obj: Any, path: str = "value") -> Any:
    t = type(obj)
    if t is list:
        return [from_tagged(x, f"{path}[{i}]") for i, x in enumerate(obj)]
    if t is not dict:
        return obj
    if len(obj) == 1:
        (key,) = obj
        if key.startswith("$") and not key.startswith("$$"):
            return _decode_tag(key, obj[key], path)
    return {(k[1:] if k.startswith("$") else k): from_tagged(v, f"{path}[{k!r}]") for k, v in obj.items()}


def _decode_tag(tag: str, v: Any, path: str) -> Any:
    try:
        if tag == "$tuple":
            return tuple(from_tagged(x, f"{path}[{i}]") for i, x in enumerate(v))
        if tag == "$int":
            return int(v, 16)
        if tag == "$float":
            return float(v)
        if tag == "$bytes":
            return base64.b64decode(v)
        if tag == "$bytearray":
            return bytearray(base64.b64decode(v))
        if tag == "$map":
            return {from_tagged(k, path): from_tagged(x, f"{path}[…]") for k, x in v}
        if tag == "$set":
            return {from_tagged(x, path) for x in v}
        if tag == "$frozenset":
            return frozenset(from_tagged(x, path) for x in v)
        if tag == "$datetime":
            return _dec_datetime(v)
        if tag == "$date":
            return date.fromisoformat(v)
        if tag == "$time":
            return _dec_time(v)
        if tag == "$timedelta":
            return timedelta(days=v[0], seconds=v[1], microseconds=v[2])
        if tag == "$decimal":
            return Decimal(v)
        if tag == "$uuid":
            return uuid.UUID(v)
        if tag == "$path":
            return _PATH_TYPES[v[0]](v[1])
        if tag == "$enum":
            cls = _resolve_class(v[0], path)
            if not issubclass(cls, enum.Enum):
                raise SerializationError(path, f"{v[0]} is not an Enum")
            return cls(from_tagged(v[1], path))
        if tag == "$dataclass":
            return _dec_dataclass(v, path)
        if tag == "$pydantic":
            cls = _resolve_class(v[0], path)
            return cls.model_validate(from_tagged(v[1], path))  # type: ignore[attr-defined]
        if tag == "$obj":
            cls = _resolve_class(v[0], path)
            fn = getattr(cls, "__durable_deserialize__", None)
            if fn is None:
                raise SerializationError(path, f"class {v[0]} has no __durable_deserialize__")
            return fn(from_tagged(v[1], path))
        if tag == "$exception":
            return _dec_exception(v, path)
        if tag == "$class":
            return _resolve_class(v, path)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(path, f"cannot decode {tag}: {type(exc).__name__}: {exc}") from None
    raise SerializationError(path, f"unknown tag {tag!r} (written by a newer version?)")


def _dec_datetime(v: Any) -> datetime:
    if isinstance(v, str):
        return datetime.fromisoformat(v)
    if not isinstance(v[1], str):
        return datetime.fromisoformat(v[0]).replace(tzinfo=_dec_tz(v[1]), fold=v[2])
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(v[0]).replace(tzinfo=ZoneInfo(v[1]), fold=v[2])


def _dec_time(v: Any) -> time:
    if isinstance(v, str):
        return time.fromisoformat(v)
    return time.fromisoformat(v[0]).replace(tzinfo=_dec_tz(v[1]), fold=v[2])


def _dec_dataclass(v: Any, path: str) -> Any:
    cls = _resolve_class(v[0], path)
    if not dataclasses.is_dataclass(cls):
        raise SerializationError(path, f"{v[0]} is not a dataclass")
    values = {k: from_tagged(x, f"{path}.{k}") for k, x in v[1].items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    init = {k: x for k, x in values.items() if k in fields and fields[k].init}
    obj = cls(**init)
    for k, x in values.items():
        if k in fields and not fields[k].init:
            object.__setattr__(obj, k, x)
    return obj


def _dec_exception(v: Any, path: str) -> BaseException:
    ref, args, message, tb, cause = v[:5]
    attrs = v[5] if len(v) > 5 else {}
    decoded_args = from_tagged(args, f"{path}.args")
    try:
        cls = _resolve_class(ref, path)
        if not issubclass(cls, BaseException):
            raise SerializationError(path, f"{ref} is not an exception class")
        # Restore state the way it was, without calling __init__ (whose signature need not
        # match its args: an __init__(code) that formats a message stores the message).
        exc = cls.__new__(cls, *decoded_args)
        if cls.__module__ == "builtins":
            # Builtin exceptions take exactly their args, and some keep state in C fields that
            # only __init__ sets (UnicodeDecodeError.reason, StopIteration.value, ...).
            with contextlib.suppress(Exception):
                cls.__init__(exc, *decoded_args)
        exc.args = tuple(decoded_args)
        for key, value in attrs.items():
            setattr(exc, key, from_tagged(value, f"{path}.{key}"))
    except Exception:
        # The class is gone or will not rebuild: keep type name, message and traceback text
        # in a StepFailed rather than losing the error.
        exc = StepFailed("?", ref.replace(":", "."), message, tb)
    exc.__durable_traceback__ = tb  # type: ignore[attr-defined]
    if cause is not None:
        exc.__cause__ = from_tagged(cause, f"{path}.__cause__")
    return exc


# ----------------------------------------------------------------------------------------------
# plain JSON for the outside world


def to_plain_json(value: Any) -> Any:
    """Best-effort conversion of a decoded value into plain JSON data for HTTP clients and UIs."""
    t = type(value)
    if value is None or t in (str, bool, int):
        return value
    if t is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: to_plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain_json(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return to_plain_json(value.value)
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": _safe_str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if _is_pydantic(value):
        return to_plain_json(value.model_dump(mode="json"))
    return str(value)


def check_plain_json(value: Any, path: str = "payload") -> None:
    """Raise SerializationError unless ``value`` is plain JSON data (what an HTTP body can hold).

    Text must be valid Unicode: JSON's ``\\ud800`` escape yields a lone surrogate, which no
    other system (a database text column, a JSON response) accepts back.
    """
    t = type(value)
    if t is str:
        _check_text(value, path)
        return
    if value is None or t in (bool, int):
        return
    if t is float:
        if not math.isfinite(value):
            raise SerializationError(path, "NaN and infinity are not JSON")
        return
    if t is list:
        for i, x in enumerate(value):
            check_plain_json(x, f"{path}[{i}]")
        return
    if t is dict:
        for k, x in value.items():
            if type(k) is not str:
                raise SerializationError(path, f"JSON object keys must be strings, got {type(k).__name__}")
            _check_text(k, f"{path} (a key)")
            check_plain_json(x, f"{path}[{k!r}]")
        return
    raise SerializationError(path, f"{type(value).__name__} is not JSON")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(path, f"text holds a lone surrogate ({exc.object[exc.start:exc.end]!r}), not valid Unicode") from None
