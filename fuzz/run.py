"""Run every harness (or some) for a bounded time or number of executions and report.

  python -m fuzz.run --seconds 600             # the long form, by hand: 600 s split evenly
  python -m fuzz.run --runs 3000 --seconds 30  # bounded (what the CI test runs)
  python -m fuzz.run --harness rspec --keep-corpus /var/tmp/rspec-corpus

Each harness runs in its own process (libFuzzer exits the process when it stops) over a scratch
corpus seeded from fuzz/corpus/NAME. A finding (an untyped exception, a `Finding`, a timeout,
a memory blow-up) leaves the input in --artifacts (default fuzz/findings/) and the run exits 1.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fuzz.harness import FUZZ_DIR, HARNESSES

REPO = FUZZ_DIR.parent


@dataclass
class Outcome:
    harness: str
    executions: int
    seconds: float
    exit_code: int
    finding: str = ""          # the traceback / libFuzzer report when something was found
    artifacts: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.finding


def _executions(output: str) -> int:
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
    if found:
        return int(found[-1])
    done = re.findall(r"Done (\d+) runs", output)
    return int(done[-1]) if done else 0


def _finding(output: str) -> str:
    """The report of what crashed: atheris' Python traceback or libFuzzer's error."""
    for marker in ("=== Uncaught Python exception: ===", "==ERROR: libFuzzer", "ERROR: libFuzzer"):
        at = output.find(marker)
        if at >= 0:
            end = output.find("MS: ", at)
            return output[at:end if end > at else at + 6000].strip()
    return ""


def run_one(name: str, *, seconds: float, runs: int | None, artifacts: Path,
            corpus: Path | None = None, timeout_per_input: int = 20) -> Outcome:
    harness = HARNESSES[name]
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"geniam-fuzz-{name}-") as scratch, \
            tempfile.TemporaryDirectory(prefix=f"geniam-fuzz-{name}-tmp-") as tmp:
        work = corpus or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "fuzz.one", name,
               f"-max_total_time={max(1, int(seconds))}", f"-timeout={timeout_per_input}",
               "-rss_limit_mb=2048", "-print_final_stats=1", "-max_len=65536",
               f"-artifact_prefix={artifacts}/{name}-"]
        if runs is not None:
            cmd.append(f"-runs={runs}")
        cmd += [str(work), str(harness.corpus)]
        started = time.monotonic()
        # the harness' own temporary files (the API's store) go where they are removed after:
        # libFuzzer ends the process without running atexit handlers
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", env={**os.environ, "TMPDIR": tmp})
        elapsed = time.monotonic() - started
    output = proc.stdout
    made = tuple(sorted(re.findall(r"Test unit written to (\S+)", output)))
    finding = _finding(output)
    if proc.returncode != 0 and not finding:
        finding = f"exit code {proc.returncode}:\n{output[-4000:]}"
    return Outcome(name, _executions(output), elapsed, proc.returncode, finding, made)


def run(names: list[str], *, seconds: float, runs: int | None, artifacts: Path,
        corpus_root: Path | None = None) -> list[Outcome]:
    per = seconds / len(names)
    return [run_one(n, seconds=per, runs=runs, artifacts=artifacts,
                    corpus=corpus_root / n if corpus_root else None) for n in names]


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'harness':<12}{'executions':>12}{'seconds':>9}{'exec/s':>9}  result"]
    for o in outcomes:
        rate = o.executions / o.seconds if o.seconds else 0.0
        result = "ok" if o.ok else "FINDING " + " ".join(o.artifacts)
        lines.append(f"{o.harness:<12}{o.executions:>12}{o.seconds:>9.1f}{rate:>9.0f}  {result}")
    lines.append(f"{'total':<12}{sum(o.executions for o in outcomes):>12}"
                 f"{sum(o.seconds for o in outcomes):>9.1f}")
    for o in outcomes:
        if not o.ok:
            lines += ["", f"--- {o.harness} ---", o.finding]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="total time, split evenly between the harnesses (60)")
    parser.add_argument("--runs", type=int, default=None,
                        help="stop each harness after this many executions")
    parser.add_argument("--harness", action="append", choices=sorted(HARNESSES),
                        help="run only this harness (repeatable; default all)")
    parser.add_argument("--artifacts", type=Path, default=FUZZ_DIR / "findings",
                        help="where crashing inputs are written (fuzz/findings)")
    parser.add_argument("--keep-corpus", type=Path, default=None, metavar="DIR",
                        help="grow a corpus in DIR/NAME across runs (default: scratch)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or (args.runs is not None and args.runs < 1):
        parser.error("--seconds and --runs must be positive")
    try:
        outcomes = run(args.harness or list(HARNESSES), seconds=args.seconds, runs=args.runs,
                       artifacts=args.artifacts.resolve(), corpus_root=args.keep_corpus)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(report(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
