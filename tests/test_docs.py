"""Every relative link in README.md and docs/ points at a file that exists (issue 31).

The README is the front door and the docs pages carry the detail; a page that moves or is renamed
must not leave a dead link behind. Only files are checked, not anchors: GitHub's heading slugs are
its own, and a wrong anchor still lands on the right page.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

# [text](target) and ![alt](target), the text possibly wrapped over lines; an optional "title"
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def prose(text: str) -> str:
    """The text with code blocks and code spans blanked (same length and line breaks), so that
    `a[i](x)` in code is not read as a link and line numbers stay right."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    return CODE_SPAN.sub(blank, FENCE.sub(blank, text))


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link in `path` that names a file relative to it."""
    text = prose(path.read_text(encoding="utf-8"))
    out = []
    for m in INLINE_LINK.finditer(text):
        target = m.group(1)
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        out.append((text.count("\n", 0, m.start(1)) + 1, target))
    return out


def broken_links(path: Path) -> list[str]:
    broken = []
    for line, target in relative_links(path):
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not (path.parent / file_part).exists():
            broken.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    return broken


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = broken_links(path)
    assert not broken, "links to no file:\n" + "\n".join(broken)


def test_the_readme_links_every_docs_page():
    # the README is the index of the docs: a page it does not name is a page nobody finds
    linked = {(ROOT / unquote(t.split("#", 1)[0])).resolve()
              for _, t in relative_links(ROOT / "README.md")}
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages, "docs/ holds no pages"
    assert [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked] == []


def test_the_link_reader_sees_what_it_should(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# there\n")
    page.write_text("[ok](there.md) [anchor](there.md#a-b) [wrapped\ntext](there.md)\n"
                    "[web](https://example.org/x) [mail](mailto:a@b.c) [local](#here)\n"
                    "`[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n"
                    "[gone](missing.md) ![img](missing.png)\n")
    assert [t for _, t in relative_links(page)] == [
        "there.md", "there.md#a-b", "there.md", "missing.md", "missing.png"]
    assert [line for line, _ in relative_links(page)][-2:] == [8, 8]
