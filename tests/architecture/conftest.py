"""Loads ``tools/import_graph.py`` (a script, not a package module) for the architecture tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    """Import a file as module ``name`` (registered first: its dataclasses look themselves up)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def import_graph() -> ModuleType:
    """The ``tools/import_graph.py`` module."""
    return _load("emoexp_tools_import_graph", REPO / "tools" / "import_graph.py")


@pytest.fixture(scope="session")
def function_sizes() -> ModuleType:
    """The ``tests/architecture/function_sizes.py`` module."""
    return _load("emoexp_tests_function_sizes", Path(__file__).with_name("function_sizes.py"))
