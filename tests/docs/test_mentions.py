"""Every file the docs mention resolves inside the repository (links are checked by
test_links.py): a path under one of the repository's top-level directories (`am/site/default.py`,
`tests/web/test_browser.py`, `docs/figures/...`) or a top-level file (`dev.sh`, `setup.py`)
exists, or lies where the repository says generated files go (.gitignore); a markdown page
named on its own (`site.md`) is one of ours. Material outside the repository (a `../shared`
tree, machine notes, absolute paths of a development machine) is never cited."""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
TOP_DIRS = sorted(p.name for p in REPO.iterdir()
                  if p.is_dir() and not p.name.startswith((".venv", ".git", "__"))
                  and not p.name.endswith(".egg-info"))
TOP_FILES = ("README.md", "setup.py", "dev.sh", "pyproject.toml")
PATH = re.compile(r"(?<![\w./~$<>@:-])((?:%s)/[\w./*{}<>-]*[\w*}>/])" % "|".join(
    re.escape(d) for d in TOP_DIRS))
BARE = re.compile(r"(?<![\w./~$<>@:-])(%s|[\w-]+\.md)(?![\w/-])" % "|".join(
    re.escape(f) for f in TOP_FILES))
OUTSIDE = re.compile(r"\.\./shared|machine-notes|/work/(?:main|wt-)")
PLACEHOLDER = re.compile(r"[*{}<>]|\.\.\.|…")


def ignored_patterns() -> list[str]:
    lines = (REPO / ".gitignore").read_text().splitlines()
    return [line.strip().lstrip("/").rstrip("/") for line in lines
            if line.strip() and not line.startswith("#")]


def generated(path: str) -> bool:
    """Under a directory .gitignore names (findings, state, build output)."""
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in ignored_patterns())


def unresolved(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    bad = []
    for m in PATH.finditer(text):
        mention = m.group(1)
        after = text[m.end():m.end() + 4]
        if PLACEHOLDER.search(mention) or after.startswith(("-...", "...", "-…", "…")):
            mention = PLACEHOLDER.split(mention)[0].rsplit("/", 1)[0]   # its fixed directory
        if not mention or (REPO / mention).exists() or generated(mention):
            continue
        bad.append(f"{mention} (line {text.count(chr(10), 0, m.start()) + 1})")
    docs = {p.name for p in (REPO / "docs").rglob("*.md")} | {"README.md"}
    for m in BARE.finditer(text):
        name = m.group(1)
        if name in TOP_FILES:
            if not (REPO / name).exists():
                bad.append(name)
        elif name not in docs:
            bad.append(f"{name} (line {text.count(chr(10), 0, m.start()) + 1}): no such page")
    bad += [f"outside the repository: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    return bad


def test_the_check_finds_what_it_should(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("See `am/site/default.py`, am/web/topology.py, docs/site.md, dev.sh and\n"
                    "fuzz/findings/credential-crash-... and `tests/web/test_*.py`. But\n"
                    "`am/nowhere.py`, docs/gone/, background-notes.md and ../shared/x.md.\n")
    assert unresolved(page) == ["am/nowhere.py (line 3)", "docs/gone/ (line 3)",
                                "background-notes.md (line 3): no such page",
                                "outside the repository: ../shared"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_file_a_page_mentions_is_in_the_repository(page: Path):
    bad = unresolved(page)
    assert not bad, f"{page.relative_to(REPO)}:\n" + "\n".join(bad)
