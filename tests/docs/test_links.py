"""Every relative link in README.md and docs/**/*.md points to a file that exists, and every
`#anchor` (in the same page or another markdown page) names a heading there (GitHub's slug
rules). Links inside code blocks and inline code are not links."""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The markdown without fenced code blocks and inline code spans."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # [text](url) -> text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def test_the_pages_exist_and_have_links():
    names = {p.relative_to(REPO).as_posix() for p in PAGES}
    for must in ("README.md", "docs/index.md", "docs/quickstart.md", "docs/experimenter-guide.md",
                 "docs/operator-guide.md", "docs/security.md"):
        assert must in names
    assert len(links(REPO / "docs" / "index.md")) >= 20


def test_slug_follows_github():
    assert slug("Behind nginx") == "behind-nginx"
    assert slug("Our extension: `geniam`") == "our-extension-geniam"
    assert slug("The verification cache") == "the-verification-cache"
    assert slug("`geni-am client`: an AM API v3 client") == "geni-am-client-an-am-api-v3-client"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path):
    broken = []
    for target in links(page):
        parsed = urllib.parse.urlsplit(target)
        if parsed.scheme or target.startswith("//"):
            continue                                   # http(s), mailto: not checked (no network)
        path = urllib.parse.unquote(parsed.path)
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: {dest} does not exist")
            continue
        if parsed.fragment and dest.suffix == ".md":
            if parsed.fragment not in anchors(dest):
                broken.append(f"{target}: no heading #{parsed.fragment} in {dest.name}")
    assert not broken, f"{page}:\n" + "\n".join(broken)
