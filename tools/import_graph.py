"""Import graph of ``src/emoexp``: edges, cycles and layer back-edges.

Run ``python tools/import_graph.py`` from the repository root. It reads the sources with
:mod:`ast` (nothing is imported, so it works without the installed stack) and prints the edge
count by kind, the import cycles, the edges that go against :data:`LAYERS`, the modules no layer
claims, and how many imports sit inside functions. ``tests/architecture/test_import_graph.py``
holds the code to the same table.

What counts as an edge ``a -> b`` (``a`` a module of the package, ``b`` another one):

``top``
    ``import``/``from ... import`` that runs when ``a`` is imported: module level, class bodies,
    ``try``/``if`` blocks at module level.
``function``
    The same inside a function or method body (deferred imports). They are real dependencies
    and count everywhere; deferring an import hides a cycle from Python, not from this check.
``type_checking``
    Under ``if TYPE_CHECKING:``. Never executed, so they are **exempt from the cycle check**
    (annotation-only mutual references are legitimate), but they still must respect the layers.
``importlib``
    ``importlib.import_module("emoexp.x")`` (or ``import_module``/``__import__``) with a string
    literal naming a module of the package.
``target``
    A ``_target_`` string in Python source (``{"_target_": "emoexp.x.f"}`` or
    ``_target_="emoexp.x.f"``): ``a`` builds a config that will instantiate ``emoexp.x``.

Resolution: relative imports are resolved against ``a``'s package; ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module and to ``pkg`` otherwise; a dotted name that is not a
module (``emoexp.x.Class``) resolves to its longest prefix that is one. ``subprocess`` launches
such as ``python -m emoexp.tune`` are processes, not imports, and are not edges.

Packages: importing ``emoexp.labels.emotions`` first runs ``emoexp/labels/__init__.py``. Rather
than adding those implicit edges, a package ``__init__`` is held to the *lowest* layer of
anything inside it: ``emoexp.labels.emotions`` sits in the data layer, so whatever
``emoexp/labels/__init__.py`` imports must be at or below data too (the root ``emoexp`` is held
to the bottom layer this way).

The Hydra config tree: the engine is what instantiates configs (``hydra.utils.instantiate`` of
the data, model, label-scheme, ... groups), so a ``_target_: emoexp.x.Y`` in ``conf/**.yaml`` is
counted as a dependency **of the engine layer**: a config may only target modules at or below
``engine``. Such edges start at a pseudo-node ``conf/<file>`` and are checked for layers (and
for naming an existing module: a dangling target is reported), never for cycles.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The layer table, bottom to top: a module may import its own layer or a lower one, never a
# higher one. An entry names a module and everything below it (``emoexp.data`` covers
# ``emoexp.data.splits``); the longest matching entry wins. The root package sits at the
# bottom: ``emoexp/__init__`` runs before any submodule, so it may only use the config layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "config",
        (
            "emoexp",
            "emoexp.config",
            "emoexp.resolvers",
            "emoexp.modalities",
            "emoexp.interruption",
            "emoexp.cliargs",
            "emoexp.terminal",
        ),
    ),
    # The emotion vocabulary (names, valence/arousal anchors) has no dependencies and is what
    # the corpora are labelled with, so it sits with the data even though it lives in labels/.
    ("data", ("emoexp.data", "emoexp.labels.emotions")),
    # The data module featurises the splits (it imports features.base/cache and
    # features.multimodal calls its build_features), so it sits with the features.
    ("features/evaluation", ("emoexp.features", "emoexp.evaluation", "emoexp.data.datamodule")),
    ("models/labels", ("emoexp.models", "emoexp.labels", "emoexp.tasks", "emoexp.distributed")),
    ("tracking/serving", ("emoexp.tracking", "emoexp.serving")),
    # Robustness reports run after a run's folds (evaluate.robustness) and from their own command.
    ("engine", ("emoexp.engine", "emoexp.robust")),
    ("tuning/comparison/ensembles", ("emoexp.tuning", "emoexp.comparison", "emoexp.ensembles")),
    (
        "cli",
        (
            "emoexp.train",
            "emoexp.tune",
            "emoexp.compare",
            "emoexp.ensemble",
            "emoexp.predict",
            "emoexp.robustness",
            "emoexp.export",
            "emoexp.study",
            "emoexp.studies",
            "emoexp.cli",
        ),
    ),
)

# The layer whose code instantiates ``_target_`` nodes of the YAML config tree.
CONFIG_CONSUMER_LAYER = "engine"

EDGE_KINDS = ("top", "function", "type_checking", "importlib", "target", "conf")
# Edges that never execute are left out of the cycle check (see the module docstring).
CYCLE_EXEMPT_KINDS = frozenset({"type_checking", "conf"})

_YAML_TARGET = re.compile(r"""^\s*(?:-\s*)?_target_\s*:\s*["']?([A-Za-z_][\w.]*)["']?\s*(?:#.*)?$""")
_IMPORT_FUNCTIONS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class Edge:
    """One dependency ``source -> target`` found at ``path:line``."""

    source: str
    target: str
    kind: str
    path: str
    line: int


@dataclass
class Graph:
    """Modules of a package and the edges between them."""

    package: str
    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)
    dangling: list[Edge] = field(default_factory=list)


@dataclass
class Report:
    """What :func:`check` found."""

    cycles: list[list[str]]
    back_edges: list[tuple[Edge, str, str]]
    unassigned: list[str]
    stale_entries: list[str]
    dangling: list[Edge]

    @property
    def ok(self) -> bool:
        """Whether the graph is acyclic, layered, fully assigned and has no dangling targets."""
        return not (self.cycles or self.back_edges or self.unassigned or self.dangling)


# ---------------------------------------------------------------------------------------------
# Discovery and resolution


def discover_modules(src_root: Path, package: str) -> dict[str, Path]:
    """Map every module name of ``package`` under ``src_root`` to its file.

    Args:
        src_root: The folder holding the package folder (``src``).
        package: The top-level package name.

    Returns:
        ``{"pkg.sub.mod": path}``, with ``pkg/sub/__init__.py`` named ``pkg.sub``.
    """
    modules: dict[str, Path] = {}
    for path in sorted((src_root / package).rglob("*.py")):
        parts = list(path.relative_to(src_root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted ``name`` lives in, or ``None`` when it names nothing that exists.

    That is the longest prefix of ``name`` that is a known module, provided the rest starts with
    a name that module defines or imports at top level (``emoexp.data.splits.KFold``); so a typo
    such as ``emoexp.dta.splits.KFold`` does not quietly resolve to the root package.
    """
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            rest = parts[end:]
            return candidate if not rest or rest[0] in _top_level_names(modules[candidate]) else None
    return None


_NAMES_CACHE: dict[Path, frozenset[str]] = {}


def _top_level_names(path: Path) -> frozenset[str]:
    """Names a module binds at top level (definitions, assignments, imports), cached per file."""
    if path not in _NAMES_CACHE:
        names: set[str] = set()
        pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
        while pending:
            node = pending.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
                continue  # their bodies bind local names, not the module's
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            pending.extend(ast.iter_child_nodes(node))
        _NAMES_CACHE[path] = frozenset(names)
    return _NAMES_CACHE[path]


def _base_of_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a ``from <dots>name import ...`` refers to inside ``module``."""
    parts = module.split(".")
    package_parts = parts if is_package else parts[:-1]
    anchor = package_parts[: len(package_parts) - (level - 1)] if level > 1 else package_parts
    return ".".join([*anchor, name] if name else anchor)


def _from_targets(base: str, names: Iterable[str], modules: dict[str, Path]) -> Iterator[str]:
    """Modules a ``from base import names`` depends on: ``base.name`` when a module, else ``base``."""
    for name in names:
        submodule = f"{base}.{name}"
        yield submodule if submodule in modules else (resolve(base, modules) or "")


# ---------------------------------------------------------------------------------------------
# Python sources


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _string_arg(call: ast.Call) -> str | None:
    """The first positional argument of a call when it is a string literal."""
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _call_name(call: ast.Call) -> str | None:
    """The called name: ``f`` for ``f(...)`` and ``m.f(...)``."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _target_strings(node: ast.AST) -> Iterator[str]:
    """``_target_`` values in a dict literal or in ``_target_=`` keyword arguments."""
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "_target_"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                yield value.value
    elif isinstance(node, ast.Call):
        for keyword in node.keywords:
            if (
                keyword.arg == "_target_"
                and isinstance(keyword.value, ast.Constant)
                and isinstance(keyword.value.value, str)
            ):
                yield keyword.value.value


class _ImportVisitor(ast.NodeVisitor):
    """Collects the raw dependencies of one module: ``(dotted name, kind, line)``."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]) -> None:
        self.module = module
        self.is_package = is_package
        self.modules = modules
        self.found: list[tuple[str, str, int]] = []
        self._function_depth = 0
        self._type_checking_depth = 0

    def _kind(self) -> str:
        if self._type_checking_depth:
            return "type_checking"
        return "function" if self._function_depth else "top"

    def _visit_function(self, node: ast.AST) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_FunctionDef = _visit_function  # noqa: N815 (ast.NodeVisitor's method names)
    visit_AsyncFunctionDef = _visit_function  # noqa: N815
    visit_Lambda = _visit_function  # noqa: N815

    def visit_If(self, node: ast.If) -> None:
        """Count the body of ``if TYPE_CHECKING:`` as type-only; its ``else`` runs normally."""
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_checking_depth += 1
        for child in node.body:
            self.visit(child)
        self._type_checking_depth -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        """``import a.b.c [as x]``: a dependency on ``a.b.c``."""
        for alias in node.names:
            self.found.append((alias.name, self._kind(), node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        """``from base import names``, relative or absolute."""
        if node.level:
            base = _base_of_relative(self.module, self.is_package, node.level, node.module)
        else:
            base = node.module or ""
        names = [alias.name for alias in node.names if alias.name != "*"] or [""]
        for target in _from_targets(base, names, self.modules):
            self.found.append((target or base, self._kind(), node.lineno))

    def visit_Call(self, node: ast.Call) -> None:
        """``importlib.import_module("pkg.x")`` literals and ``_target_=`` keywords."""
        literal = _string_arg(node)
        if literal and _call_name(node) in _IMPORT_FUNCTIONS:
            self.found.append((literal, "importlib", node.lineno))
        for target in _target_strings(node):
            self.found.append((target, "target", node.lineno))
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        """``{"_target_": "pkg.x.f"}`` literals."""
        for target in _target_strings(node):
            self.found.append((target, "target", node.lineno))
        self.generic_visit(node)


def python_edges(graph: Graph, relative_to: Path) -> None:
    """Add the edges found in the package's Python sources to ``graph``."""
    for module, path in graph.modules.items():
        visitor = _ImportVisitor(module, path.name == "__init__.py", graph.modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        shown = _shown_path(path, relative_to)
        seen: set[Edge] = set()
        for name, kind, line in visitor.found:
            if name != graph.package and not name.startswith(graph.package + "."):
                continue
            target = resolve(name, graph.modules)
            edge = Edge(module, target or name, kind, shown, line)
            if target is None:
                graph.dangling.append(edge)
            elif target != module and edge not in seen:  # `from m import a, b`: one edge
                seen.add(edge)
                graph.edges.append(edge)


# ---------------------------------------------------------------------------------------------
# The YAML config tree


def conf_edges(graph: Graph, conf_root: Path, relative_to: Path) -> None:
    """Add an edge per ``_target_: <package>.x.Y`` line of ``conf_root/**.yaml`` to ``graph``.

    A line-based scan (no YAML parser needed): ``_target_:`` keys in block style, optionally as
    a list item, with an optionally quoted dotted value.
    """
    for path in sorted([*conf_root.rglob("*.yaml"), *conf_root.rglob("*.yml")]):
        shown = _shown_path(path, relative_to)
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _YAML_TARGET.match(text)
            if not match or not match.group(1).startswith(graph.package + "."):
                continue
            target = resolve(match.group(1), graph.modules)
            edge = Edge(shown, target or match.group(1), "conf", shown, number)
            (graph.edges if target else graph.dangling).append(edge)


def _shown_path(path: Path, relative_to: Path) -> str:
    """``path`` relative to ``relative_to`` when it lies below it, else as given."""
    try:
        return str(path.relative_to(relative_to))
    except ValueError:
        return str(path)


def build_graph(src_root: Path, package: str, conf_root: Path | None = None) -> Graph:
    """The import graph of ``src_root/package`` plus the ``_target_`` edges of ``conf_root``.

    Args:
        src_root: The folder holding the package folder.
        package: The top-level package name.
        conf_root: The Hydra config folder, or ``None`` to leave YAML out.

    Returns:
        The graph; ``graph.dangling`` lists references to modules that do not exist.
    """
    relative_to = src_root.parent
    graph = Graph(package, discover_modules(src_root, package))
    python_edges(graph, relative_to)
    if conf_root is not None and conf_root.is_dir():
        conf_edges(graph, conf_root, relative_to)
    return graph


# ---------------------------------------------------------------------------------------------
# Checks


def layer_of(module: str, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> int | None:
    """Index in ``layers`` of the longest entry covering ``module`` (``None`` if none does)."""
    best: tuple[int, int] | None = None  # (entry length, layer index)
    for index, (_, entries) in enumerate(layers):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return best[1] if best else None


def strongly_connected(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative), sorted."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in edges:
        successors.setdefault(source, []).append(target)
        successors.setdefault(target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(successors):
        if root in index:
            continue
        work = [(root, iter(sorted(set(successors[root]))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    components.append(_pop_component(node, stack, on_stack))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(set(successors[child])))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted((sorted(c) for c in components if len(c) > 1), key=lambda c: (-len(c), c))


def _pop_component(root: str, stack: list[str], on_stack: set[str]) -> list[str]:
    """Pop Tarjan's stack down to ``root``: one strongly connected component."""
    component = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component


def _layer_index(name: str, layers: Sequence[tuple[str, Sequence[str]]]) -> int:
    """Index of the layer called ``name``."""
    return [layer for layer, _ in layers].index(name)


def _source_layer(module: str, graph: Graph, layers: Sequence[tuple[str, Sequence[str]]]) -> int | None:
    """The layer ``module``'s imports are held to: a package's is the lowest inside it.

    Importing any module of a package runs the package's ``__init__`` first, so the
    ``__init__`` may only depend on what its lowest-layer submodule may depend on.
    """
    if graph.modules[module].name != "__init__.py":
        return layer_of(module, layers)
    inside = [layer_of(m, layers) for m in graph.modules if m == module or m.startswith(module + ".")]
    known = [index for index in inside if index is not None]
    return min(known) if known else None


def check(
    graph: Graph,
    layers: Sequence[tuple[str, Sequence[str]]] = LAYERS,
    config_consumer: str = CONFIG_CONSUMER_LAYER,
) -> Report:
    """Cycles, layer back-edges, unassigned modules and stale layer entries of ``graph``.

    Args:
        graph: From :func:`build_graph`.
        layers: ``(name, entries)`` bottom to top.
        config_consumer: The layer YAML ``_target_`` edges are charged to.

    Returns:
        The findings; ``report.ok`` when there are none that fail the architecture test.
    """
    runtime = [(e.source, e.target) for e in graph.edges if e.kind not in CYCLE_EXEMPT_KINDS]
    back_edges = []
    for edge in graph.edges:
        if edge.kind == "conf":
            source_layer: int | None = _layer_index(config_consumer, layers)
        else:
            source_layer = _source_layer(edge.source, graph, layers)
        target_layer = layer_of(edge.target, layers)
        if source_layer is not None and target_layer is not None and target_layer > source_layer:
            back_edges.append((edge, layers[source_layer][0], layers[target_layer][0]))
    entries = [entry for _, names in layers for entry in names]
    return Report(
        cycles=strongly_connected(graph.modules, runtime),
        back_edges=back_edges,
        unassigned=sorted(m for m in graph.modules if layer_of(m, layers) is None),
        stale_entries=[e for e in entries if not any(m == e or m.startswith(e + ".") for m in graph.modules)],
        dangling=list(graph.dangling),
    )


# ---------------------------------------------------------------------------------------------
# Command line


def render(graph: Graph, report: Report, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> str:
    """The human-readable summary the command line prints."""
    kinds = Counter(edge.kind for edge in graph.edges)
    distinct = {(e.source, e.target) for e in graph.edges if e.kind != "conf"}
    lines = [
        f"modules: {len(graph.modules)}",
        f"edges: {len(graph.edges)} import statements/references "
        f"({len(distinct)} distinct module pairs, conf/ excluded)",
        *(f"  {kind}: {kinds.get(kind, 0)}" for kind in EDGE_KINDS),
        f"imports inside functions: {kinds.get('function', 0)} "
        f"(in {len({e.source for e in graph.edges if e.kind == 'function'})} modules)",
        f"cycles (TYPE_CHECKING-only edges exempt): {len(report.cycles)}",
    ]
    for cycle in report.cycles:
        lines.append(f"  [{len(cycle)} modules] " + " ".join(cycle))
        members = set(cycle)
        lines += [
            f"    {e.path}:{e.line} {e.source} -> {e.target} [{e.kind}]"
            for e in graph.edges
            if e.source in members and e.target in members and e.kind not in CYCLE_EXEMPT_KINDS
        ]
    lines.append(f"layer back-edges: {len(report.back_edges)}")
    for edge, source_layer, target_layer in sorted(report.back_edges, key=lambda b: (b[0].path, b[0].line)):
        lines.append(
            f"  {edge.path}:{edge.line} {edge.source} ({source_layer}) -> {edge.target} "
            f"({target_layer}) [{edge.kind}]"
        )
    lines.append(f"modules in no layer: {len(report.unassigned)}")
    lines += [f"  {m}" for m in report.unassigned]
    lines.append(f"dangling references: {len(report.dangling)}")
    lines += [f"  {e.path}:{e.line} {e.source} -> {e.target} [{e.kind}]" for e in report.dangling]
    lines.append(f"layer entries matching no module (informational): {len(report.stale_entries)}")
    lines += [f"  {e}" for e in report.stale_entries]
    lines.append("layers (bottom to top): " + " < ".join(name for name, _ in layers))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the graph summary; exit 1 when the architecture check would fail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="folder holding the package")
    parser.add_argument("--package", default="emoexp")
    parser.add_argument("--conf", type=Path, default=REPO / "conf", help="Hydra config folder")
    args = parser.parse_args(argv)
    graph = build_graph(args.src, args.package, args.conf)
    report = check(graph)
    print(render(graph, report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
