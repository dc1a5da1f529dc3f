"""Credential verification speed: in-process cold and cached vs the xmlsec1 subprocess.

Usage: .venv/bin/python bench/bench_credentials.py [--rounds N] [--fixtures DIR]

Verifies the two-level delegated slice credential `slice-cred-delegated-to-bob.xml`:
* cold: first sight (a fresh cache each time): parse, both signatures, every chain, delegation;
* cached: a repeat of the same bytes against the same trust roots;
* xmlsec1: `xmlsec1 --verify --node-id Sig_refN --trusted-pem ca-cert.pem
  --enabled-key-data x509 FILE` as a subprocess, once per signature as the reference AM does
  (it checks the signatures only: none of the chain, delegation or expiry rules).
Targets: cold <= 2 ms, cached <= 0.05 ms, cold >= 10x faster than the subprocess.

Revocation (`credentials.crl`): the same cold verify with a CRL of `--crl-entries` serials
(default 10,000) from the fixture CA in force, the time to load and verify that CRL, and one
revocation lookup against CRLs of 1,000 / 10,000 / 100,000 entries (a dict per issuer: the
lookup must not grow with the CRL). Targets: cold verify with the CRL within 10% of without;
lookup flat across sizes.
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from credentials.cache import VerificationCache  # noqa: E402
from credentials.certs import TrustStore, load_pem_chain  # noqa: E402
from credentials.crl import RevokedEntry, build_crl, load_crl_files  # noqa: E402
from credentials.verify import CredentialVerifier  # noqa: E402


def median_ms(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def crl_file(fixtures: Path, entries: int, directory: Path) -> Path:
    """A PEM CRL from the fixture CA with `entries` random serials (never the fixtures' 3)."""
    ca = load_pem_chain((fixtures / "ca-cert.pem").read_bytes())[0]
    key = serialization.load_pem_private_key((fixtures / "ca-key.pem").read_bytes(), None)
    now = datetime.now(timezone.utc)
    rng = random.Random(entries)
    serials = {rng.getrandbits(120) | (1 << 120) for _ in range(entries)}
    revoked = [RevokedEntry(s, now, None) for s in serials]
    crl = build_crl(ca, key, revoked, this_update=now,   # type: ignore[arg-type]
                    next_update=now + timedelta(days=7), number=1)
    path = directory / f"ca-{entries}.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def bench_revocation(fixtures: Path, data: bytes, rounds: int, entries: int) -> None:
    ca_path = fixtures / "ca-cert.pem"
    with tempfile.TemporaryDirectory() as tmp:
        path = crl_file(fixtures, entries, Path(tmp))
        plain = TrustStore.from_pem_files([ca_path])
        trust = TrustStore.from_pem_files([ca_path])
        start = time.perf_counter()
        trust.set_revocations(load_crl_files([path], trust.roots))
        load_ms = (time.perf_counter() - start) * 1000

        # without and with the CRL, interleaved round by round so load drift hits both alike
        without, with_crl = [], []
        for index in range(rounds + 20):
            for store, samples in ((plain, without), (trust, with_crl)):
                begin = time.perf_counter()
                CredentialVerifier(store, cache=VerificationCache()).verify(data)
                if index >= 20:   # the first rounds warm up
                    samples.append(time.perf_counter() - begin)
        plain_ms = statistics.median(without) * 1000
        crl_ms = statistics.median(with_crl) * 1000
        print(f"CRL of {entries} entries ({path.stat().st_size // 1024} KB PEM): "
              f"load + signature check {load_ms:.1f} ms")
        print(f"cold verify with that CRL in force:   median {crl_ms:.3f} ms vs {plain_ms:.3f} "
              f"without, interleaved over {rounds} ({(crl_ms / plain_ms - 1) * 100:+.1f}%; "
              "target within 10%)")

        bob = load_pem_chain((fixtures / "bob-cert.pem").read_bytes())
        lookups = 20000
        for size in (1000, 10000, 100000):
            sized = TrustStore.from_pem_files([ca_path])
            sized.set_revocations(load_crl_files([crl_file(fixtures, size, Path(tmp))],
                                                 sized.roots))
            index, issuer = sized.revocations, sized.roots[0]   # as verify_chain looks it up
            for _ in range(1000):
                index.check(bob[0], issuer, "bob")
            start = time.perf_counter()
            for _ in range(lookups):
                index.check(bob[0], issuer, "bob")
            per_us = (time.perf_counter() - start) / lookups * 1e6
            print(f"revocation lookup, CRL of {size:>6} entries: {per_us:.2f} us per certificate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--subprocess-rounds", type=int, default=30)
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared/fixtures/gcf")
    parser.add_argument("--crl-entries", type=int, default=10000)
    args = parser.parse_args()
    cred = args.fixtures / "slice-cred-delegated-to-bob.xml"
    ca = args.fixtures / "ca-cert.pem"
    data = cred.read_bytes()
    trust = TrustStore.from_pem_files([ca])

    def cold() -> None:
        CredentialVerifier(trust, cache=VerificationCache()).verify(data)

    cached_verifier = CredentialVerifier(trust, cache=VerificationCache())
    cached_verifier.verify(data)
    for _ in range(20):
        cold()   # warm the interpreter and OpenSSL, not the cache

    cold_ms = median_ms(cold, args.rounds)
    cached_ms = median_ms(lambda: cached_verifier.verify(data), args.rounds * 4)
    print(f"credential: {cred.name} ({len(data)} bytes, 2 levels, 2 signatures)")
    print(f"cold verify (in-process, first sight): median {cold_ms:.3f} ms "
          f"over {args.rounds} (target <= 2 ms)")
    print(f"cached verify:                        median {cached_ms:.4f} ms "
          f"over {args.rounds * 4} (target <= 0.05 ms)")

    bench_revocation(args.fixtures, data, args.rounds, args.crl_entries)

    xmlsec1 = shutil.which("xmlsec1")
    if not xmlsec1:
        print("xmlsec1 not installed: subprocess comparison skipped")
        return 0

    def run(node: str) -> None:
        subprocess.run([xmlsec1, "--verify", "--node-id", node, "--trusted-pem", str(ca),
                        "--enabled-key-data", "x509", str(cred)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    one_ms = median_ms(lambda: run("Sig_ref1"), args.subprocess_rounds)
    both_ms = median_ms(lambda: (run("Sig_ref0"), run("Sig_ref1")), args.subprocess_rounds)
    print(f"xmlsec1 subprocess, one signature:    median {one_ms:.2f} ms "
          f"over {args.subprocess_rounds}")
    print(f"xmlsec1 subprocess, both signatures:  median {both_ms:.2f} ms")
    print(f"ratio cold vs one subprocess:   {one_ms / cold_ms:.1f}x faster (target >= 10x)")
    print(f"ratio cold vs both subprocesses: {both_ms / cold_ms:.1f}x faster")
    print(f"ratio cached vs both subprocesses: {both_ms / cached_ms:.0f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
