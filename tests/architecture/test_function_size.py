"""No function of ``src/emoexp`` is longer than 60 body lines unless marked ``# long: <reason>``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def test_functions_are_short_or_marked_long(function_sizes: ModuleType) -> None:
    offenders = [
        f"{size.where(REPO)} ({size.body_lines} lines)"
        for size in function_sizes.all_sizes()
        if size.body_lines > function_sizes.LIMIT and not size.marked_long
    ]
    assert offenders == [], (
        f"split these functions or mark them `# long: <reason>` above the def (limit "
        f"{function_sizes.LIMIT} body lines): {offenders}"
    )


def test_long_marks_are_not_stale(function_sizes: ModuleType) -> None:
    stale = [
        size.where(REPO)
        for size in function_sizes.all_sizes()
        if size.marked_long and size.body_lines <= function_sizes.LIMIT
    ]
    assert stale == [], f"these functions fit the limit; drop their `# long:` mark: {stale}"


# --------------------------------------------------------------------------------------------
# The measurer itself


def test_sizes_exclude_docstring_and_signature(tmp_path: Path, function_sizes: ModuleType) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(3))
    (tmp_path / "m.py").write_text(
        "def f(\n    a,\n    b,\n):\n"
        '    """Doc.\n\n    More doc.\n    """\n'
        f"{body}\n\n    # a comment\n    return a\n"
    )
    [size] = function_sizes.function_sizes(tmp_path / "m.py")
    assert (size.qualname, size.line, size.body_lines, size.marked_long) == ("f", 1, 6, False)


def test_nested_functions_and_methods_are_measured(tmp_path: Path, function_sizes: ModuleType) -> None:
    (tmp_path / "m.py").write_text(
        "class C:\n"
        "    def method(self):\n"
        "        def inner():\n"
        "            return 1\n"
        "\n"
        "        return inner()\n"
        "\n\n"
        'def only_doc():\n    """Nothing else."""\n'
    )
    sizes = {s.qualname: s.body_lines for s in function_sizes.function_sizes(tmp_path / "m.py")}
    assert sizes == {"C.method": 4, "C.method.<locals>.inner": 1, "only_doc": 0}


def test_long_mark_positions(tmp_path: Path, function_sizes: ModuleType) -> None:
    (tmp_path / "m.py").write_text(
        "# long: generated table\n"
        "@decorator\n"
        "@other\n"
        "def above_decorators():\n    pass\n\n\n"
        "# long: one formula\n"
        "def above_def():\n    pass\n\n\n"
        "def on_def():  # long: a reason\n    pass\n\n\n"
        "# long:\n"
        "def no_reason():\n    pass\n\n\n"
        "# a long function\n"
        "def unrelated_comment():\n    pass\n"
    )
    marks = {s.qualname: s.marked_long for s in function_sizes.function_sizes(tmp_path / "m.py")}
    assert marks == {
        "above_decorators": True,
        "above_def": True,
        "on_def": True,
        "no_reason": False,
        "unrelated_comment": False,
    }
