"""`geni-am db`: upgrade an empty database, then check agrees; check refuses an empty one."""
from __future__ import annotations

from am.cli import main


def test_upgrade_then_check(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'am.sqlite'}"
    assert main(["db", "check", "--database", url]) == 1
    assert "geni-am db upgrade" in capsys.readouterr().out
    assert main(["db", "upgrade", "--database", url]) == 0
    assert "empty ->" in capsys.readouterr().out
    assert main(["db", "check", "--database", url]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    assert main(["db", "upgrade", "--database", url]) == 0   # idempotent


def test_bad_database_url_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["db", "current", "--database", "nosuchdb://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geni-am db:") and "Traceback" not in err
