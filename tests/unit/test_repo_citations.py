"""The repository explains itself: every citation in it can be opened by its readers.

No file under the checked folders (or the README and the project's root files) may cite a document outside the repository
(a founding brief, a shared folder of the machines tierkit was built on) or a bare issue number
of this project's tracker. Upstream issues are cited by URL or as owner/repo#N. Every
`docs/<page>.md` a file names must exist, and so must the section it points at
(`docs/planner.md#decode-speed`, or `docs/planner.md "Decode speed"`); links between the pages
of docs/ are checked the same way, and so are the repository paths the pages of docs/ name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED_DIRS = ("tierkit", "roles", "playbooks", "bench", "stacks", "docs", "tests", "scripts", ".ci")
CHECKED_FILES = ("README.md", "Makefile", "pyproject.toml", "Pulumi.yaml", "__main__.py")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
THIS_FILE = Path(__file__).resolve()

# What readers of the repository cannot open. Each pattern is built from pieces so that this
# file does not match itself (it is skipped anyway).
FORBIDDEN = {
    "the founding brief (write the fact into docs/ and cite that)": re.compile("DESIGN" + r"\.md"),
    "a shared folder outside the repository": re.compile(r"\.\./" + "shared\\b|/work/" + "shared"),
    "an issue number (cite docs/ or a primary source; upstream issues by URL)": re.compile(
        r"\b[Ii]ssues?\s*#?\d+"
    ),
    "a bare #N reference (cite docs/ or a primary source; upstream issues by URL or owner/repo#N)": re.compile(
        r"(?<![\w/&#'\"-])#\d{1,4}\b"
    ),
}

# `docs/page.md`, optionally `#anchor` or followed by a quoted heading.
DOC_CITATION = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+)|\s+\(?\"([^\"\n]+)\")?")
# Inside docs/: markdown links to a sibling page and/or an anchor.
DOC_LINK = re.compile(r"\]\(((?:[\w.-]+\.md)?)(?:#([\w-]+))?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
# Inside docs/: a path into the repository (`tierkit/planner.py`, `roles/vllm/defaults/main.yml`).
REPO_PATH = re.compile(r"(?<![\w./<-])((?:tierkit|roles|playbooks|bench|tests|stacks|scripts)/[\w./*-]*[\w*])")


def checked_files() -> Iterator[Path]:
    for name in CHECKED_FILES:
        path = ROOT / name
        if path.is_file():
            yield path
    for folder in CHECKED_DIRS:
        base = ROOT / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and not SKIPPED_DIRS.intersection(path.parts) and path.resolve() != THIS_FILE:
                yield path


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(page: Path) -> list[str]:
    out, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            out.append(m.group(1))
    return out


def section_problem(page: Path, anchor: str | None, title: str | None) -> str | None:
    """Why a citation of `page` (with an anchor or a quoted heading) does not resolve, if it does not."""
    if not page.is_file():
        return f"{page.relative_to(ROOT)} does not exist"
    titles = headings(page)
    if anchor and anchor not in {slug(t) for t in titles}:
        return f"{page.relative_to(ROOT)} has no section #{anchor}"
    if title and title.strip().lower() not in {t.strip().lower() for t in titles}:
        return f"{page.relative_to(ROOT)} has no section {title!r}"
    return None


def citation_problems(path: Path, text: str) -> Iterator[str]:
    where = path.relative_to(ROOT)
    for n, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN.items():
            if m := pattern.search(line):
                yield f"{where}:{n}: cites {what}: {m.group(0)!r}"
        for m in DOC_CITATION.finditer(line):
            problem = section_problem(ROOT / "docs" / m.group(1), m.group(2), m.group(3))
            if problem:
                yield f"{where}:{n}: {problem}"
        if path.parent == ROOT / "docs" and path.suffix == ".md":
            for m in REPO_PATH.finditer(line):
                if not any(ROOT.glob(m.group(1))):
                    yield f"{where}:{n}: names {m.group(1)}, which is not in the repository"
            for m in DOC_LINK.finditer(line):
                target = path.parent / m.group(1) if m.group(1) else path
                if m.group(1) or m.group(2):
                    problem = section_problem(target, m.group(2), None)
                    if problem:
                        yield f"{where}:{n}: {problem}"


def test_every_citation_resolves_inside_the_repository() -> None:
    problems = []
    for path in checked_files():
        text = read_text(path)
        if text is not None:
            problems.extend(citation_problems(path, text))
    assert not problems, "\n".join(problems)


def test_docs_pages_exist_and_the_readme_lists_them() -> None:
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert {"architecture.md", "planner.md", "topology.md", "failover.md", "vllm.md", "lab.md"} <= set(pages)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p for p in pages if f"docs/{p}" not in readme]
    assert not missing, f"README.md's Documentation section does not list {missing}"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("# see DESIGN" + ".md for the rule", "founding brief"),
        ("# facts in ../" + "shared/reference", "shared folder"),
        ("cat /work/" + "shared/x", "shared folder"),
        ("# GPUs per tier (issue " + "2 rules)", "issue number"),
        ("# fixed in Issue #" + "12", "issue number"),
        ("# see #" + "7", "bare #N"),
    ],
)
def test_forbidden_citations_are_caught(line: str, expected: str) -> None:
    found = list(citation_problems(ROOT / "tierkit" / "x.py", line))
    assert found and expected in found[0], found


@pytest.mark.parametrize(
    "line",
    [
        "# after https://github.com/NVIDIA/nccl-tests/issues/131",
        "# fixed upstream, acassen/keepalived#2617",
        "# NV# is a bond of # NVLinks; GPU0 NV18",
        "color = '#1f77b4'",
        "style = '#123'",
    ],
)
def test_upstream_references_and_look_alikes_pass(line: str) -> None:
    assert not list(citation_problems(ROOT / "tierkit" / "x.py", line))


def test_doc_citations_must_name_a_real_page_and_section() -> None:
    assert not list(citation_problems(ROOT / "x.py", "# docs/planner.md#decode-speed"))
    assert not list(citation_problems(ROOT / "x.py", '# docs/planner.md "Decode speed"'))
    assert "no section #nowhere" in next(citation_problems(ROOT / "x.py", "# docs/planner.md#nowhere"))
    assert "no section 'Nowhere'" in next(citation_problems(ROOT / "x.py", '# docs/planner.md "Nowhere"'))
    assert "does not exist" in next(citation_problems(ROOT / "x.py", "# docs/no-such-page.md"))
