"""Fixtures for the rspec library tests."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rspec.schema import SCHEMA_DIR
from tests.conftest import require_tool

DATA = Path(__file__).resolve().parent / "data"
AM = "urn:publicid:IDN+am.example.net+authority+am"
OTHER_AM = "urn:publicid:IDN+other.example.org+authority+am"
FOAM = "urn:publicid:IDN+openflow:foam:site.example.net+authority+am"
SLIVER_TYPES = frozenset({"raw-pc", "default-vm", "emulab-xen", "raw", "xen-vm"})


def data(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.fixture
def xmllint(tmp_path):
    """Validate text with `xmllint --nonet --schema` against a shipped schema file."""
    tool = require_tool("xmllint")

    def run(text: str, schema: str) -> subprocess.CompletedProcess:
        doc = tmp_path / "doc.xml"
        doc.write_text(text, encoding="utf-8")
        return subprocess.run([tool, "--nonet", "--noout", "--schema",
                               str(SCHEMA_DIR / schema), str(doc)],
                              capture_output=True, text=True, timeout=60)
    return run
