"""The package's import graph is acyclic and follows the layer table of ``tools/import_graph.py``.

The first tests check the real ``src/emoexp`` and ``conf/``; the rest prove the checker on small
synthetic packages written to ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real(import_graph: ModuleType) -> tuple[Any, Any]:
    """The graph of ``src/emoexp`` with ``conf/`` and the checker's report on it."""
    graph = import_graph.build_graph(REPO / "src", "emoexp", REPO / "conf")
    return graph, import_graph.check(graph)


def test_package_has_no_import_cycles(real: tuple[Any, Any], import_graph: ModuleType) -> None:
    graph, report = real
    assert not report.cycles, import_graph.render(graph, report)


def test_imports_follow_the_layers(real: tuple[Any, Any], import_graph: ModuleType) -> None:
    graph, report = real
    assert not report.back_edges, import_graph.render(graph, report)


def test_every_module_belongs_to_a_layer(real: tuple[Any, Any]) -> None:
    _, report = real
    assert report.unassigned == [], (
        f"add these modules to LAYERS in tools/import_graph.py: {report.unassigned}"
    )


def test_references_name_existing_modules(real: tuple[Any, Any]) -> None:
    _, report = real
    assert report.dangling == [], [f"{e.path}:{e.line} -> {e.target}" for e in report.dangling]


def test_command_line_prints_the_figures(
    import_graph: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    import_graph.main(["--src", str(REPO / "src"), "--conf", str(REPO / "conf")])
    out = capsys.readouterr().out
    for heading in (
        "edges:",
        "imports inside functions:",
        "cycles",
        "layer back-edges:",
        "modules in no layer:",
    ):
        assert heading in out


# --------------------------------------------------------------------------------------------
# The checker itself, on synthetic packages


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write ``{relative path: text}`` below ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def edges_by_kind(graph: Any) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.kind) for e in graph.edges}


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path, import_graph: ModuleType) -> None:
    write_tree(
        tmp_path / "src",
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\n\nX = 1\n",
            "pkg/b.py": "def f():\n    from pkg.a import X\n\n    return X\n",
            "pkg/c.py": "import pkg.b\n",
        },
    )
    graph = import_graph.build_graph(tmp_path / "src", "pkg")
    report = import_graph.check(graph, layers=(("all", ("pkg",)),), config_consumer="all")

    assert edges_by_kind(graph) == {
        ("pkg.a", "pkg.b", "top"),
        ("pkg.b", "pkg.a", "function"),
        ("pkg.c", "pkg.b", "top"),
    }
    assert report.cycles == [["pkg.a", "pkg.b"]]
    assert not report.back_edges and not report.ok


def test_checker_finds_a_back_edge_and_exempts_type_checking_cycles(
    tmp_path: Path, import_graph: ModuleType
) -> None:
    write_tree(
        tmp_path / "src",
        {
            "pkg/__init__.py": "",
            "pkg/low.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.high import H\n"
            ),
            "pkg/high.py": "from pkg import low\n\n\nclass H:\n    pass\n",
        },
    )
    layers = (("low", ("pkg", "pkg.low")), ("high", ("pkg.high",)))
    graph = import_graph.build_graph(tmp_path / "src", "pkg")
    report = import_graph.check(graph, layers=layers, config_consumer="low")

    assert edges_by_kind(graph) == {("pkg.low", "pkg.high", "type_checking"), ("pkg.high", "pkg.low", "top")}
    assert report.cycles == []  # the only way back is annotation-only
    [(edge, source_layer, target_layer)] = report.back_edges
    assert (edge.source, edge.target, source_layer, target_layer) == ("pkg.low", "pkg.high", "low", "high")


def test_checker_counts_importlib_targets_and_config_files(tmp_path: Path, import_graph: ModuleType) -> None:
    write_tree(
        tmp_path / "src",
        {
            "pkg/__init__.py": "",
            "pkg/low.py": (
                "import importlib\n\n"
                'CONFIG = {"_target_": "pkg.high.impl.make"}\n\n\n'
                'def load():\n    return importlib.import_module("pkg.high.impl")\n'
            ),
            "pkg/high/__init__.py": "",
            "pkg/high/impl.py": "from ..low import CONFIG\n\n\ndef make():\n    return CONFIG\n",
        },
    )
    write_tree(tmp_path / "conf", {"model/x.yaml": "net:\n  _target_: pkg.high.impl.make\n  size: 3\n"})
    layers = (("low", ("pkg", "pkg.low")), ("engine", ()), ("high", ("pkg.high",)))
    graph = import_graph.build_graph(tmp_path / "src", "pkg", tmp_path / "conf")
    report = import_graph.check(graph, layers=layers, config_consumer="engine")

    assert ("pkg.high.impl", "pkg.low", "top") in edges_by_kind(graph)  # `from ..low` resolved
    kinds = sorted((e.kind, source) for e, source, _ in report.back_edges)
    assert kinds == [("conf", "engine"), ("importlib", "low"), ("target", "low")]
    assert report.cycles == [["pkg.high.impl", "pkg.low"]]  # strings that import count as edges


def test_config_targets_at_or_below_the_consumer_are_fine(tmp_path: Path, import_graph: ModuleType) -> None:
    write_tree(tmp_path / "src", {"pkg/__init__.py": "", "pkg/models.py": "class Net:\n    pass\n"})
    write_tree(tmp_path / "conf", {"m.yaml": '- _target_: "pkg.models.Net"  # quoted, in a list\n'})
    layers = (("models", ("pkg", "pkg.models")), ("engine", ()))
    graph = import_graph.build_graph(tmp_path / "src", "pkg", tmp_path / "conf")
    report = import_graph.check(graph, layers=layers, config_consumer="engine")

    assert [(e.source, e.target, e.kind) for e in graph.edges] == [("conf/m.yaml", "pkg.models", "conf")]
    assert report.ok


def test_from_package_import_resolves_submodules(tmp_path: Path, import_graph: ModuleType) -> None:
    write_tree(
        tmp_path / "src",
        {
            "pkg/__init__.py": "from pkg.sub import deep as deep\n",
            "pkg/sub/__init__.py": "VALUE = 1\n",
            "pkg/sub/deep.py": "from pkg import sub\nfrom pkg.sub import VALUE\nfrom .. import other\n",
            "pkg/other.py": "import pkg.sub.deep\n",
        },
    )
    graph = import_graph.build_graph(tmp_path / "src", "pkg")
    assert edges_by_kind(graph) == {
        ("pkg", "pkg.sub.deep", "top"),
        ("pkg.sub.deep", "pkg.sub", "top"),  # `from pkg import sub` and `from pkg.sub import VALUE`
        ("pkg.sub.deep", "pkg.other", "top"),
        ("pkg.other", "pkg.sub.deep", "top"),
    }


def test_checker_reports_unassigned_modules_and_dangling_references(
    tmp_path: Path, import_graph: ModuleType
) -> None:
    write_tree(
        tmp_path / "src",
        {
            "pkg/__init__.py": "",
            "pkg/known.py": 'SPEC = {"_target_": "pkg.known.nothere"}\n',
            "pkg/stray.py": "",
        },
    )
    write_tree(tmp_path / "conf", {"a.yaml": "_target_: pkg.missing.Thing\nother: 1\n"})
    graph = import_graph.build_graph(tmp_path / "src", "pkg", tmp_path / "conf")
    report = import_graph.check(graph, layers=(("only", ("pkg.known",)), ("engine", ())))

    assert report.unassigned == ["pkg", "pkg.stray"]
    assert sorted(e.target for e in report.dangling) == ["pkg.known.nothere", "pkg.missing.Thing"]
    assert report.stale_entries == []
    assert not report.ok


def test_package_init_is_held_to_its_lowest_submodule(tmp_path: Path, import_graph: ModuleType) -> None:
    # Importing pkg.labels.words (layer "low") runs pkg/labels/__init__.py first, so that
    # __init__ must not import from "high" even though pkg.labels itself is a "high" module.
    write_tree(
        tmp_path / "src",
        {
            "pkg/__init__.py": "",
            "pkg/labels/__init__.py": "from pkg.labels import heavy\n",
            "pkg/labels/words.py": "WORDS = ()\n",
            "pkg/labels/heavy.py": "from pkg.labels.words import WORDS\n",
        },
    )
    layers = (("low", ("pkg", "pkg.labels.words")), ("high", ("pkg.labels",)))
    graph = import_graph.build_graph(tmp_path / "src", "pkg")
    report = import_graph.check(graph, layers=layers, config_consumer="low")

    [(edge, source_layer, target_layer)] = report.back_edges
    assert (edge.source, edge.target, source_layer, target_layer) == (
        "pkg.labels",
        "pkg.labels.heavy",
        "low",
        "high",
    )
