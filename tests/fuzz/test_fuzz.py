"""The fuzzing harnesses (fuzz/): every seed passes, an untyped error is caught as a finding,
and a bounded libFuzzer run of every harness finds nothing (the long form is by hand:
`python -m fuzz.run --seconds 600`, docs/testing-under-faults.md)."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.harness import HARNESSES, Finding, seeds

REPO = Path(__file__).resolve().parents[2]
CI_SECONDS = 24          # split between the three harnesses


@pytest.fixture(scope="module")
def targets():
    """Each harness' TestOneInput, built once (uninstrumented: plain Python here). The API
    harness quiets the `am` logger for the fuzzer; put it back for the rest of the suite."""
    am_log = logging.getLogger("am")
    saved = (list(am_log.handlers), am_log.propagate)
    try:
        yield {name: h.build() for name, h in HARNESSES.items()}
    finally:
        am_log.handlers[:], am_log.propagate = saved


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_every_seed_is_answered_with_typed_errors_only(targets, name):
    corpus = seeds(name)
    assert len(corpus) >= 8, f"seed corpus of {name} is too small"
    for data in corpus:
        targets[name](data)
    # the classic bad inputs too
    for data in (b"", b"\x00", b"<", b"<?xml version='1.0'?>", b"\xff\xfe<\x00a\x00>\x00",
                 b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", b"-----BEGIN CERTIFICATE-----\n"):
        targets[name](data)


def test_an_untyped_exception_in_the_rspec_parser_escapes_the_harness(targets, monkeypatch):
    import rspec.request

    def broken(*_args, **_kw):
        raise KeyError("bug")

    monkeypatch.setattr(rspec.request._RequestReader, "read", broken)
    with pytest.raises(KeyError):
        targets["rspec"](seeds("rspec")[0])


def test_a_handler_crash_behind_the_api_catch_all_is_a_finding(targets, monkeypatch):
    """The dispatcher answers ERROR and logs the traceback: the harness turns that into a
    Finding carrying the traceback."""
    from am.service.aggregate import Aggregate

    def broken(*_args, **_kw):
        raise ZeroDivisionError("bug in the advertisement")

    monkeypatch.setattr(Aggregate, "advertisement", broken)
    listresources = next(s for s in seeds("api") if b"ListResources" in s and s[:1] == b"<")
    with pytest.raises(Finding, match="ZeroDivisionError: bug in the advertisement"):
        targets["api"](listresources)


def test_a_certificate_with_a_malformed_extension_is_a_certificate_error(gcf_fixtures):
    """Found by the credential harness: cryptography parses extensions lazily, so a corrupt
    subjectAltName surfaced as a ValueError from the chain check instead of a refusal; and an
    X.509 version field out of range raised cryptography's InvalidVersion (no ValueError)."""
    from credentials.certs import load_pem_chain
    from credentials.errors import CertificateError, CredentialInvalid

    crash = (REPO / "fuzz" / "regressions" / "credential-bad-san.pem").read_bytes()
    with pytest.raises(CertificateError, match="unparseable certificate"):
        load_pem_chain(crash)
    bad_version = (REPO / "fuzz" / "regressions" / "credential-bad-version.xml").read_bytes()
    from credentials.document import parse_document
    with pytest.raises(CredentialInvalid, match="<target_gid>: unparseable PEM certificate: "
                                                "34 is not a valid X509 version"):
        parse_document(bad_version, 1 << 20)


@pytest.mark.slow
def test_bounded_fuzz_run_of_every_harness_finds_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "--seconds", str(CI_SECONDS),
         "--artifacts", str(tmp_path / "findings")],
        cwd=REPO, capture_output=True, text=True, timeout=CI_SECONDS * 3 + 60)
    print(proc.stdout)          # the executions table, in the CI log with -s / on failure
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = dict(re.findall(r"^(api|credential|rspec)\s+(\d+)", proc.stdout, re.M))
    assert set(counts) == set(HARNESSES), proc.stdout
    for name, executions in counts.items():
        # each harness really ran beyond its seeds (a few hundred per second when idle)
        assert int(executions) > 3 * len(seeds(name)), proc.stdout


@pytest.mark.parametrize("path", sorted((REPO / "fuzz" / "regressions").iterdir()),
                         ids=lambda p: p.name)
def test_every_past_finding_is_now_a_typed_refusal(targets, path):
    targets[path.name.split("-", 1)[0]](path.read_bytes())
