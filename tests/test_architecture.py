"""The shape of ``flue/``: no import cycles, and every import goes down the layers.

The layers, top to bottom (``LAYERS``; a module belongs to the layer of its longest
matching prefix, so a few modules are placed by name where their content is lower than
their package, e.g. ``flue.harness.errors`` holds error types the models share)::

    kit         the public facade ``flue``, ``flue.__main__``, ``flue.testing``
    cli         flue.cli, flue.build
    server      flue.server, flue.client, the request-side channel toolkit
    runtime     flue.runtime
    harness     flue.harness, flue.agent
    project     flue.project (config + discovery + the registries its plugins filled), flue.preflight,
                flue.channels.build
    plugins     flue.plugins, flue.hookspecs, flue.blueprints, the built-in plugins
                (flue.persistence.plugin, flue.sandbox.plugin, flue.builtin_tools.plugin, flue.models.offline),
                flue.registries (what the collecting hooks returned, once per project)
    components  flue.models, flue.sandbox, flue.tools, flue.builtin_tools, flue.instance,
                flue.channels.keys / rules
    persistence flue.persistence (the contract and the SQLite adapter)
    events      flue.events (the vocabulary: the queue appends admission and settlement events)
    config      flue.config, flue.authoring, flue.redaction
    foundation  flue.clock, flue.errors, flue.ids, flue.strict_json, flue.usage, flue.version,
                flue.diagnostics, flue.stream_paths, flue.harness.errors, flue.models.endpoints

A module may import its own layer and the layers below it. This is ``DESIGN.md``'s
diagram (CLI -> project -> plugins -> runtime -> harness -> models/sandbox/tools -> events
-> persistence) read as imports, with two corrections to what the code is: the runtime and
the harness *run* a loaded project, so they sit above it and import the ``Project`` value
(the project, and the plugin manager below it, know nothing of what runs them); and the
events sit below persistence, whose queue appends the admission and settlement events.

The rules, by kind of import:

- **module-level imports** (run when the module is imported, including those under
  ``if``/``try`` at module level): never upward, and acyclic;
- **function-level imports** (lazy, inside a ``def``): never upward unless listed in
  ``LAZY_UPWARD`` with the reason; together with the module-level ones they must be
  acyclic (a lazy import hides a cycle from Python, not from a reader);
- **``if TYPE_CHECKING:`` imports** (annotations only, no run-time coupling): exempt from
  both rules, but a new upward one must be added to ``TYPE_ONLY_UPWARD`` on purpose, so
  the list only shrinks (a protocol in the lower layer is the way to remove an entry).

Imports of the root package ``flue`` (``from flue import tool``) count as imports of the
kit; inside ``flue/`` import the defining module instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

FLUE = Path(__file__).resolve().parent.parent / "flue"

#: Top to bottom: (layer, module prefixes).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("kit", ("flue", "flue.__main__", "flue.testing")),
    ("cli", ("flue.cli", "flue.build")),
    ("server", ("flue.server", "flue.client", "flue.channels.http", "flue.channels.replies")),
    ("runtime", ("flue.runtime",)),
    ("harness", ("flue.harness", "flue.agent")),
    ("project", ("flue.project", "flue.preflight", "flue.channels.build")),
    ("plugins", ("flue.plugins", "flue.registries", "flue.hookspecs", "flue.blueprints", "flue.persistence.plugin", "flue.models.offline",
                 "flue.sandbox.plugin", "flue.builtin_tools.plugin")),
    ("components", ("flue.models", "flue.sandbox", "flue.tools", "flue.builtin_tools", "flue.instance",
                    "flue.channels", "flue.channels.keys", "flue.channels.rules")),
    ("persistence", ("flue.persistence",)),
    ("events", ("flue.events",)),
    ("config", ("flue.config", "flue.authoring", "flue.redaction")),
    ("foundation", ("flue.clock", "flue.errors", "flue.ids", "flue.strict_json", "flue.usage", "flue.version",
                    "flue.diagnostics", "flue.stream_paths", "flue.harness.errors", "flue.models.endpoints")),
]

#: Lazy upward imports kept on purpose: (importer, imported) -> why.
LAZY_UPWARD: dict[tuple[str, str], str] = {
    ("flue.channels.build", "flue.channels.http"):
        "a Python channel's route runs inside the server and finds the runtime on its request",
}

#: Upward imports under ``if TYPE_CHECKING:`` (annotations only). Shrink, don't grow.
TYPE_ONLY_UPWARD: set[tuple[str, str]] = {
    ("flue.authoring.channels", "flue.channels.keys"),
    ("flue.authoring.channels", "flue.channels.rules"),
    ("flue.channels.rules", "flue.runtime.runtime"),
    ("flue.instance", "flue.project"),
    ("flue.models.registry", "flue.project"),
    ("flue.persistence.plugin", "flue.project"),
    ("flue.redaction", "flue.project"),
    ("flue.tools", "flue.harness.abort"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    kind: str  # "module" | "function" | "type"
    line: int


def modules_of(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package) for every ``.py`` under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if "scaffold" in parts:  # project templates, not part of the package's code
            continue
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: Iterable[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]


def imports_of(root: Path) -> list[Import]:
    """Every import between modules under ``root``, by kind."""
    modules = modules_of(root)
    out: list[Import] = []

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def walk(module: str, is_package: bool, body: list[ast.stmt], kind: str) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _names(module, is_package, node, modules):
                    target = owner(name)
                    if target and target != module:
                        out.append(Import(module, target, kind, node.lineno))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                walk(module, is_package, node.body, "type")
                walk(module, is_package, node.orelse, kind)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                walk(module, is_package, node.body, "function" if kind == "module" else kind)
            else:  # class bodies, if/try/with/for/match at any level keep the kind
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    for child in getattr(node, field, None) or []:
                        nested = child.body if isinstance(child, ast.excepthandler | ast.match_case) else [child]
                        walk(module, is_package, nested, kind)

    for module, (path, is_package) in modules.items():
        walk(module, is_package, ast.parse(path.read_text(), str(path)).body, "module")
    return out


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int:
    """The index of the layer of ``module`` (0 is the top); longest prefix wins."""
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            # the root package's name places only itself, not every module under it
            nested = "." in prefix and module.startswith(prefix + ".")
            if (module == prefix or nested) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return rank


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def problems(
    root: Path,
    layers: list[tuple[str, tuple[str, ...]]] = LAYERS,
    lazy_upward: Mapping[tuple[str, str], str] = LAZY_UPWARD,
    type_only_upward: set[tuple[str, str]] = TYPE_ONLY_UPWARD,
) -> list[str]:
    """Every breach of the rules of this module's docstring, as readable lines."""
    found = []
    runtime_edges: dict[str, set[str]] = {}
    module_edges: dict[str, set[str]] = {}
    for imp in imports_of(root):
        upward = layer_of(imp.imported, layers) < layer_of(imp.importer, layers)
        pair = (imp.importer, imp.imported)
        where = f"{imp.importer}:{imp.line} imports {imp.imported}"
        if imp.kind == "module":
            module_edges.setdefault(imp.importer, set()).add(imp.imported)
            if upward:
                found.append(f"upward module-level import: {where}")
        elif imp.kind == "function":
            if upward and pair not in lazy_upward:
                found.append(f"upward lazy import: {where}")
        elif upward and pair not in type_only_upward:
            found.append(f"new upward TYPE_CHECKING import: {where}")
        if imp.kind != "type" and pair not in lazy_upward:
            runtime_edges.setdefault(imp.importer, set()).add(imp.imported)
    for component in cycles(module_edges):
        found.append(f"module-level import cycle: {' <-> '.join(component)}")
    for component in cycles(runtime_edges):
        if component not in cycles(module_edges):
            found.append(f"import cycle through lazy imports: {' <-> '.join(component)}")
    return found


def test_flue_imports_go_down_the_layers_without_cycles():
    assert problems(FLUE) == []


def test_the_allow_lists_hold_no_stale_entries():
    present = {(i.importer, i.imported, i.kind) for i in imports_of(FLUE)}
    assert [p for p in LAZY_UPWARD if (*p, "function") not in present] == []
    assert [p for p in TYPE_ONLY_UPWARD if (*p, "type") not in present] == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "flue"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TOY_LAYERS = [("top", ("flue", "flue.top")), ("low", ("flue.low",))]  # "flue" places only the root


def test_the_checker_passes_a_downward_package(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "top.py": "from flue.low import x\n", "low.py": "x = 1\n"})
    assert problems(root, TOY_LAYERS, {}, set()) == []


@pytest.mark.parametrize(
    ("low_py", "expected"),
    [
        ("from flue.top import y\n", "upward module-level import: flue.low:1 imports flue.top"),
        ("def f():\n    from . import top\n", "upward lazy import: flue.low:2 imports flue.top"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flue.top import y\n",
            "new upward TYPE_CHECKING import: flue.low:3 imports flue.top",
        ),
    ],
)
def test_the_checker_fails_on_an_upward_import(tmp_path, low_py, expected):
    root = _package(tmp_path, {"__init__.py": "", "top.py": "from flue.low import x\n", "low.py": low_py})
    assert expected in problems(root, TOY_LAYERS, {}, set())


def test_the_checker_fails_on_cycles_within_a_layer(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "top.py": "",
        "low/__init__.py": "",
        "low/a.py": "from flue.low.b import y\nx = 1\n",
        "low/b.py": "def f():\n    from flue.low.a import x\ny = 1\n",
    })
    assert problems(root, TOY_LAYERS, {}, set()) == [
        "import cycle through lazy imports: flue.low.a <-> flue.low.b"
    ]


def test_errors_with_a_wire_type_derive_from_flue_error():
    """One error root: every class under flue/ that declares an ``error_type`` is a FlueError
    (but OperationCancelledError, which must stay an asyncio.CancelledError)."""
    import importlib

    from flue.errors import FlueError

    typed = []
    for module, (path, _is_package) in modules_of(FLUE).items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(
                isinstance(stmt, ast.Assign | ast.AnnAssign)
                and "error_type" in ast.unparse(stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target)
                for stmt in node.body
            ):
                typed.append(getattr(importlib.import_module(module), node.name))
    assert len(typed) > 30
    outside = [cls.__qualname__ for cls in typed if not issubclass(cls, FlueError)]
    assert outside == ["OperationCancelledError"]
