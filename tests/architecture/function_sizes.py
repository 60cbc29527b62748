"""Function lengths of ``src/emoexp``, for the size rule of ``test_function_size.py``.

A function's size is the number of source lines its body spans, docstring excluded (blank and
comment lines inside the body count: they are what a reader scrolls through). Decorators and
the signature do not count. Nested functions are measured on their own and also count towards
the function that contains them.

A function may exceed the limit when it is marked ``# long: <reason>`` on its ``def`` line, on
the line just above the ``def``, or on the line just above its first decorator.

``python tests/architecture/function_sizes.py [--top N]`` prints the longest functions.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LIMIT = 60
SRC = Path(__file__).resolve().parents[2] / "src" / "emoexp"
_LONG_MARK = re.compile(r"#\s*long:\s*\S")


@dataclass(frozen=True)
class FunctionSize:
    """One function (or method) and the length of its body."""

    path: Path
    qualname: str
    line: int
    body_lines: int
    marked_long: bool

    def where(self, root: Path) -> str:
        """``relative/path.py:line qualname``."""
        return f"{self.path.relative_to(root)}:{self.line} {self.qualname}"


def _body_start(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    """First line of the body after the docstring (``None`` when the body is only a docstring)."""
    body = node.body
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        body = body[1:]
    return body[0].lineno if body else None


def _is_marked(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: Sequence[str]) -> bool:
    """Whether a ``# long: <reason>`` comment sits on the def, above it or above its decorators."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    candidates = {node.lineno, node.lineno - 1, first - 1}  # 1-based line numbers
    return any(1 <= n <= len(lines) and _LONG_MARK.search(lines[n - 1]) for n in candidates)


def function_sizes(path: Path) -> Iterator[FunctionSize]:
    """Every function and method of one source file with its body length."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    stack: list[tuple[ast.AST, str]] = [(ast.parse(text, filename=str(path)), "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                stack.append((child, f"{prefix}{child.name}."))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                start = _body_start(child)
                size = 0 if start is None else (child.end_lineno or start) - start + 1
                name = f"{prefix}{child.name}"
                yield FunctionSize(path, name, child.lineno, size, _is_marked(child, lines))
                stack.append((child, f"{name}.<locals>."))
            else:
                stack.append((child, prefix))


def all_sizes(root: Path = SRC) -> list[FunctionSize]:
    """Every function under ``root``, longest first."""
    sizes = [size for path in sorted(root.rglob("*.py")) for size in function_sizes(path)]
    return sorted(sizes, key=lambda s: (-s.body_lines, str(s.path), s.line))


def main(argv: Sequence[str] | None = None) -> None:
    """Print the longest functions under ``src/emoexp``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--root", type=Path, default=SRC)
    args = parser.parse_args(argv)
    sizes = all_sizes(args.root)
    over = [s for s in sizes if s.body_lines > LIMIT]
    print(
        f"functions: {len(sizes)}; over {LIMIT} body lines: {len(over)} "
        f"({sum(not s.marked_long for s in over)} unmarked)"
    )
    for size in sizes[: args.top]:
        mark = "  # long" if size.marked_long else ""
        print(f"{size.body_lines:5d}  {size.where(args.root.parent.parent)}{mark}")


if __name__ == "__main__":
    main()
