"""The package's layers: a module imports only from its own layer or below, and no import circle exists.

Imports are read with ``ast`` from every module of ``src/durable`` -- including those under
``TYPE_CHECKING`` and inside functions, which a runtime check would miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

SRC = ROOT / "src"

# Lowest first. A module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("durable._core",),
    ("durable._workflow", "durable.stores"),
    ("durable._engine",),
    ("durable._client",),
    ("durable._worker",),
    ("durable._api", "durable._typed_hooks"),
    ("durable.web", "durable.notebook", "durable.testing"),
    ("durable",),  # the public API: re-exports
    ("durable._cli", "durable._demo", "durable.__main__"),  # programs built on the public API
]


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "durable").rglob("*.py"))}


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every durable module ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "durable")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "durable":
                continue
            for alias in node.names:
                # ``from . import codec`` imports the module ``codec``; ``from .x import y`` the module ``x``.
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_no_module_imports_from_a_higher_layer() -> None:
    """Lower layers never import higher ones, not even for type checking or inside a function."""
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_there_is_no_import_circle() -> None:
    """No module reaches itself through its imports (also within one layer)."""
    deps = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(deps.get(node, ())):
            if state.get(target) == 1:
                circles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(deps):
        if name not in state:
            visit(name, [name])
    assert circles == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..stores._base import Store", {"durable.stores._base"}),
        ("if TYPE_CHECKING:\n    from .._worker.runtime import Runtime", {"durable._worker.runtime"}),
        ("def f():\n    from .. import notebook", {"durable.notebook"}),
    ],
)
def test_the_check_sees_every_kind_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    """Imports at module level, under TYPE_CHECKING and inside functions are all found (a check that cannot miss them)."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imports_of("durable._client.probe", path, set(modules())) == expected
