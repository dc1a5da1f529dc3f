"""The client's tables are for people: every sliver with its client_id and, once provisioned,
the SSH command of its login (status, describe, provision, wait); every component in
listresources, the OpenFlow datapaths too."""
from __future__ import annotations

import re

from tests.client.conftest import request_rspec
from tests.client.test_cli import cli  # noqa: F401 - fixture


def _rows(out: str, header: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1:]:
        first = line.split()[0] if line.strip() else ""
        if not first or first.isupper() or line.startswith(("slice ", "manifest ", "all ")):
            break                                   # the next table or section
        rows.append(line)
    return rows


def test_tables_show_client_ids_logins_and_datapaths(cli, am_env, tmp_path):  # noqa: F811
    creds = (am_env.user_cred, am_env.slice_cred("tables"))
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(2))
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA alice@laptop\n")

    code, out, _ = cli("listresources", creds=creds)
    assert code == 0
    assert re.search(r"\d+ OpenFlow datapath\(s\)", out), out
    datapaths = _rows(out, "DATAPATH")
    assert datapaths and all("+node+" in d and re.search(r"\b([0-9a-f]{2}:){7}[0-9a-f]{2}\b", d)
                             for d in datapaths), out

    code, out, _ = cli("allocate", "tables", str(rspec), creds=creds)
    assert code == 0, out
    rows = _rows(out, "CLIENT_ID")
    assert sorted(r.split()[0] for r in rows) == ["n0", "n1"]

    assert cli("provision", "tables", "--ssh-key", str(key), creds=creds)[0] == 0
    code, out, err = cli("wait", "tables", "--interval", "0.05", "--timeout", "30", creds=creds)
    assert code == 0, err
    login = re.compile(r"ssh -p \d+ alice@\S+")
    for command in ("wait", "status", "describe"):
        if command != "wait":
            code, out, err = cli(command, "tables", creds=creds)
            assert code == 0, err
        rows = _rows(out, "CLIENT_ID")
        assert sorted(r.split()[0] for r in rows) == ["n0", "n1"], (command, out)
        assert all(login.search(r) for r in rows), (command, out)
    assert cli("delete", "tables", creds=creds)[0] == 0
