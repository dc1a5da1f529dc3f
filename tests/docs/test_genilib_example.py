"""The geni-lib script of docs/experimenter-guide.md (the python block after the marker
`<!-- tests/docs: genilib-example -->`) runs as printed, in its own interpreter, against a
live AM over TLS (tests/interop/stack.py): GetVersion, Allocate, Provision, SliverStatus until
ready, geni_restart, Delete. Afterwards the slice has nothing left at the AM."""
from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.interop.stack import LiveAM, live_am

pytestmark = pytest.mark.slow

GUIDE = REPO / "docs" / "experimenter-guide.md"
MARKER = "<!-- tests/docs: genilib-example -->"


def example_script() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"{GUIDE} must hold the marker {MARKER!r} exactly once"
    match = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)^```", text, re.S | re.M)
    assert match, f"no ```python block right after {MARKER!r} in {GUIDE}"
    return match.group(1)


@pytest.fixture(scope="module")
def am(tmp_path_factory, gcf_fixtures: Path) -> Iterator[LiveAM]:
    with live_am(tmp_path_factory.mktemp("genilib-doc"), gcf_fixtures) as live:
        yield live


def run_script(script: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=script.parent)


def test_genilib_example_runs_against_a_live_am(am: LiveAM, tmp_path: Path):
    script = tmp_path / "genilib_example.py"
    script.write_text(example_script())
    slice_urn, cred = am.dev_slice("gldoc", owner="carol")
    d = am.dev.dir
    done = run_script(script, am.url, am.ca, d / "carol-cert.pem", d / "carol-key.pem", cred,
                      slice_urn)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"AM API 3 at {am.url}"
    assert "allocated 3 slivers" in lines           # two VMs and the LAN
    assert "status: ready" in lines
    assert lines[-2:] == ["restarted; deleting", "deleted 3 slivers"]
    with am.dev_client("carol", [cred]) as ours:
        gone = ours.call("Status", [slice_urn], ours.credentials, {})
    assert gone["code"]["geni_code"] == 12


def test_genilib_example_reports_a_refusal(am: LiveAM, tmp_path: Path):
    """A credential for another slice: the script stops at Allocate with the AM's code."""
    script = tmp_path / "genilib_example.py"
    script.write_text(example_script())
    _, other_cred = am.dev_slice("glother", owner="carol")
    d = am.dev.dir
    done = run_script(script, am.url, am.ca, d / "carol-cert.pem", d / "carol-key.pem",
                      other_cred, "urn:publicid:IDN+geni-am+slice+gldoc2")
    assert done.returncode == 1
    assert "Allocate failed: code 22" in done.stderr or "Allocate failed: code 3" in done.stderr, \
        done.stderr
