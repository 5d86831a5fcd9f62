"""Names of workflows, steps and typed hooks: unique by default, explicit ones never shared silently."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import durable
from durable._core import codec
from durable._core.registry import Registry, default_name
from durable._workflow.step import steps as registered_steps
from durable._workflow.workflow import workflows as registered_workflows
from durable.stores import store_from_url
from durable.stores._base import NewRun

pytestmark = pytest.mark.anyio


def _module(name: str, source: str) -> types.ModuleType:
    """A real module named ``name`` whose code is ``source`` (as if imported from a file)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), module.__dict__)
    return module


FLOW = """
import durable

@durable.step
async def work(x: int) -> str:
    return f"{__name__}:{x}"

@durable.workflow
async def flow(x: int) -> str:
    return await work(x)
"""


async def test_same_function_names_in_two_modules_are_two_workflows(store_url: str) -> None:
    """flow/work in two modules no longer collide: starting m1.flow runs m1's code, m2.flow m2's."""
    m1, m2 = _module("names_one", FLOW), _module("names_two", FLOW)
    assert (m1.flow.name, m1.work.name) == ("names_one:flow", "names_one:work")
    assert m2.flow.name == "names_two:flow"
    async with durable.Runtime(store_url, workflows=[m1.flow, m2.flow]) as rt:
        assert await (await rt.start(m1.flow, 1)).result(timeout=20) == "names_one:1"
        assert await (await rt.start(m2.flow, 2)).result(timeout=20) == "names_two:2"


def test_an_explicit_name_another_module_has_is_refused_at_definition() -> None:
    """A second module taking the same explicit name raises NameConflict naming both definitions."""
    _module("names_first", '@__import__("durable").step(name="names.shared")\nasync def a() -> None: ...\n')
    with pytest.raises(durable.NameConflict) as caught:
        _module("names_second", '@__import__("durable").step(name="names.shared")\nasync def b() -> None: ...\n')
    assert "names_first" in str(caught.value) and "names_second" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_the_same_module_redefining_its_own_name_replaces_it() -> None:
    """A notebook cell or a module run again re-registers its definitions (no error, the new code wins)."""
    first = _module("names_cell", '@__import__("durable").workflow(name="names.cell")\nasync def f() -> int:\n    return 1\n')
    again = _module("names_cell", '@__import__("durable").workflow(name="names.cell")\nasync def f() -> int:\n    return 2\n')
    assert registered_workflows["names.cell"] is again.f is not first.f


def test_a_script_names_its_definitions_as_importing_it_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function in __main__ of ``python app.py`` is app:fn, so a worker importing ``app`` finds it."""
    main = types.ModuleType("__main__")
    main.__file__ = str(tmp_path / "checkout_app.py")
    monkeypatch.setitem(sys.modules, "__main__", main)

    assert default_name(_fn("__main__", "fn")) == "checkout_app:fn"


async def test_runs_recorded_under_a_bare_name_still_resolve(tmp_path: Path) -> None:
    """A run stored before names were qualified (workflow 'flow', step 'work') is executed by names_legacy:flow."""
    legacy = _module("names_legacy", FLOW.replace("async def flow", "async def legacy_flow").replace("work(", "legacy_work("))
    url = f"sqlite:///{tmp_path / 'legacy.db'}?synchronous=normal"
    async with store_from_url(url) as store:
        args = codec.encode({"args": [7], "kwargs": {}})
        await store.create_run(NewRun("legacy-1", "legacy_flow", args, "seed", None, 0.0))
    flow: durable.Workflow[..., Any] = legacy.legacy_flow
    assert registered_workflows.resolve("legacy_flow") is flow
    assert registered_steps.resolve("legacy_work") is legacy.legacy_work
    async with durable.Runtime(url, workflows=[flow]) as rt:
        run = await rt.get_run("legacy-1")
        assert await run.result(timeout=20) == "names_legacy:7"


def test_a_bare_name_that_two_definitions_share_resolves_to_neither() -> None:
    """An ambiguous bare name resolves to nothing, never to an arbitrary one of them."""
    table: Registry[Any] = Registry("thing")
    table.add("a:same", "A", _fn("a", "same"), explicit=False)
    table.add("b:same", "B", _fn("b", "same"), explicit=False)
    table.add("c:only", "C", _fn("c", "only"), explicit=False)
    assert table.resolve("same") is None and table.resolve("only") == "C"
    assert table.claimable() == ["a:same", "b:same", "c:only", "only"]


def _fn(module: str, qualname: str) -> Any:
    def f() -> None: ...

    f.__module__, f.__qualname__ = module, qualname
    return f
