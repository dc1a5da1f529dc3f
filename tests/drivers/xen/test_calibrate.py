"""`geni-am calibrate forwarding`: the knee found on given figures, and the command's argument
handling (the measurement itself is bench/bench_forwarding.py's, run by hand as root)."""
from __future__ import annotations

import pytest

from am.cli import main
from drivers.xen.calibrate_cli import counts
from drivers.xen.forwarding import Point, knee


def point(n: int, *per_router: float, rate: float = 10.0) -> Point:
    delivered = sum(per_router)
    return Point("guest", n, rate * n, delivered, 100 * (1 - delivered / (rate * n)),
                 list(per_router))


def test_no_degradation_gives_the_largest_count():
    pts = [point(1, 10), point(2, 10, 9.9), point(4, 9.8, 9.9, 10, 9.5)]
    assert knee(pts, 10) == 4


def test_the_knee_is_the_last_count_before_the_first_degraded_one():
    pts = [point(1, 10), point(2, 9.9, 9.9), point(4, 9, 9, 8.5, 9), point(8, *[6.0] * 8)]
    assert knee(pts, 10) == 2           # at N=4 a router delivered 8.5 of 10: 15 % lost
    assert knee(pts, 20) == 4
    assert knee(reversed(pts), 10) == 2  # order of the points does not matter


def test_one_starved_router_is_degradation_even_if_the_total_looks_fine():
    pts = [point(1, 10), point(4, 10, 10, 10, 7)]      # 92.5 % in all, one router at 70 %
    assert knee(pts, 10) == 1


def test_a_lucky_point_past_the_knee_does_not_count():
    pts = [point(1, 10), point(2, 5, 5), point(4, 10, 10, 10, 10)]
    assert knee(pts, 10) == 1


def test_degraded_from_the_start_gives_zero_and_bad_input_is_refused():
    assert knee([point(1, 2)], 10) == 0
    assert knee([], 10) == 0
    with pytest.raises(ValueError, match="threshold"):
        knee([point(1, 10)], 100)
    with pytest.raises(ValueError, match="N = 0"):
        knee([Point("guest", 0, 0, 0, 0, [])], 10)
    assert knee([point(2, 10)], 10) == 0     # a point missing a router's figure is no capacity


def test_counts_are_parsed_sorted_and_bounded():
    assert counts("8,1, 2,2,4") == [1, 2, 4, 8]


@pytest.mark.parametrize("argv, message", [
    (["--counts", "0,2"], "router counts must be 1-64, not 0"),
    (["--counts", "1,x"], "counts must be whole numbers"),
    (["--counts", ","], "at least one router count"),
    (["--knee-loss", "100"], "between 0 and 99.9"),
    (["--rate-mbit", "fast"], "not a number: 'fast'"),
    (["--memory-mb", "32"], "at least 96"),
])
def test_bad_arguments_are_refused_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "forwarding", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_calibrate_needs_a_measurement(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate"])
    assert exit_.value.code == 2 and "required: WHAT" in capsys.readouterr().err


def test_a_host_without_the_tools_is_told_what_it_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))          # nothing installed on this PATH
    assert main(["calibrate", "forwarding", "--counts", "1"]) == 1
    err = capsys.readouterr().err
    assert "iperf3 (apt-get install iperf3)" in err
    assert "qemu-system-x86_64 (apt-get install qemu-system-x86)" in err
