"""Payload encryption at rest: :class:`Encryption` (the keys) and :class:`EncryptedStore` (a Store
wrapper that encrypts payload bytes on the way in and decrypts them on the way out).

::

    runtime / client ──plaintext──► EncryptedStore ──ciphertext──► SQLite / PostgreSQL store
                     ◄──plaintext──   (AES-256-GCM, a key per run)  ◄──ciphertext──

Everything above the wrapper -- the engine, the worker, views -- sees the bytes the codec wrote,
so nothing there changes, and with ``encryption=None`` there is no wrapper at all (no cost).

What is encrypted: every payload the codec wrote -- run arguments, results and errors, step
arguments, results and errors, hook and webhook payloads, child runs' arguments, live values,
stream chunks, schedule arguments -- in their rows and in the events that carry them (also the
digest of a workflow's stream write: a hash of a short plaintext could be confirmed by guessing).
What is not: what the store itself must read or match on -- ids, names, tokens, statuses,
timestamps, stream namespaces, queue keys and dedupe ids, idempotency keys, the signatures
workers publish -- and hook metadata (schema names, webhook answer modes and ``create_hook``'s
``metadata=``), which a webhook route reads to find and answer a webhook and a resume reads to
validate a payload, in processes that may not hold the key (a store-only ``durable serve``).

A value is ``b"DE1:"``, the key id's length (1 byte) and the key id, the context's length
(2 bytes) and the context (the run id the key was derived for), a 96-bit random nonce and the
AES-GCM ciphertext and tag; the header is the associated data, so it cannot be altered. The key
is derived per context with HKDF-SHA256 from the master key. The context travels with the value
because a value moves between runs: a child's result is delivered into its parent's log as the
child wrote it. Schedule arguments, written before their runs exist, use ``schedule:<name>``.

Decrypting where something must run (the log a replay reads) fails with
:class:`~durable.EncryptionKeyError` naming the key id; elsewhere a value this process cannot
decrypt stays as it is, so views show ``"<encrypted>"`` and decoding it raises
:class:`~durable.EncryptedValueError`, which names the key id too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import logging
import operator
import os
import secrets
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._core.codec import ENCRYPTED_TAG, encrypted_key_id, is_encrypted
from .._core.commands import Command, ScheduleStep, SetValue, StartChild, WriteChunk
from .._core.errorinfo import decode_error
from .._core.errors import EncryptionKeyError, HookNotFound, RunConflict
from .._core.events import Event
from .._core.queues import QueueSpec, QueueState
from ._base import (
    ChunkPage,
    Collected,
    CommitResult,
    ForkRun,
    HookRecord,
    Invocation,
    NewRun,
    Notifier,
    PublishedWorkflow,
    RunRecord,
    ScheduleDef,
    ScheduleRecord,
    StepClaim,
    StepRecord,
    Store,
    TickRun,
    Versions,
)
from ._sql import ENCRYPTED_ERROR_TEXT, same_input

log = logging.getLogger("durable.store")

_HKDF_SALT = b"durable-workflows encryption v1"
_CHECK_CONTEXT = "durable:key-check"
_CHECK_PLAINTEXT = b"durable encryption key check v1"
CHECK_PREFIX = "encryption_key:"  # durable_meta: one check value per key id that ever wrote
_NONCE = 12
_MAX_CIPHERS = 4096  # derived per-run ciphers kept (HKDF costs more than a whole AES-GCM of a small value)


_T = TypeVar("_T")
_GETTERS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]] = {}


def _with(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for the records a commit carries, at a third of its cost (it is on
    the path of every step): all fields read in one ``attrgetter`` call, then the constructor."""
    cls = type(obj)
    found = _GETTERS.get(cls)
    if found is None:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        found = _GETTERS[cls] = (operator.attrgetter(*names), {n: i for i, n in enumerate(names)})
    getter, index = found
    values = list(getter(obj))
    for name, value in changes.items():
        values[index[name]] = value
    return cls(*values)


_DATA = Event._fields.index("data")
_new_event: Callable[[type[Event], tuple[Any, ...]], Event] = tuple.__new__  # as _sql builds them: cheaper than _replace


def _event_with(e: Event, data: bytes | None) -> Event:
    return _new_event(Event, (*e[:_DATA], data, *e[_DATA + 1 :]))


def _key_bytes(key: bytes | str, what: str) -> bytes:
    """32 bytes from bytes, or from text in base64 (standard or URL-safe) or hex."""
    raw: bytes | None = None
    if isinstance(key, bytes | bytearray):
        raw = bytes(key)
    elif isinstance(key, str):
        text = key.strip()
        if len(text) == 64:
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raw = None
        if raw is None:
            try:
                raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raw = None
    else:
        raise TypeError(f"{what} must be bytes or text (base64 or hex), got {type(key).__name__}")
    if raw is None or len(raw) != 32:
        size = "text that is neither base64 nor hex" if raw is None else f"{len(raw)} bytes"
        # Never the key itself in a message: it may end up in a log.
        raise ValueError(
            f"{what} must be 32 bytes (AES-256), or text encoding 32 bytes in base64 or hex -- make one with "
            f"durable.Encryption.generate_key(); got {size}"
        )
    return raw


def _check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not key_id or not key_id.isprintable() or len(key_id.encode()) > 255:
        raise ValueError(f"key_id must be printable text of 1 to 255 bytes (it is stored beside each value), got {key_id!r}")
    return key_id


def fingerprint(key: bytes) -> str:
    """A key id derived from the key (the default): the same key always gets the same id."""
    return "k-" + hashlib.sha256(b"durable key id\x00" + key).hexdigest()[:12]


class Encryption:
    """Keys for encrypting payloads at rest with AES-256-GCM (needs the ``encryption`` extra).

    ``key``: the master key, 32 bytes (or base64 / hex text of them; make one with
    :meth:`generate_key`). New values are encrypted under a key derived from it per run.
    ``key_id``: the name stored beside each value (default: derived from the key), so that a
    later process knows which key a value needs. ``old_keys``: ``{key_id: key}`` of keys that
    wrote earlier values: reads find theirs by the id in the value (rotation: make the new key
    ``key``, move the old one into ``old_keys``; old values stay readable, new ones use the new
    key). Pass it as ``Runtime(encryption=...)`` or ``Client(encryption=...)``.
    """

    def __init__(
        self, key: bytes | str, *, key_id: str | None = None, old_keys: Mapping[str, bytes | str] | None = None
    ) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401  (the extra is there)
        except ImportError as exc:
            raise ImportError(
                f"payload encryption needs the encryption extra: pip install 'durable-workflows[encryption]' ({exc})"
            ) from None
        master = _key_bytes(key, "key")
        self.key_id = _check_key_id(key_id) if key_id is not None else fingerprint(master)
        keys = {_check_key_id(kid): _key_bytes(k, f"old_keys[{kid!r}]") for kid, k in (old_keys or {}).items()}
        if keys.get(self.key_id, master) != master:
            raise ValueError(f"old_keys holds another key under key_id {self.key_id!r}, the id of the current key")
        keys[self.key_id] = master
        self._keys = keys
        self._ciphers: dict[tuple[str, str], Any] = {}
        self._sealers: dict[str, tuple[Any, bytes]] = {}  # context -> (cipher, header) of the current key

    def __eq__(self, other: object) -> bool:  # the same keys (a notebook cell run twice makes an equal one)
        return isinstance(other, Encryption) and (self.key_id, self._keys) == (other.key_id, other._keys)

    def __hash__(self) -> int:
        return hash((self.key_id, tuple(sorted(self._keys))))

    def __repr__(self) -> str:  # never the keys
        old = sorted(k for k in self._keys if k != self.key_id)
        return f"Encryption(key_id={self.key_id!r}, old_keys={old!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Encryption | None:
        """The keys in ``DURABLE_ENCRYPTION_KEY`` (base64 or hex), ``DURABLE_ENCRYPTION_KEY_ID`` and
        ``DURABLE_ENCRYPTION_OLD_KEYS`` (``id:key,id:key``); None when the first is unset. The
        ``durable`` command (worker, serve, and the commands that read runs) uses them."""
        env = os.environ if environ is None else environ
        key = env.get("DURABLE_ENCRYPTION_KEY", "").strip()
        if not key:
            return None
        old: dict[str, str] = {}
        for item in env.get("DURABLE_ENCRYPTION_OLD_KEYS", "").split(","):
            if item.strip():
                key_id, sep, value = item.strip().partition(":")
                if not sep or not key_id or not value:
                    raise ValueError("DURABLE_ENCRYPTION_OLD_KEYS must be key_id:key pairs separated by commas")
                old[key_id] = value
        try:
            return cls(key, key_id=env.get("DURABLE_ENCRYPTION_KEY_ID") or None, old_keys=old)
        except ValueError as exc:
            raise ValueError(f"DURABLE_ENCRYPTION_KEY / _OLD_KEYS: {exc}") from None

    @staticmethod
    def generate_key() -> str:
        """A new random 32-byte key, as URL-safe base64 text (keep it in a secret store, not in code)."""
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")

    @property
    def key_ids(self) -> list[str]:
        """Every key id this holds: the current one and the old ones."""
        return sorted(self._keys)

    def _cipher(self, key_id: str, context: str) -> Any:  # an AESGCM (cryptography is imported lazily)
        cipher = self._ciphers.get((key_id, context))
        if cipher is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            derived = HKDF(hashes.SHA256(), 32, _HKDF_SALT, context.encode("utf-8")).derive(self._keys[key_id])
            if len(self._ciphers) >= _MAX_CIPHERS:
                del self._ciphers[next(iter(self._ciphers))]  # the oldest: runs come and go
            cipher = self._ciphers[(key_id, context)] = AESGCM(derived)
        return cipher

    def encrypt(self, data: bytes, context: str) -> bytes:
        """``data`` encrypted under the current key, derived for ``context`` (a run id)."""
        found = self._sealers.get(context)
        if found is None:
            kid = self.key_id.encode("utf-8")
            ctx = context.encode("utf-8")
            header = ENCRYPTED_TAG + bytes((len(kid),)) + kid + struct.pack(">H", len(ctx)) + ctx
            if len(self._sealers) >= _MAX_CIPHERS:
                del self._sealers[next(iter(self._sealers))]
            found = self._sealers[context] = (self._cipher(self.key_id, context), header)
        cipher, header = found
        nonce = os.urandom(_NONCE)  # random, 96 bits: collisions stay negligible far beyond 2**32 values per run key
        sealed: bytes = cipher.encrypt(nonce, data, header)
        return header + nonce + sealed

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of a value :meth:`encrypt` made, with the key its id names; EncryptionKeyError if
        this holds no key of that id or the key does not decrypt it."""
        data = bytes(data)
        try:
            size = data[4]
            key_id = data[5 : 5 + size].decode("utf-8")
            (ctx_size,) = struct.unpack_from(">H", data, 5 + size)
            start = 7 + size
            context = data[start : start + ctx_size].decode("utf-8")
            body = start + ctx_size
        except (IndexError, struct.error, UnicodeDecodeError):
            raise EncryptionKeyError("?", "the encrypted value's header is damaged") from None
        if key_id not in self._keys:
            raise EncryptionKeyError(
                key_id, f"this process holds no key with that id (it holds {', '.join(map(repr, self.key_ids))}): "
                "pass it in Encryption(old_keys={...})"
            )
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(self._cipher(key_id, context).decrypt(data[body : body + _NONCE], data[body + _NONCE :], data[:body]))
        except (InvalidTag, ValueError):
            raise EncryptionKeyError(
                key_id, "the key given for that id does not decrypt this value (a wrong key, or the value was altered)"
            ) from None

    def check_value(self) -> str:
        """What the store keeps for the current key id, so that a wrong key under that id is refused at open."""
        return base64.b64encode(self.encrypt(_CHECK_PLAINTEXT, _CHECK_CONTEXT)).decode("ascii")

    def verifies(self, value: str) -> bool:
        """Whether a stored check value was made by the key this holds under its id."""
        try:
            return self.decrypt(base64.b64decode(value)) == _CHECK_PLAINTEXT
        except (EncryptionKeyError, binascii.Error, ValueError):
            return False


class EncryptedStore(Store):
    """A store whose payload bytes are encrypted at rest (see the module docstring for which)."""

    def __init__(self, inner: Store, encryption: Encryption) -> None:
        self.inner = inner
        self.encryption = encryption
        self.url = inner.url
        self.notifier: Notifier = inner.notifier
        self.cross_process = inner.cross_process
        self.notifies_across_processes = inner.notifies_across_processes

    def __repr__(self) -> str:
        return f"<EncryptedStore {self.inner!r} {self.encryption!r}>"

    def __getattr__(self, name: str) -> Any:
        # What a particular store has beyond the interface (SQLiteStore.path, PostgresStore.migrate, ...).
        if name == "inner":  # not set yet (a half-built object): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- bytes in, bytes out ---------------------------------------------------------------

    def _enc(self, data: bytes | None, context: str) -> bytes | None:
        return None if data is None else self.encryption.encrypt(data, context)

    def _dec(self, data: bytes | None) -> bytes | None:
        """Decrypted if this process can; else as it is (views show it encrypted; decoding it names the key)."""
        if data is None or data[:4] != ENCRYPTED_TAG:
            return data
        try:
            return self.encryption.decrypt(data)
        except EncryptionKeyError:
            return bytes(data)

    def _run_record(self, r: RunRecord) -> RunRecord:
        if not (is_encrypted(r.input) or is_encrypted(r.output) or is_encrypted(r.error)):
            return r  # written before encryption was turned on, or by a process without it
        return dataclasses.replace(r, input=self._dec(r.input) or b"", output=self._dec(r.output), error=self._dec(r.error))

    def _event(self, e: Event, strict: bool) -> Event:
        if e.data is None or e.data[:4] != ENCRYPTED_TAG:
            return e
        return _event_with(e, self.encryption.decrypt(e.data) if strict else self._dec(e.data))

    def _command(self, cmd: Command, run_id: str) -> Command:
        if isinstance(cmd, ScheduleStep):
            return _with(cmd, input=self.encryption.encrypt(cmd.input, run_id))
        if isinstance(cmd, WriteChunk):
            enc = self.encryption.encrypt
            return _with(cmd, data=enc(cmd.data, run_id), digest=enc(cmd.digest, run_id))
        if isinstance(cmd, StartChild):  # under the child's key: it becomes the child's input
            return _with(cmd, input=self.encryption.encrypt(cmd.input, cmd.run_id))
        if isinstance(cmd, SetValue):
            return _with(cmd, data=self.encryption.encrypt(cmd.data, run_id))
        return cmd  # hooks' metadata stays readable (see the module docstring); the rest carries no payload

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self.inner.open()
        try:
            await self._check_keys()
        except BaseException:
            await self.inner.aclose()
            raise

    async def _check_keys(self) -> None:
        """Refuse a wrong key for a key id the store has seen; record the current key id's check."""
        enc = self.encryption
        stored = {k[len(CHECK_PREFIX):]: v for k, v in (await self.inner.read_meta(CHECK_PREFIX)).items()}
        if enc.key_id not in stored:
            stored[enc.key_id] = await self.inner.add_meta(CHECK_PREFIX + enc.key_id, enc.check_value())
        held = set(enc.key_ids)
        for key_id, value in sorted(stored.items()):
            if key_id in held and not _holds(enc, key_id, value):
                raise EncryptionKeyError(
                    key_id, f"the key given for that id is not the one {self.url} was encrypted with under it (a wrong key?)"
                )
        missing = sorted(set(stored) - held)
        if missing:
            log.warning(
                "durable: %s may hold values encrypted with key(s) %s, which this process does not hold: "
                "they cannot be read here (add them to Encryption(old_keys={...}))", self.url, ", ".join(missing),
            )

    async def aclose(self) -> None:
        await self.inner.aclose()

    # -- workers and published workflows: nothing to encrypt -------------------------------

    async def register_worker(self, worker_id: str, host: str, pid: int, pid_start: str, ttl: float, now: float) -> None:
        await self.inner.register_worker(worker_id, host, pid, pid_start, ttl, now)

    async def heartbeat(self, worker_id: str, ttl: float, now: float) -> list[tuple[str, int, str]]:
        return await self.inner.heartbeat(worker_id, ttl, now)

    async def mark_workers_dead(self, worker_ids: Sequence[str]) -> None:
        await self.inner.mark_workers_dead(worker_ids)

    async def unregister_worker(self, worker_id: str) -> None:
        await self.inner.unregister_worker(worker_id)

    async def publish_workflows(self, published: Sequence[PublishedWorkflow]) -> None:
        await self.inner.publish_workflows(published)

    async def list_workflows(self) -> list[PublishedWorkflow]:
        return await self.inner.list_workflows()

    # -- runs ------------------------------------------------------------------------------

    async def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        record, created = await self.inner.create_run(dataclasses.replace(new, input=self.encryption.encrypt(new.input, new.run_id)))
        if created:
            return dataclasses.replace(record, input=new.input), True
        # The store cannot compare two ciphertexts (each has its own nonce): compare the plaintexts.
        existing = self._run_record(record)
        if not is_encrypted(existing.input) and not same_input(existing.input, new.input):
            where, key = (
                ("idempotency_key", new.idempotency_key) if new.idempotency_key and existing.idempotency_key == new.idempotency_key
                else ("run_id", new.run_id)
            )
            raise RunConflict(existing.run_id, where, key or "", existing.workflow_name, new.workflow_name, other_arguments=True)
        return existing, False

    async def get_run(self, run_id: str) -> RunRecord | None:
        record = await self.inner.get_run(run_id)
        return None if record is None else self._run_record(record)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 100, before: str | None = None,
        queue: str | None = None,
        version: str | None = None,
    ) -> list[RunRecord]:
        records = await self.inner.list_runs(
            status=status, workflow=workflow, limit=limit, before=before, queue=queue, version=version
        )
        return [self._run_record(r) for r in records]

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        return [self._event(e, False) for e in await self.inner.load_events(run_id, after_seq)]

    async def read_log(self, run_id: str, after_seq: int) -> tuple[list[Event], int]:
        # What a replay consumes: a value it cannot decrypt fails the invocation (which is retried
        # with a back-off), never the run.
        events, last_seq = await self.inner.read_log(run_id, after_seq)
        return [self._event(e, True) for e in events], last_seq

    async def claim_runs(
        self, worker_id: str, workflow_names: Sequence[str], now: float, limit: int, versions: Versions | None = None
    ) -> list[RunRecord]:
        return [self._run_record(r) for r in await self.inner.claim_runs(worker_id, workflow_names, now, limit, versions)]

    async def release_run(self, run_id: str, worker_id: str, now: float, retry_at: float | None = None) -> None:
        await self.inner.release_run(run_id, worker_id, now, retry_at)

    async def commit(self, invocation: Invocation) -> CommitResult:
        run_id = invocation.run_id
        encrypt = self.encryption.encrypt
        sealed = _with(
            invocation,
            commands=[self._command(c, run_id) for c in invocation.commands],
            result=None if invocation.result is None else encrypt(invocation.result, run_id),
            error=None if invocation.error is None else encrypt(invocation.error, run_id),
            speculative=[e if e.data is None else _event_with(e, encrypt(e.data, run_id)) for e in invocation.speculative],
        )
        result = await self.inner.commit(sealed)
        if result.claimed:  # the steps claimed here run with the arguments the commit was given
            plain = {c.correlation_id: c.input for c in invocation.commands if isinstance(c, ScheduleStep)}
            result.claimed = [_with(c, input=plain.get(c.step_id, c.input)) for c in result.claimed]
        return result

    async def cancel_run(self, run_id: str, now: float) -> RunRecord | None:
        record = await self.inner.cancel_run(run_id, now)
        return None if record is None else self._run_record(record)

    async def fork_run(self, fork: ForkRun) -> RunRecord:
        # The copied history keeps its values as they are (each says whose key it needs); new
        # arguments are the new run's.
        sealed = fork if fork.input is None else _with(fork, input=self.encryption.encrypt(fork.input, fork.run_id))
        return self._run_record(await self.inner.fork_run(sealed))

    async def next_wake(
        self, workflow_names: Sequence[str], step_names: Sequence[str], now: float, versions: Versions | None = None
    ) -> float | None:
        return await self.inner.next_wake(workflow_names, step_names, now, versions)

    async def active_workflows(self) -> dict[str, int]:
        return await self.inner.active_workflows()

    async def active_versions(self) -> dict[tuple[str, str | None], int]:
        return await self.inner.active_versions()

    async def terminal_runs(self, run_ids: Sequence[str]) -> list[str]:
        return await self.inner.terminal_runs(run_ids)

    async def list_children(self, run_id: str) -> list[RunRecord]:
        return [self._run_record(r) for r in await self.inner.list_children(run_id)]

    # -- retention and settings ------------------------------------------------------------

    async def collect_runs(
        self, before: float, statuses: Sequence[str], *, limit: int, max_rows: int, now: float
    ) -> Collected:
        return await self.inner.collect_runs(before, statuses, limit=limit, max_rows=max_rows, now=now)

    async def reclaim_space(self, *, vacuum: bool = False) -> int | None:
        return await self.inner.reclaim_space(vacuum=vacuum)

    async def read_meta(self, prefix: str) -> dict[str, str]:
        return await self.inner.read_meta(prefix)

    async def add_meta(self, key: str, value: str) -> str:
        return await self.inner.add_meta(key, value)

    # -- live values -----------------------------------------------------------------------

    async def list_values(self, run_id: str, key: str | None = None) -> list[tuple[str, bytes, int, float]]:
        return [(k, self._dec(data) or b"", seq, at) for k, data, seq, at in await self.inner.list_values(run_id, key)]

    # -- schedules -------------------------------------------------------------------------

    async def define_schedules(self, defs: Sequence[ScheduleDef], now: float) -> None:
        # Written before any of their runs exists: under a key derived for the schedule, carried
        # by the value into each run it starts.
        await self.inner.define_schedules(
            [dataclasses.replace(d, input=self.encryption.encrypt(d.input, f"schedule:{d.name}")) for d in defs], now
        )

    async def list_schedules(self, names: Sequence[str] | None = None) -> list[ScheduleRecord]:
        return await self.inner.list_schedules(names)

    async def fire_schedule(
        self, name: str, expected_next_at: float, ticks: Sequence[TickRun], skipped: int, next_at: float, now: float
    ) -> list[str]:
        return await self.inner.fire_schedule(name, expected_next_at, ticks, skipped, next_at, now)

    async def set_schedule_paused(self, name: str, paused: bool, now: float) -> bool:
        return await self.inner.set_schedule_paused(name, paused, now)

    async def delete_schedule(self, name: str) -> bool:
        return await self.inner.delete_schedule(name)

    async def trigger_schedule(self, name: str, run_id: str, now: float) -> str | None:
        return await self.inner.trigger_schedule(name, run_id, now)

    # -- queues ----------------------------------------------------------------------------

    async def define_queues(self, specs: Sequence[QueueSpec], now: float) -> None:
        await self.inner.define_queues(specs, now)

    async def queue_states(self, names: Sequence[str] | None, now: float) -> list[QueueState]:
        return await self.inner.queue_states(names, now)

    # -- steps -----------------------------------------------------------------------------

    async def claim_steps(self, worker_id: str, step_names: Sequence[str], now: float, limit: int) -> list[StepClaim]:
        claims = await self.inner.claim_steps(worker_id, step_names, now, limit)
        # A step whose arguments cannot be decrypted here keeps them encrypted: the executor retries it elsewhere.
        return [c if not is_encrypted(c.input) else dataclasses.replace(c, input=self._dec(c.input) or b"") for c in claims]

    async def finish_step(
        self, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float, retry_at: float | None = None
    ) -> bool:
        return await self.inner.finish_step(run_id, step_id, kind, self.encryption.encrypt(data, run_id), attempt, now, retry_at)

    async def list_steps(self, run_id: str) -> list[StepRecord]:
        return [
            s if not (is_encrypted(s.input) or is_encrypted(s.output) or is_encrypted(s.error))
            else dataclasses.replace(s, input=self._dec(s.input), output=self._dec(s.output), error=self._dec(s.error))
            for s in await self.inner.list_steps(run_id)
        ]

    # -- hooks -----------------------------------------------------------------------------

    async def get_hook(self, token: str) -> HookRecord | None:
        return await self.inner.get_hook(token)

    async def list_hooks(self, run_id: str, *, active_only: bool = True) -> list[HookRecord]:
        return await self.inner.list_hooks(run_id, active_only=active_only)

    async def resume_hook(
        self, token: str, payload: bytes, now: float, *, expect: tuple[str, str] | None = None
    ) -> HookRecord:
        if expect is not None:
            return await self.inner.resume_hook(token, self.encryption.encrypt(payload, expect[0]), now, expect=expect)
        # The key is the run's: find the run that holds the token, then deliver only to that hook.
        for _ in range(3):
            hook = await self.inner.get_hook(token)
            if hook is None:
                break
            try:
                return await self.inner.resume_hook(
                    token, self.encryption.encrypt(payload, hook.run_id), now, expect=(hook.run_id, hook.hook_id)
                )
            except HookNotFound:
                continue  # the token moved to another hook between the two reads: look again
        raise HookNotFound(token)

    # -- streams ---------------------------------------------------------------------------

    async def append_chunks(
        self, run_id: str, namespace: str, chunks: Sequence[bytes], step_id: str | None, attempt: int | None,
        now: float, *, close: bool = False,
    ) -> int:
        sealed = [self.encryption.encrypt(c, run_id) for c in chunks]
        return await self.inner.append_chunks(run_id, namespace, sealed, step_id, attempt, now, close=close)

    async def close_stream(self, run_id: str, namespace: str, error: str | None, now: float) -> None:
        await self.inner.close_stream(run_id, namespace, error, now)

    async def read_chunks(self, run_id: str, namespace: str, start: int, limit: int) -> ChunkPage:
        page = await self.inner.read_chunks(run_id, namespace, start, limit)
        chunks = [c if c.data[:4] != ENCRYPTED_TAG else dataclasses.replace(c, data=self._dec(c.data) or b"")
                  for c in page.chunks]
        error = page.error
        if error == ENCRYPTED_ERROR_TEXT:  # the store keeps no plaintext of the run's error: read it from the run
            record = await self.get_run(run_id)
            if record is not None and record.error and not is_encrypted(record.error):
                info = decode_error(record.error)
                error = f"{info.type}: {info.message}"
        return dataclasses.replace(page, chunks=chunks, error=error)

    async def list_streams(self, run_id: str) -> list[tuple[str, int, bool]]:
        return await self.inner.list_streams(run_id)


def _holds(enc: Encryption, key_id: str, value: str) -> bool:
    """Whether the check value kept for ``key_id`` was made by the key ``enc`` holds under that id."""
    try:
        data = base64.b64decode(value)
    except (binascii.Error, ValueError):
        return False
    return encrypted_key_id(data) == key_id and enc.verifies(value)


def encrypted(store: Store, encryption: Encryption | None) -> Store:
    """``store`` with payloads encrypted at rest by ``encryption`` (the store itself when None or already so)."""
    if encryption is None or isinstance(store, EncryptedStore):
        return store
    if not isinstance(encryption, Encryption):
        raise TypeError(f"encryption must be a durable.Encryption, got {type(encryption).__name__}")
    return EncryptedStore(store, encryption)
