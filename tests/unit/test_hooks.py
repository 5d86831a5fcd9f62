"""Hooks and webhooks on every store: delivery order, buffering, conflicts, validation, timeouts."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import random
import socket
from typing import Literal
from urllib.parse import quote

import anyio
import pydantic
import pytest

import durable
from durable.testing import check_replay
from tests.helpers import wait_for_hook

pytestmark = pytest.mark.anyio


@durable.workflow
async def collector(token: str) -> dict[str, object]:
    hook = durable.create_hook(token=token)
    first = await hook
    rest = []
    async for payload in hook:
        rest.append(payload)
        if payload.get("done"):
            break
    hook.dispose()
    return {"first": first, "rest": rest}


async def test_payloads_arrive_once_each_in_order(runtime: durable.Runtime) -> None:
    """Three resumes reach the workflow in the order accepted, including ones sent before it awaited."""
    run = await runtime.start(collector, "t-order")
    await wait_for_hook(runtime, "t-order")
    result = await runtime.resume_hook("t-order", {"n": 1})
    assert (result.run_id, result.hook_id, result.token) == (run.run_id, "hook_1", "t-order")
    await runtime.resume_hook("t-order", {"n": 2})
    await runtime.resume_hook("t-order", {"n": 3, "done": True})
    assert await run.result(timeout=20) == {"first": {"n": 1}, "rest": [{"n": 2}, {"n": 3, "done": True}]}
    with pytest.raises(durable.HookNotFound, match="t-order"):
        await runtime.resume_hook("t-order", {"late": True})  # disposed, and the run is over
    assert (await check_replay(run)).status == "completed"


async def test_unknown_token_raises_hook_not_found(runtime: durable.Runtime) -> None:
    """Resuming a token that no live hook holds raises HookNotFound and records nothing."""
    with pytest.raises(durable.HookNotFound):
        await runtime.resume_hook("nobody-has-this", {"x": 1})


@durable.workflow
async def conflicted(token: str) -> str:
    hook = durable.create_hook(token=token)
    try:
        await hook
    except durable.HookConflictError as exc:
        return f"conflict on {exc.token}"
    return "received"


async def test_a_second_live_hook_with_the_same_token_conflicts(runtime: durable.Runtime) -> None:
    """The second run creating a live token fails in the workflow with HookConflictError; the first keeps it."""
    first = await runtime.start(conflicted, "shared")
    await wait_for_hook(runtime, "shared")
    second = await runtime.start(conflicted, "shared")
    assert await second.result(timeout=20) == "conflict on shared"
    await runtime.resume_hook("shared", "hello")
    assert await first.result(timeout=20) == "received"
    assert any(e.kind == "hook_conflict" for e in await second.events())


@durable.workflow
async def with_default_token() -> str:
    hook = durable.create_hook()
    await durable.get_writable("tokens").write(hook.token)
    return str(await hook)


async def test_default_tokens_are_random_unguessable_and_stable_on_replay(runtime: durable.Runtime) -> None:
    """Default tokens carry >= 128 random bits, differ between runs, and replay to the same value."""
    runs = [await runtime.start(with_default_token) for _ in range(2)]
    tokens = []
    for run in runs:
        token = await anext(aiter(run.stream("tokens")))
        tokens.append(token)
        await runtime.resume_hook(token, "ok")
        assert await run.result(timeout=20) == "ok"
        assert (await check_replay(run)).status == "completed"
    assert tokens[0] != tokens[1]
    assert all(len(t) >= 22 for t in tokens)  # 24 random bytes, base64url


async def test_default_tokens_come_from_a_csprng_and_replays_read_them_from_the_log(runtime: durable.Runtime) -> None:
    """A default token is not derived from the run's seed (whoever sees some of a run's webhook URLs
    cannot compute the others): two instances with the same seed draw different tokens, none equals
    what the seeded generator gives, and a cold replay (the live instance evicted) reads the token
    back from ``hook_created`` and goes on.

    Before: tokens came from ``random.Random(f"{seed}:ids")`` (Mersenne Twister), whose state 624
    outputs recover."""
    from durable._core.events import Event, EventKind
    from durable._engine.instance import WorkflowInstance
    from tests.helpers import encode_args

    seed = "0123456789abcdef"
    seeded = random.Random(f"{seed}:ids")
    predictable = base64.urlsafe_b64encode(seeded.getrandbits(192).to_bytes(24, "big")).decode()
    drawn = []
    for _ in range(2):
        instance = WorkflowInstance(with_default_token, run_id="run_t", input=encode_args(), seed=seed)
        outcome = instance.advance([Event("run_t", 2, EventKind.RUN_STARTED, None, 1.0)])
        drawn.append(next(c.token for c in outcome.commands if hasattr(c, "token")))
        instance.close()
    assert drawn[0] != drawn[1] and predictable not in drawn
    assert all(len(base64.urlsafe_b64decode(t)) == 24 for t in drawn)  # 192 bits

    run = await runtime.start(with_default_token)
    token = await anext(aiter(run.stream("tokens")))
    [created] = [e for e in await run.events() if e.kind == "hook_created"]
    assert created.name == token
    runtime.cache.clear()  # the next delivery replays cold: the token must come from the log
    await runtime.resume_hook(token, "ok")
    assert await run.result(timeout=20) == "ok"
    assert runtime.stats["cold_replays"] >= 1
    assert (await check_replay(run)).status == "completed"


@durable.workflow
async def approval_with_timeout(token: str, seconds: float) -> str:
    hook = durable.create_hook(token=token)
    try:
        decision = await asyncio.wait_for(hook, timeout=seconds)
    except TimeoutError:
        decision = None
    if decision is None:
        # The lost race must not swallow the next payload.
        second = await hook
        return f"timed out, then {second}"
    return f"decided {decision}"


async def test_a_timed_out_hook_await_does_not_swallow_the_next_payload(runtime: durable.Runtime) -> None:
    """wait_for(hook, timeout) times out durably; the next payload goes to the next awaiter, and it replays."""
    run = await runtime.start(approval_with_timeout, "slow-approver", 0.2)
    await wait_for_hook(runtime, "slow-approver")
    await anyio.sleep(0.5)
    await runtime.resume_hook("slow-approver", "yes")
    assert await run.result(timeout=20) == "timed out, then yes"
    assert (await check_replay(run)).result == "timed out, then yes"
    fast = await runtime.start(approval_with_timeout, "fast-approver", 30)
    await wait_for_hook(runtime, "fast-approver")
    await runtime.resume_hook("fast-approver", "no")
    assert await fast.result(timeout=20) == "decided no"
    kinds = [e.kind for e in await fast.events()]
    assert "wait_cancelled" in kinds  # the losing timer was cancelled durably


@dataclasses.dataclass
class Approval:
    approved: bool
    by: str
    note: str = ""


class Refund(pydantic.BaseModel):
    amount: int
    currency: str


def positive(value: object) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{value!r} is not a positive int")
    return value


ApprovalHook: durable.HookDefinition[Approval] = durable.define_hook(schema=Approval)
RefundHook: durable.HookDefinition[Refund] = durable.define_hook(schema=Refund)
CountHook: durable.HookDefinition[int] = durable.define_hook(schema=positive, name="count")


@durable.workflow
async def typed_hooks() -> list[object]:
    approval = await ApprovalHook.create(token="typed-approval")
    refund = await RefundHook.create(token="typed-refund")
    count = await CountHook.create(token="typed-count")
    assert isinstance(approval, Approval) and isinstance(refund, Refund)
    return [approval, refund, count]


async def test_typed_hooks_validate_and_reject_without_recording(runtime: durable.Runtime) -> None:
    """define_hook validates with a dataclass, a pydantic model or a callable; bad payloads append nothing."""
    run = await runtime.start(typed_hooks)
    await wait_for_hook(runtime, "typed-approval")
    before = len(await run.events())
    with pytest.raises(durable.HookValidationError) as info:
        await ApprovalHook.resume("typed-approval", {"approved": "yes", "extra": 1})
    assert sorted(info.value.problems) == ["approved: expected bool, got str", "by: field required", "extra: unknown field"]
    with pytest.raises(durable.HookValidationError):
        await runtime.resume_hook("typed-approval", {"approved": 1})  # the untyped path validates too
    assert len(await run.events()) == before
    await ApprovalHook.resume("typed-approval", {"approved": True, "by": "ann"})
    await wait_for_hook(runtime, "typed-refund")
    with pytest.raises(durable.HookValidationError, match="amount"):
        await RefundHook.resume("typed-refund", {"amount": "lots", "currency": "EUR"})
    await RefundHook.resume("typed-refund", {"amount": 5, "currency": "EUR"})
    await wait_for_hook(runtime, "typed-count")
    with pytest.raises(durable.HookValidationError, match="not a positive int"):
        await CountHook.resume("typed-count", -3)
    await CountHook.resume("typed-count", 7)
    assert await run.result(timeout=20) == [Approval(True, "ann"), Refund(amount=5, currency="EUR"), 7]


async def test_hook_payloads_must_be_codec_values(runtime: durable.Runtime) -> None:
    """A payload the JSON codec cannot encode is refused with SerializationError before anything is recorded."""
    run = await runtime.start(collector, "t-bad")
    await wait_for_hook(runtime, "t-bad")
    with socket.socket() as sock, pytest.raises(durable.SerializationError, match="socket"):
        await runtime.resume_hook("t-bad", {"conn": sock})
    assert not any(e.kind == "hook_received" for e in await run.events())
    await run.cancel()


@durable.step
async def answer(request: durable.Request) -> None:
    await request.respond_with(durable.Response(json={"echo": request.json()}, status=201))


@durable.workflow
async def webhooks() -> dict[str, object]:
    default = durable.create_webhook(token="wh-default")
    static = durable.create_webhook(token="wh-static", respond_with=durable.Response(text="thanks", status=200))
    manual = durable.create_webhook(token="wh-manual", respond_with="manual")
    assert default.url.endswith("/.well-known/workflow/v1/webhook/wh-default")
    first = await default
    second = await static
    third = await manual
    await answer(third)
    return {
        "first": [first.method, first.query, first.headers.get("x-sig"), first.json()],
        "second": second.form(),
        "third": third.text(),
    }


@durable.workflow
async def webhook_url(token: str) -> str:
    return durable.create_webhook(token=token).url


async def test_webhook_urls_are_absolute_with_a_base_url(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url (or DURABLE_BASE_URL) makes webhook.url absolute; without one it is the path; a relative base is refused."""
    monkeypatch.delenv("DURABLE_BASE_URL", raising=False)
    path = "/.well-known/workflow/v1/webhook/"
    cases = [("https://hooks.example/app/", None, "https://hooks.example/app" + path), (None, None, path),
             (None, "http://10.0.0.5:8000", "http://10.0.0.5:8000" + path)]
    for base_url, env, prefix in cases:
        if env:
            monkeypatch.setenv("DURABLE_BASE_URL", env)
        async with durable.Runtime(store_url, base_url=base_url, poll_interval=0.2) as rt:
            token = f"wh url/{prefix}"
            run = await rt.start(webhook_url, token)
            assert await run.result(timeout=20) == prefix + quote(token, safe="")
    for bad in ["hooks.example", "/app", "ftp://hooks.example", "https://hooks.example/?x=1"]:
        with pytest.raises(ValueError, match="base_url must be an absolute http"):
            durable.Runtime("memory://", base_url=bad)
    monkeypatch.setenv("DURABLE_BASE_URL", "hooks.example")
    with pytest.raises(ValueError, match="DURABLE_BASE_URL must be an absolute http"):
        durable.Runtime("memory://")


async def test_webhooks_deliver_requests_and_answer_default_static_and_manual(runtime: durable.Runtime) -> None:
    """Webhooks answer 202 by default, a static response, or the response a step sends in manual mode."""
    run = await runtime.start(webhooks)
    await wait_for_hook(runtime, "wh-default")
    request = durable.Request("POST", "http://x/hook?a=1&a=2", {"x-sig": "s1"}, [("a", "1"), ("a", "2")], b'{"k": 1}')
    response = await runtime.resume_webhook("wh-default", request)
    assert response.status == 202
    form = durable.Request("POST", "http://x/", {}, [], b"name=ann&age=3")
    response = await runtime.resume_webhook("wh-static", form)
    assert (response.status, response.body) == (200, b"thanks")
    manual = durable.Request("PUT", "http://x/", {}, [], b'{"q": 42}')
    response = await runtime.resume_webhook("wh-manual", manual, timeout=20)
    assert (response.status, response.body) == (201, b'{"echo":{"q":42}}')
    assert await run.result(timeout=20) == {
        "first": ["POST", [("a", "1"), ("a", "2")], "s1", {"k": 1}],
        "second": {"name": "ann", "age": "3"},
        "third": '{"q": 42}',
    }


async def test_plain_hooks_are_not_reachable_as_webhooks(runtime: durable.Runtime) -> None:
    """resume_webhook refuses a token held by a plain hook, so HTTP cannot reach internal hooks."""
    run = await runtime.start(collector, "t-internal")
    await wait_for_hook(runtime, "t-internal")
    with pytest.raises(durable.HookNotFound):
        await runtime.resume_webhook("t-internal", durable.Request("POST", "http://x/", {}, [], b"{}"))
    await run.cancel()


@durable.workflow
async def ignores_manual() -> str:
    await durable.create_webhook(token="wh-silent", respond_with="manual")
    await durable.sleep("1h")  # busy with something else: it never answers
    return "never answered"


async def test_manual_webhook_without_an_answer_times_out(runtime: durable.Runtime) -> None:
    """A manual webhook whose workflow does not respond in time raises WebhookResponseTimeout to the caller."""
    run = await runtime.start(ignores_manual)
    await wait_for_hook(runtime, "wh-silent")
    with pytest.raises(durable.WebhookResponseTimeout, match=r"within 0\.3s"):
        await runtime.resume_webhook("wh-silent", durable.Request("POST", "http://x/", {}, [], b""), timeout=0.3)
    await run.cancel()


# Regressions found by a review of the core: each section names the bug its test pinned until the fix.

# -- typed hooks: a predicate's False is taken as the payload; converters are applied twice --------


def has_ok_key(value: object) -> bool:
    """A predicate-style validator: True when valid, False when not."""
    return isinstance(value, dict) and "ok" in value


PredicateHook: durable.HookDefinition[object] = durable.define_hook(schema=has_ok_key, name="review.predicate")


@durable.workflow(name="review.awaits_predicate_hook")
async def awaits_predicate_hook() -> object:
    return await PredicateHook.create(token="review-predicate")


async def test_a_validator_returning_false_rejects_the_payload(runtime: durable.Runtime) -> None:
    """A callable schema that returns False rejects the payload with HookValidationError and records nothing."""
    run = await runtime.start(awaits_predicate_hook)
    await wait_for_hook(runtime, "review-predicate")
    try:
        with pytest.raises(durable.HookValidationError):
            await PredicateHook.resume("review-predicate", {"nope": 1})
        assert not any(e.kind == "hook_received" for e in await run.events())
    finally:
        await run.cancel()


@dataclasses.dataclass
class Point:
    x: int
    y: int


def to_point(value: object) -> Point:
    """A converting validator: a mapping in, a Point out."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return Point(int(value["x"]), int(value["y"]))


PointHook: durable.HookDefinition[Point] = durable.define_hook(schema=to_point, name="review.point")


@durable.workflow(name="review.awaits_point")
async def awaits_point() -> Point:
    return await PointHook.create(token="review-point")


async def test_a_converting_validator_is_applied_once(runtime: durable.Runtime) -> None:
    """define_hook(schema=converter).resume() converts the payload once and the workflow receives the converted value."""
    run = await runtime.start(awaits_point)
    await wait_for_hook(runtime, "review-point")
    try:
        await PointHook.resume("review-point", {"x": "1", "y": 2})
        assert await run.result(timeout=10) == Point(1, 2)
    finally:
        await run.cancel()


# -- a plain hook whose user metadata has a "webhook" key is reachable through the webhook URL -----


@durable.workflow(name="review.plain_hook_with_metadata")
async def plain_hook_with_metadata() -> object:
    hook = durable.create_hook(token="review-internal", metadata={"webhook": "posted to #approvals"})
    return await hook


async def test_user_metadata_cannot_make_a_plain_hook_a_webhook(runtime: durable.Runtime) -> None:
    """A plain hook stays unreachable over HTTP whatever keys its user metadata has."""
    run = await runtime.start(plain_hook_with_metadata)
    await wait_for_hook(runtime, "review-internal")
    try:
        with pytest.raises(durable.HookNotFound):
            await runtime.resume_webhook(
                "review-internal", durable.Request("POST", "http://x/", {}, [], b"{}")
            )
    finally:
        await run.cancel()


# -- a manual webhook whose run ends without answering reports a timeout that never happened -------


@durable.workflow(name="review.ends_without_answering")
async def ends_without_answering() -> str:
    await durable.create_webhook(token="review-unanswered", respond_with="manual")
    return "done, never answered"


async def test_a_run_ending_without_a_webhook_answer_says_so(runtime: durable.Runtime) -> None:
    """When the run ends without answering a manual webhook, the error says the run ended rather than claiming a timeout."""
    run = await runtime.start(ends_without_answering)
    await wait_for_hook(runtime, "review-unanswered")
    request = durable.Request("POST", "http://x/", {}, [], b"")
    with pytest.raises(durable.DurableError) as info:
        await runtime.resume_webhook("review-unanswered", request, timeout=30)
    assert await run.status() == "completed"
    assert "within 30s" not in str(info.value)
    assert "ended" in str(info.value) or "completed" in str(info.value)


# -- a token re-bound between lookup and resume reaches the wrong hook -----------------------------


@durable.workflow(name="review.webhook_then_done")
async def webhook_then_done() -> object:
    request = await durable.create_webhook(token="review-rebound")
    return request.method


@durable.workflow(name="review.plain_hook_on_rebound_token")
async def plain_hook_on_rebound_token() -> object:
    return await durable.create_hook(token="review-rebound")


async def test_a_token_rebound_after_lookup_does_not_reach_the_new_hook(
    runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume_webhook looks the token up, then appends: if the token moved to a plain hook in between,
    the request must not reach that hook (plain hooks are never reachable over HTTP)."""
    first = await runtime.start(webhook_then_done)
    await wait_for_hook(runtime, "review-rebound")
    stale = await runtime.store.get_hook("review-rebound")  # what a slow resumer looked up
    await runtime.resume_webhook("review-rebound", durable.Request("POST", "http://x/", {}, [], b""))
    assert await first.result(timeout=10) == "POST"  # the run ended; its token is free again

    second = await runtime.start(plain_hook_on_rebound_token)
    try:
        await wait_for_hook(runtime, "review-rebound")

        async def looked_up_before_the_rebind(token: str) -> object:
            return stale

        monkeypatch.setattr(runtime.store, "get_hook", looked_up_before_the_rebind)
        with pytest.raises(durable.HookNotFound):
            await runtime.resume_webhook("review-rebound", durable.Request("POST", "http://x/", {}, [], b"{}"))
        with pytest.raises(durable.HookNotFound):
            await runtime.resume_hook("review-rebound", {"validated for": "the old hook"})
        assert not [e for e in await second.events() if e.kind == durable.EventKind.HOOK_RECEIVED]
    finally:
        await second.cancel()


# -- typed hooks built on dataclasses (found by a review of the public API's edges) ------------------


@dataclasses.dataclass
class Reviewer:
    name: str
    level: int = 1


@dataclasses.dataclass
class Review:
    tags: list[str]
    reviewer: Reviewer | None = None
    verdict: Literal["approve", "reject"] = "approve"
    score: float = 0.0
    marks: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    point: tuple[int, int] = (0, 0)


review_hook: durable.HookDefinition[Review] = durable.define_hook(schema=Review, name="edges-review")


def test_dataclass_schemas_convert_nested_json_and_check_element_types() -> None:
    value = review_hook.validate(
        {"tags": ["a"], "reviewer": {"name": "ada"}, "score": 2, "marks": {"k": [1, 2]}, "point": [3, 4]}
    )
    assert value == Review(["a"], Reviewer("ada"), "approve", 2.0, {"k": [1, 2]}, (3, 4))
    assert type(value.score) is float
    cases = {
        "tags[1]: expected str, got int": {"tags": ["a", 2]},
        "reviewer.level: expected int, got str": {"tags": [], "reviewer": {"name": "x", "level": "1"}},
        "reviewer.name: field required": {"tags": [], "reviewer": {}},
        "verdict: expected one of 'approve', 'reject', got 'maybe'": {"tags": [], "verdict": "maybe"},
        "point: expected 2 items, got 1": {"tags": [], "point": [1]},
        "marks.k[0]: expected int, got str": {"tags": [], "marks": {"k": ["x"]}},
        "(root): expected an object with the fields of Review, got list": [],
    }
    for problem, payload in cases.items():
        with pytest.raises(durable.HookValidationError) as info:
            review_hook.validate(payload)
        assert problem in info.value.problems, (payload, info.value.problems)


def test_schemas_that_cannot_validate_are_refused_when_defined() -> None:
    for schema in [5, None, "Review"]:
        with pytest.raises(TypeError, match="hook schema must be"):
            durable.define_hook(schema=schema, name=f"edges-bad-{schema}")

    Local = dataclasses.make_dataclass("Local", [("value", "Undefined")])  # a field type no one can resolve
    with pytest.raises(TypeError, match="cannot resolve the field types of"):
        durable.define_hook(schema=Local, name="edges-local")
