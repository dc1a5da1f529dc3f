"""`geni-am rspec validate`."""
from __future__ import annotations

import pytest

from am.cli import main
from tests.rspec.conftest import DATA


def test_valid_files_print_ok(capsys):
    for name, kind in (("request-digest.xml", "request"), ("ad-digest.xml", "advertisement"),
                       ("manifest-digest.xml", "manifest"),
                       ("openflow-request-digest.xml", None)):
        args = ["rspec", "validate", str(DATA / name)] + (["--type", kind] if kind else [])
        assert main(args) == 0
        assert capsys.readouterr().out.strip() == "OK"


def test_every_problem_with_its_line(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">\n'
                   '<node client_id="a"/>\n<node client_id="a"/>\n'
                   '<link client_id="l"><interface_ref client_id="zz"/></link>\n</rspec>\n')
    assert main(["rspec", "validate", str(bad)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{bad}: line 3, <node>: duplicate node client_id 'a' (first used on line 2)"
    assert "line 4, <interface_ref>" in lines[1] and "'zz'" in lines[1]
    assert "line 4, <link>" in lines[2]


def test_wrong_type_is_reported(capsys):
    assert main(["rspec", "validate", "--type", "request", str(DATA / "ad-digest.xml")]) == 1
    assert "'advertisement'" in capsys.readouterr().out


def test_unreadable_file(tmp_path, capsys):
    assert main(["rspec", "validate", str(tmp_path / "missing.xml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_max_bytes_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["rspec", "validate", "--max-bytes", "0", str(DATA / "request-digest.xml")])
    assert exc.value.code == 2
    assert "positive number of bytes" in capsys.readouterr().err
