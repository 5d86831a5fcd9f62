"""Generated workflow programs: a small AST, a Hypothesis strategy for it, and its interpreter.

A :class:`Program` is data (frozen dataclasses, so the codec can carry it to a child process)
and prints as the Python source of the workflow it stands for, so a shrunk failing example
reads like a bug report. :func:`to_workflow` turns it into a :class:`durable.Workflow` whose
body interprets the AST with the real workflow API: steps, ``durable.sleep``, hooks
(``await hook``, ``asyncio.wait_for(hook, ...)``), workflow stream writes, async-generator
yields, ``durable.random()`` branches, ``durable.patched()`` branches, child workflows
(``await child(...)`` and ``durable.start_child`` handles) and ``asyncio.gather`` /
``asyncio.TaskGroup`` / ``asyncio.wait(FIRST_COMPLETED)`` / anyio task groups.

A :class:`Patched` node stands for code changed while runs were in flight: ``to_workflow(...,
patches=...)`` builds the version before the patch (``"old"``: its old branch, no call), the
patched one (``"new"``: ``if durable.patched(...)``), the next step (``"deprecated"``:
``deprecate_patch`` then the new branch) or the last (``"retired"``: the new branch alone).

Generated programs are *schedule-independent by construction*, so that running them with
steps completing in any order must give the same observations:

- results are collected per node in program order (``FIRST_COMPLETED`` waits for the
  losers too), never in completion order;
- ``durable.random()`` is only drawn outside parallel branches (draws inside branches would
  interleave in completion order);
- workflow stream writes inside a parallel branch go to that branch's own namespace; yields
  and top-level writes go to the default stream;
- a hook is awaited only in the sequence that created it, gets exactly as many payloads as it
  has plain awaits, and a timed-out await (``wait_for(hook, short)``) comes only after the
  last payload was taken, so it always times out;
- a step (or child run) that ends in failure is wrapped in ``try/except`` unless it is the
  program's last top-level statement (then the run fails with its error).

Step behaviour is a pure function of the step's arguments and attempt number
(:func:`plan_attempt`), shared by the real step functions and the in-test simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import anyio
from hypothesis import strategies as st

import durable
from durable._workflow.workflow import Workflow

from .values import small_values

MAX_RETRIES = 4  # 5 attempts: a crash may cost one attempt and the step still ends the same way
EXHAUSTED = MAX_RETRIES + 2  # `fails` at or above this: every attempt fails
SHORT_TIMEOUT = 0.03  # a timed-out hook await: nothing can arrive, so it always times out
LONG_TIMEOUT = 3600.0  # a hook await that the payload always wins

# -- the AST ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """``await <name>(key, arg, fails=, fatal=, chunks=)``, optionally inside try/except."""

    key: int
    name: str
    arg: Any
    fails: int = 0  # attempts that raise a retryable error first
    fatal: bool = False  # then raise FatalError instead of returning
    chunks: int = 0  # chunks each attempt writes to the step's own stream ``s<key>``
    guarded: bool = False
    raced: bool = False  # ``asyncio.wait_for(step, LONG_TIMEOUT)``: a durable timer the step always beats

    @property
    def ends_in_failure(self) -> bool:
        return self.fatal or self.fails >= MAX_RETRIES + 1


@dataclass(frozen=True)
class Child:
    """``await <name>(key, arg, fails)`` -- a child run -- or the same through ``start_child`` and its handle."""

    key: int
    name: str
    arg: Any
    fails: bool = False  # the child raises FatalError (the parent sees that very type)
    guarded: bool = False
    handle: bool = False

    @property
    def ends_in_failure(self) -> bool:
        return self.fails


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class HookCreate:
    hid: int
    payloads: tuple[Any, ...] = ()

    @property
    def token(self) -> str:
        return f"h{self.hid}"


@dataclass(frozen=True)
class HookAwait:
    hid: int
    timeout: float | None = None  # LONG_TIMEOUT: raced against a durable timer it always beats


@dataclass(frozen=True)
class HookTimeout:
    hid: int
    seconds: float = SHORT_TIMEOUT


@dataclass(frozen=True)
class HookDispose:
    """``h<hid>.dispose()``, after the hook's last await (its payloads are all taken by then)."""

    hid: int


@dataclass(frozen=True)
class Close:
    """``await durable.get_writable(namespace).close()``: the last thing a parallel branch does."""

    namespace: str


@dataclass(frozen=True)
class Write:
    namespace: str
    value: Any


@dataclass(frozen=True)
class Yield:
    value: Any


@dataclass(frozen=True)
class Random:
    then: Seq
    otherwise: Seq


@dataclass(frozen=True)
class Patched:
    """``if durable.patched("p<pid>"): <new> else: <old>``: the workflow's code was changed here."""

    pid: int
    new: Seq
    old: Seq

    @property
    def patch_id(self) -> str:
        return f"p{self.pid}"


PatchMode = Literal["old", "new", "deprecated", "retired"]


ParallelKind = Literal["gather", "taskgroup", "first", "anyio"]


@dataclass(frozen=True)
class Parallel:
    kind: ParallelKind
    branches: tuple[Seq, ...]


Node: TypeAlias = (
    "Step | Child | Sleep | HookCreate | HookAwait | HookTimeout | HookDispose | Write | Close | Yield | Random | Patched"
    " | Parallel"
)


@dataclass(frozen=True)
class Seq:
    items: tuple[Any, ...] = ()  # Nodes (and, while a program is generated, placeholders for hook awaits)


@dataclass(frozen=True)
class Program:
    body: Seq
    generator: bool = False

    def __repr__(self) -> str:
        return render(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints a failing example with this (it would list dataclass fields otherwise)."""
        printer.text("\n" + render(self) + "\n")

    # -- facts the tests need -------------------------------------------------------------------

    def nodes(self) -> list[Any]:
        """Every node, in program order (depth first)."""
        out: list[Any] = []
        _walk(self.body, out)
        return out

    def steps(self) -> dict[int, Step]:
        return {n.key: n for n in self.nodes() if isinstance(n, Step)}

    def hooks(self) -> dict[str, HookCreate]:
        return {n.token: n for n in self.nodes() if isinstance(n, HookCreate)}

    def children(self) -> dict[int, Child]:
        return {n.key: n for n in self.nodes() if isinstance(n, Child)}
    def patches(self) -> list[Patched]:
        return [n for n in self.nodes() if isinstance(n, Patched)]


def _walk(seq: Seq, out: list[Any]) -> None:
    for item in seq.items:
        out.append(item)
        if isinstance(item, Random):
            _walk(item.then, out)
            _walk(item.otherwise, out)
        elif isinstance(item, Patched):
            _walk(item.new, out)
            _walk(item.old, out)
        elif isinstance(item, Parallel):
            for branch in item.branches:
                _walk(branch, out)


# -- step behaviour -----------------------------------------------------------------------------


class Flaky(Exception):
    """The retryable error generated steps raise; a custom class, so its type must survive the log."""


@dataclass(frozen=True)
class AttemptPlan:
    chunks: list[Any]
    outcome: Literal["completed", "retry", "fatal", "failed"]  # failed: retryable error on the last attempt
    value: Any = None
    error: BaseException | None = None


def plan_attempt(key: int, arg: Any, fails: int, fatal: bool, chunks: int, attempt: int) -> AttemptPlan:
    """What attempt ``attempt`` of a generated step writes and how it ends (pure)."""
    written = [{"k": key, "i": i} for i in range(chunks)]
    if attempt <= fails:
        outcome: Literal["retry", "failed"] = "failed" if attempt >= MAX_RETRIES + 1 else "retry"
        return AttemptPlan(written, outcome, error=Flaky(f"step {key} is flaky"))
    if fatal:
        return AttemptPlan(written, "fatal", error=durable.FatalError(f"step {key} gave up"))
    return AttemptPlan(written, "completed", value={"key": key, "echo": arg})


# Steps executed by the real runtime, for the crash properties: (key, attempt) per execution.
executions: list[tuple[int, int]] = []


async def _step_body(key: int, arg: Any, fails: int, fatal: bool, chunks: int) -> Any:
    meta = durable.get_step_metadata()
    executions.append((key, meta.attempt))
    plan = plan_attempt(key, arg, fails, fatal, chunks, meta.attempt)
    if plan.chunks:
        writer = durable.get_writable(f"s{key}")
        half = len(plan.chunks) // 2
        for i, chunk in enumerate(plan.chunks):
            await writer.write(chunk)
            if i + 1 == half:
                await writer.flush()  # two batches at least: a crash can fall between them
        if plan.outcome == "completed":
            await writer.close()
    if plan.error is not None:
        raise plan.error
    return plan.value


@durable.step(name="prop.alpha", max_retries=MAX_RETRIES, retry_delay=0.001, max_retry_delay=0.004)
async def alpha(key: int, arg: Any, fails: int, fatal: bool, chunks: int) -> Any:
    return await _step_body(key, arg, fails, fatal, chunks)


@durable.step(name="prop.beta", max_retries=MAX_RETRIES, retry_delay=0.001, max_retry_delay=0.004)
async def beta(key: int, arg: Any, fails: int, fatal: bool, chunks: int) -> Any:
    return await _step_body(key, arg, fails, fatal, chunks)


STEPS = {"prop.alpha": alpha, "prop.beta": beta}


def child_result(key: int, arg: Any) -> Any:
    return {"child": key, "echo": arg}


def child_error(key: int) -> durable.FatalError:
    return durable.FatalError(f"child {key} gave up")


async def _child_body(key: int, arg: Any, fails: bool) -> Any:
    await durable.sleep(0.001)  # a child suspends at least once: its end comes in a later transaction
    if fails:
        raise child_error(key)
    return child_result(key, arg)


@durable.workflow(name="prop.child_a")
async def child_a(key: int, arg: Any, fails: bool) -> Any:
    return await _child_body(key, arg, fails)


@durable.workflow(name="prop.child_b")
async def child_b(key: int, arg: Any, fails: bool) -> Any:
    return await _child_body(key, arg, fails)


CHILDREN = {"prop.child_a": child_a, "prop.child_b": child_b}
#: What a runtime running generated programs must execute beside the program itself.
CHILD_WORKFLOWS: list[Workflow[Any, Any]] = list(CHILDREN.values())
STEP_MAX_ATTEMPTS = MAX_RETRIES + 1
STEP_DELAY = 0.001  # the simulator's retry back-off base (no jitter)


def caught(exc: BaseException) -> list[str]:
    return ["caught", type(exc).__name__, str(exc)]


# -- the interpreter ------------------------------------------------------------------------------


class Interpreter:
    """Runs a program's nodes with the workflow API; ``trace`` (if given) records each node it starts;
    ``patches`` says which version of the code :class:`Patched` nodes stand for."""

    def __init__(self, trace: list[Any] | None = None, patches: PatchMode = "new") -> None:
        self.hooks: dict[int, durable.Hook[Any]] = {}
        self.trace = trace
        self.patches = patches

    async def seq(self, seq: Seq) -> list[Any]:
        return [await self.node(item) for item in seq.items]

    async def node(self, n: Any) -> Any:
        if self.trace is not None:
            self.trace.append(n)
        if isinstance(n, Step):
            call = STEPS[n.name](n.key, n.arg, n.fails, n.fatal, n.chunks)
            awaitable = asyncio.wait_for(call, LONG_TIMEOUT) if n.raced else call
            if not n.guarded:
                return await awaitable
            try:
                return await awaitable
            except Exception as exc:
                return caught(exc)
        if isinstance(n, Child):
            if not n.guarded:
                return await self.child(n)
            try:
                return await self.child(n)
            except Exception as exc:
                return caught(exc)
        if isinstance(n, Sleep):
            await durable.sleep(n.seconds)
            return None
        if isinstance(n, HookCreate):
            self.hooks[n.hid] = durable.create_hook(token=n.token)
            return None
        if isinstance(n, HookAwait):
            hook = self.hooks[n.hid]
            if n.timeout is None:
                return await hook
            return await asyncio.wait_for(hook, n.timeout)
        if isinstance(n, HookTimeout):
            try:
                return ["late", await asyncio.wait_for(self.hooks[n.hid], n.seconds)]
            except TimeoutError:
                return "timeout"
        if isinstance(n, HookDispose):
            self.hooks[n.hid].dispose()
            return None
        if isinstance(n, Write):
            await durable.get_writable(n.namespace).write(n.value)
            return None
        if isinstance(n, Close):
            await durable.get_writable(n.namespace).close()
            return None
        if isinstance(n, Random):
            if durable.random() < 0.5:
                return ["heads", await self.seq(n.then)]
            return ["tails", await self.seq(n.otherwise)]
        if isinstance(n, Patched):
            if self.patches == "old":
                return ["old", await self.seq(n.old)]
            if self.patches == "deprecated":
                durable.deprecate_patch(n.patch_id)
            if self.patches != "new" or durable.patched(n.patch_id):
                return ["new", await self.seq(n.new)]
            return ["old", await self.seq(n.old)]
        if isinstance(n, Parallel):
            return await self.parallel(n)
        raise TypeError(f"cannot interpret {n!r} here")

    async def child(self, n: Child) -> Any:
        workflow = CHILDREN[n.name]
        if n.handle:
            handle = await durable.start_child(workflow, n.key, n.arg, n.fails)
            return await handle
        return await workflow(n.key, n.arg, n.fails)

    async def parallel(self, n: Parallel) -> list[Any]:
        if n.kind == "gather":
            return list(await asyncio.gather(*(self.seq(b) for b in n.branches)))
        if n.kind == "taskgroup":
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.seq(b)) for b in n.branches]
            return [t.result() for t in tasks]
        if n.kind == "first":
            tasks = [asyncio.ensure_future(self.seq(b)) for b in n.branches]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending)
            return [t.result() for t in tasks]
        results: list[Any] = [None] * len(n.branches)

        async def into(i: int, branch: Seq) -> None:
            results[i] = await self.seq(branch)

        async with anyio.create_task_group() as group:
            for i, branch in enumerate(n.branches):
                group.start_soon(into, i, branch)
        return results


WORKFLOW_NAME = "prop.program"


def to_workflow(program: Program, trace: list[Any] | None = None, patches: PatchMode = "new") -> Workflow[Any, Any]:
    """The program as a workflow (not registered: pass it to ``Runtime(workflows=[...])``), its
    :class:`Patched` nodes as the version ``patches`` names."""
    if program.generator:

        async def program_generator() -> AsyncIterator[Any]:
            interp = Interpreter(trace, patches)
            for i, item in enumerate(program.body.items):
                if isinstance(item, Yield):
                    if trace is not None:
                        trace.append(item)
                    yield item.value
                else:
                    yield {"item": i, "result": await interp.node(item)}

        return Workflow(program_generator, name=WORKFLOW_NAME, serializer="json")

    async def program_workflow() -> Any:
        return await Interpreter(trace, patches).seq(program.body)

    return Workflow(program_workflow, name=WORKFLOW_NAME, serializer="json")


# -- generation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HookRef:
    """A placeholder for an await on "the slot-th hook created so far in this sequence"."""

    slot: int
    kind: Literal["await", "long", "timeout"]


@dataclass(frozen=True)
class _DisposeRef:
    """A placeholder for disposing "the slot-th hook created so far in this sequence"."""

    slot: int


@dataclass(frozen=True)
class _CloseRef:
    """A placeholder: a parallel branch holding one closes its stream as its last act."""


@dataclass
class _Counters:
    steps: int = 0
    hooks: int = 0
    branches: int = 0
    children: int = 0
    patches: int = 0


@st.composite
def _steps(draw: st.DrawFn) -> Step:
    fails = draw(st.sampled_from([0, 0, 0, 1, 2, EXHAUSTED]))
    return Step(
        key=0,
        name=draw(st.sampled_from(sorted(STEPS))),
        arg=draw(small_values),
        fails=fails,
        fatal=draw(st.booleans()) if fails < EXHAUSTED and draw(st.integers(0, 4)) == 0 else False,
        chunks=draw(st.sampled_from([0, 0, 1, 3])),
        guarded=draw(st.booleans()),
        raced=draw(st.integers(0, 5)) == 0,
    )


@st.composite
def _children(draw: st.DrawFn) -> Child:
    return Child(
        key=0, name=draw(st.sampled_from(sorted(CHILDREN))), arg=draw(small_values),
        fails=draw(st.integers(0, 3)) == 0, guarded=draw(st.booleans()), handle=draw(st.booleans()),
    )


def _items(depth: int, *, sequential: bool, top: bool, generator: bool) -> st.SearchStrategy[Any]:
    hook_ref = st.builds(_HookRef, st.integers(0, 3), st.sampled_from(["await", "await", "long", "timeout"]))
    options: list[st.SearchStrategy[Any]] = [
        _steps(), _steps(), _steps(), _children(),
        st.builds(Sleep, st.sampled_from([0.001, 0.005, 0.02])),
        st.builds(HookCreate, st.just(0), st.lists(small_values, max_size=3).map(tuple)),
        hook_ref, hook_ref,
        st.builds(_DisposeRef, st.integers(0, 3)),
        st.builds(Write, st.just(""), small_values),
        st.just(_CloseRef()),
    ]
    if depth > 0:
        sub = st.deferred(lambda: _seqs(depth - 1, sequential=False, top=False, generator=False))
        options.append(
            st.builds(Parallel, st.sampled_from(["gather", "taskgroup", "first", "anyio"]), st.lists(sub, min_size=1, max_size=3).map(tuple))
        )
        if sequential:
            same = st.deferred(lambda: _seqs(depth - 1, sequential=True, top=False, generator=False))
            options.append(st.builds(Random, same, same))
        # patched() is safe in parallel branches too: it never waits, and a fresh run always takes the patch.
        inner = st.deferred(lambda: _seqs(depth - 1, sequential=sequential, top=False, generator=False))
        options.append(st.builds(Patched, st.just(0), inner, inner))
    if top and generator:
        options.append(st.builds(Yield, small_values))
    return st.one_of(options)


def _seqs(depth: int, *, sequential: bool, top: bool, generator: bool) -> st.SearchStrategy[Seq]:
    size = st.lists(_items(depth, sequential=sequential, top=top, generator=generator), min_size=1 if top else 0, max_size=6 if top else 4)
    return size.map(lambda items: Seq(tuple(items)))


@st.composite
def programs(draw: st.DrawFn, *, generator: bool | None = None, max_depth: int = 2) -> Program:
    """A well-formed, schedule-independent program (see the module docstring for the rules)."""
    gen = draw(st.booleans()) if generator is None else generator
    raw = draw(_seqs(max_depth, sequential=True, top=True, generator=gen))
    counters = _Counters()
    body = _fix_seq(raw, counters, namespace="default", top=True, branch=False)
    return Program(body, gen)


def _fix_seq(seq: Seq, counters: _Counters, *, namespace: str, top: bool, branch: bool) -> Seq:
    """Number steps and hooks, resolve placeholders, and enforce the schedule-independence rules.

    ``branch``: the sequence is a whole parallel branch, the only writer of its namespace, so
    it may close that stream when it is done.
    """
    items: list[Any] = []
    local: list[int] = []  # hooks created in this sequence, by hid
    drawn_payloads: dict[int, tuple[Any, ...]] = {}
    awaits: dict[int, int] = {}
    timed_out: set[int] = set()
    disposed: set[int] = set()
    close = False
    last = len(seq.items) - 1
    for index, item in enumerate(seq.items):
        if isinstance(item, Step):
            counters.steps += 1
            guarded = item.guarded or (item.ends_in_failure and not (top and index == last))
            items.append(dataclasses.replace(item, key=counters.steps, guarded=guarded))
        elif isinstance(item, Child):
            counters.children += 1
            guarded = item.guarded or (item.ends_in_failure and not (top and index == last))
            items.append(dataclasses.replace(item, key=counters.children, guarded=guarded))
        elif isinstance(item, HookCreate):
            counters.hooks += 1
            hid = counters.hooks
            local.append(hid)
            drawn_payloads[hid] = item.payloads
            awaits[hid] = 0
            items.append(HookCreate(hid))
        elif isinstance(item, _HookRef):
            if not local or item.slot == 0:
                # No hook in scope (or "a fresh one"): create it right here, awaited at once.
                counters.hooks += 1
                local.append(counters.hooks)
                drawn_payloads[counters.hooks] = ()
                awaits[counters.hooks] = 0
                items.append(HookCreate(counters.hooks))
            hid = local[-1] if item.slot == 0 else local[item.slot % len(local)]
            if hid in timed_out or hid in disposed:
                continue
            if item.kind == "timeout":
                timed_out.add(hid)
                items.append(HookTimeout(hid))
            else:
                awaits[hid] += 1
                items.append(HookAwait(hid, LONG_TIMEOUT if item.kind == "long" else None))
        elif isinstance(item, _DisposeRef):
            live = [hid for hid in local if hid not in disposed]
            if live:  # later awaits of it are dropped, so it is disposed after its last payload
                hid = live[item.slot % len(live)]
                disposed.add(hid)
                items.append(HookDispose(hid))
        elif isinstance(item, _CloseRef):
            close = close or branch
        elif isinstance(item, Write):
            items.append(Write(namespace, item.value))
        elif isinstance(item, Random):
            items.append(
                Random(
                    _fix_seq(item.then, counters, namespace=namespace, top=False, branch=False),
                    _fix_seq(item.otherwise, counters, namespace=namespace, top=False, branch=False),
                )
            )
        elif isinstance(item, Patched):
            counters.patches += 1
            items.append(
                Patched(
                    counters.patches,
                    _fix_seq(item.new, counters, namespace=namespace, top=False, branch=False),
                    _fix_seq(item.old, counters, namespace=namespace, top=False, branch=False),
                )
            )
        elif isinstance(item, Parallel):
            branches = []
            for sub in item.branches:
                counters.branches += 1
                branches.append(_fix_seq(sub, counters, namespace=f"w{counters.branches}", top=False, branch=True))
            items.append(Parallel(item.kind, tuple(branches)))
        else:
            items.append(item)
    # Exactly as many payloads as plain awaits: every payload is taken, none is left over.
    fixed = []
    for item in items:
        if isinstance(item, HookCreate):
            drawn = drawn_payloads[item.hid]
            count = awaits[item.hid]
            payloads = tuple(drawn[:count]) + tuple({"payload": i} for i in range(len(drawn), count))
            item = HookCreate(item.hid, payloads)
        fixed.append(item)
    if close:
        fixed.append(Close(namespace))
    return Seq(tuple(fixed))


# -- printing as Python ------------------------------------------------------------------------------


def render(program: Program, patches: PatchMode = "new") -> str:
    """The program as the Python source of the workflow it stands for (its ``patches`` version)."""
    out = ["@durable.workflow", "async def program():"]
    lines = _Renderer(program.generator, patches).seq(program.body, 1, top=True)
    out.extend(lines or ["    pass"])
    return "\n".join(out)


class _Renderer:
    def __init__(self, generator: bool, patches: PatchMode = "new") -> None:
        self.generator = generator
        self.patches = patches
        self.counter = 0

    def var(self) -> str:
        self.counter += 1
        return f"r{self.counter}"

    def seq(self, seq: Seq, indent: int, *, top: bool = False) -> list[str]:
        pad = "    " * indent
        lines: list[str] = []
        names: list[str] = []
        for i, item in enumerate(seq.items):
            if isinstance(item, Yield):
                lines.append(f"{pad}yield {item.value!r}")
                continue
            name, body = self.node(item, indent)
            lines.extend(body)
            names.append(name)
            if top and self.generator:
                lines.append(f"{pad}yield {{'item': {i}, 'result': {name}}}")
        if not (top and self.generator):
            lines.append(f"{pad}return [{', '.join(names)}]")
        return lines

    def node(self, n: Any, indent: int) -> tuple[str, list[str]]:
        pad = "    " * indent
        r = self.var()
        if isinstance(n, Step):
            fn = n.name.replace("prop.", "")
            opts = "".join(
                f", {k}={v!r}" for k, v in (("fails", n.fails), ("fatal", n.fatal), ("chunks", n.chunks)) if v
            )
            call = f"await {fn}({n.key}, {n.arg!r}{opts})"
            if n.raced:
                call = f"await asyncio.wait_for({fn}({n.key}, {n.arg!r}{opts}), {LONG_TIMEOUT!r})"
            if n.guarded:
                return r, [f"{pad}try:", f"{pad}    {r} = {call}", f"{pad}except Exception as e:", f"{pad}    {r} = caught(e)"]
            return r, [f"{pad}{r} = {call}"]
        if isinstance(n, Child):
            fn = n.name.replace("prop.", "")
            call = f"await {fn}({n.key}, {n.arg!r}, fails={n.fails!r})"
            if n.handle:
                call = f"await (await durable.start_child({fn}, {n.key}, {n.arg!r}, {n.fails!r}))"
            if n.guarded:
                return r, [f"{pad}try:", f"{pad}    {r} = {call}", f"{pad}except Exception as e:", f"{pad}    {r} = caught(e)"]
            return r, [f"{pad}{r} = {call}"]
        if isinstance(n, Sleep):
            return "None", [f"{pad}await durable.sleep({n.seconds!r})"]
        if isinstance(n, HookCreate):
            return "None", [f"{pad}h{n.hid} = durable.create_hook(token={n.token!r})  # resumed with {list(n.payloads)!r}"]
        if isinstance(n, HookAwait):
            if n.timeout is None:
                return r, [f"{pad}{r} = await h{n.hid}"]
            return r, [f"{pad}{r} = await asyncio.wait_for(h{n.hid}, {n.timeout!r})"]
        if isinstance(n, HookTimeout):
            return r, [
                f"{pad}try:", f"{pad}    {r} = ['late', await asyncio.wait_for(h{n.hid}, {n.seconds!r})]",
                f"{pad}except TimeoutError:", f"{pad}    {r} = 'timeout'",
            ]
        if isinstance(n, HookDispose):
            return "None", [f"{pad}h{n.hid}.dispose()"]
        if isinstance(n, Write):
            return "None", [f"{pad}await durable.get_writable({n.namespace!r}).write({n.value!r})"]
        if isinstance(n, Close):
            return "None", [f"{pad}await durable.get_writable({n.namespace!r}).close()"]
        if isinstance(n, Random):
            return r, [
                f"{pad}if durable.random() < 0.5:",
                *self._inline(n.then, indent + 1, r, "heads"),
                f"{pad}else:",
                *self._inline(n.otherwise, indent + 1, r, "tails"),
            ]
        if isinstance(n, Patched):
            if self.patches == "old":
                return r, self._inline(n.old, indent, r, "old")
            head = [f"{pad}durable.deprecate_patch({n.patch_id!r})"] if self.patches == "deprecated" else []
            if self.patches != "new":
                return r, [*head, *self._inline(n.new, indent, r, "new")]
            return r, [
                f"{pad}if durable.patched({n.patch_id!r}):",
                *self._inline(n.new, indent + 1, r, "new"),
                f"{pad}else:",
                *self._inline(n.old, indent + 1, r, "old"),
            ]
        if isinstance(n, Parallel):
            lines: list[str] = []
            fns = []
            for branch in n.branches:
                self.counter += 1
                fn = f"branch{self.counter}"
                fns.append(fn)
                lines.append(f"{pad}async def {fn}():")
                lines.extend(self.seq(branch, indent + 1))
            calls = ", ".join(f"{f}()" for f in fns)
            if n.kind == "gather":
                lines.append(f"{pad}{r} = list(await asyncio.gather({calls}))")
            elif n.kind == "taskgroup":
                lines.append(f"{pad}async with asyncio.TaskGroup() as tg:")
                lines.append(f"{pad}    tasks = [tg.create_task(c) for c in ({calls},)]")
                lines.append(f"{pad}{r} = [t.result() for t in tasks]")
            elif n.kind == "first":
                lines.append(f"{pad}tasks = [asyncio.ensure_future(c) for c in ({calls},)]")
                lines.append(f"{pad}_, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)")
                lines.append(f"{pad}if pending: await asyncio.wait(pending)")
                lines.append(f"{pad}{r} = [t.result() for t in tasks]")
            else:
                lines.append(f"{pad}{r} = await anyio_all({calls})  # an anyio task group")
            return r, lines
        raise TypeError(n)

    def _inline(self, seq: Seq, indent: int, target: str, label: str) -> list[str]:
        pad = "    " * indent
        lines = [f"{pad}async def {label}():", *self.seq(seq, indent + 1)]
        lines.append(f"{pad}{target} = [{label!r}, await {label}()]")
        return lines


def mutate_seq_items(program: Program, path: Sequence[int], new_items: tuple[Any, ...]) -> Program:
    """A copy of ``program`` whose sequence at ``path`` (see :func:`sequences`) holds ``new_items``."""
    return Program(_replace_seq(program.body, list(path), new_items), program.generator)


def sequences(program: Program) -> list[tuple[tuple[int, ...], Seq]]:
    """Every sequence of the program with its path: item indices, then 0/1 (Random) or a branch index."""
    out: list[tuple[tuple[int, ...], Seq]] = []

    def visit(seq: Seq, path: tuple[int, ...]) -> None:
        out.append((path, seq))
        for i, item in enumerate(seq.items):
            if isinstance(item, Random):
                visit(item.then, (*path, i, 0))
                visit(item.otherwise, (*path, i, 1))
            elif isinstance(item, Patched):
                visit(item.new, (*path, i, 0))
                visit(item.old, (*path, i, 1))
            elif isinstance(item, Parallel):
                for b, branch in enumerate(item.branches):
                    visit(branch, (*path, i, b))

    visit(program.body, ())
    return out


def _replace_seq(seq: Seq, path: list[int], new_items: tuple[Any, ...]) -> Seq:
    if not path:
        return Seq(new_items)
    index, sub, rest = path[0], path[1], path[2:]
    items = list(seq.items)
    item = items[index]
    if isinstance(item, Random):
        if sub == 0:
            items[index] = Random(_replace_seq(item.then, rest, new_items), item.otherwise)
        else:
            items[index] = Random(item.then, _replace_seq(item.otherwise, rest, new_items))
    elif isinstance(item, Patched):
        if sub == 0:
            items[index] = Patched(item.pid, _replace_seq(item.new, rest, new_items), item.old)
        else:
            items[index] = Patched(item.pid, item.new, _replace_seq(item.old, rest, new_items))
    else:
        branches = list(item.branches)
        branches[sub] = _replace_seq(branches[sub], rest, new_items)
        items[index] = Parallel(item.kind, tuple(branches))
    return Seq(tuple(items))

