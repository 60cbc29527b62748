"""The project cites only documents inside the repository, and every cited design anchor exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "docs", "conf", "bench", "experiments", "tools", "README.md")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".cfg", ".ini", ".sh", ".ipynb", ".rst", ""}
# Spelled in pieces so that this file does not match itself.
FORBIDDEN = ("DESIGN" + " invariant", "../" + "shared", "DESIGN" + ".md")
DESIGN = ROOT / "docs" / "design.md"
CITATION = re.compile(r"(?:docs/)?design\.md#([A-Za-z0-9_-]+)")


def _files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in candidates:
            parts = set(file.relative_to(ROOT).parts)
            if "__pycache__" in parts or any(p.startswith(".") for p in parts):
                continue
            if file.suffix in SUFFIXES and file != Path(__file__).resolve():
                files.append(file)
    return files


def slug(heading: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped (but '-' and '_'), spaces -> '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def design_anchors() -> set[str]:
    """Anchors of every Markdown heading of docs/design.md (outside code blocks)."""
    anchors, fenced = set(), False
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            anchors.add(slug(match.group(1)))
    return anchors


def test_slug_is_github_style() -> None:
    assert slug("3. The test split is locked") == "3-the-test-split-is-locked"
    assert slug("Resume and leases") == "resume-and-leases"


def test_no_reference_to_documents_outside_the_repository() -> None:
    offenders = []
    for file in _files():
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            offenders += [
                f"{file.relative_to(ROOT)}:{number}: {word!r}" for word in FORBIDDEN if word in line
            ]
    assert not offenders, "cite docs/design.md#<section> instead:\n" + "\n".join(offenders)


def test_design_anchors_cited_in_the_code_exist() -> None:
    if not DESIGN.is_file():
        pytest.fail("docs/design.md is missing")
    anchors = design_anchors()
    missing = []
    for file in _files():
        if file.suffix not in (".py", ".yaml", ".md") or not file.is_relative_to(ROOT / "src"):
            continue
        text = file.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            missing += [
                f"{file.relative_to(ROOT)}:{number}: #{anchor}"
                for anchor in CITATION.findall(line)
                if anchor not in anchors
            ]
    assert not missing, f"no such heading in docs/design.md (anchors: {sorted(anchors)}):\n" + "\n".join(
        missing
    )


def test_design_anchors_cited_anywhere_exist() -> None:
    """Tests, configs and docs cite design sections too; their anchors must exist as well."""
    anchors = design_anchors()
    missing = []
    for file in _files():
        if file.is_relative_to(ROOT / "src") or file.suffix not in (".py", ".yaml", ".md"):
            continue
        text = file.read_text(encoding="utf-8")
        missing += [f"{file.relative_to(ROOT)}: #{a}" for a in CITATION.findall(text) if a not in anchors]
    assert not missing, "\n".join(missing)
