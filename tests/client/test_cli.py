"""`geni-am client ...` through the real entry point, against a running AM."""
from __future__ import annotations

import json

import pytest

from am.cli import main
from tests.client.conftest import request_rspec

pytestmark = pytest.mark.slow


def _cli_for(env, capsys):
    def run(*argv: str, creds: tuple = ()) -> tuple[int, str, str]:
        common = ["client", "--url", env.url, "--cert", str(env.cert),
                  "--key", str(env.key), "--ca", str(env.ca)]
        for cred in creds:
            common += ["--cred", str(cred)]
        code = main([*common, *argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def cli(am_env, capsys):
    return _cli_for(am_env, capsys)


def test_cli_life_cycle(cli, am_env, tmp_path):
    creds = (am_env.user_cred, am_env.slice_cred("clicycle"))
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(2))
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA alice@laptop\n")

    code, out, _ = cli("getversion")
    assert code == 0 and "AM API: 3" in out and "geni_sfa 3" in out

    code, out, _ = cli("listresources", creds=creds)
    assert code == 0 and out.startswith("advertisement rspec: 6 node(s)")
    code, out, _ = cli("--xml", "listresources", "--compressed", creds=creds)
    assert code == 0 and out.lstrip().startswith("<") and 'type="advertisement"' in out

    code, out, _ = cli("allocate", "clicycle", str(rspec), creds=creds)
    assert code == 0, out
    assert out.count("allocated") >= 2 and "SLIVER" in out

    code, out, err = cli("provision", "clicycle", "--ssh-key", str(key), creds=creds)
    assert code == 0, err
    assert out.count("provisioned") == 2

    # no --start needed: the provision jobs boot the slivers (start_on_provision, the default)
    code, out, err = cli("wait", "clicycle", "--interval", "0.05", "--timeout", "20",
                         creds=creds)
    assert code == 0, err
    assert "all 2 sliver(s) ready" in out
    bars = [line for line in err.splitlines() if line.startswith("[")]
    assert bars[-1] == "[####################] 2/2 ready"
    assert len(bars) >= 2 and "0/2 ready" in bars[0]   # progress was shown while waiting

    code, out, _ = cli("--json", "status", "clicycle", creds=creds)
    status = json.loads(out)
    assert code == 0 and status["geni_urn"] == am_env.slice_urn("clicycle")
    assert {s["geni_operational_status"] for s in status["geni_slivers"]} == {"geni_ready"}
    sliver = status["geni_slivers"][0]["geni_sliver_urn"]

    code, out, err = cli("poa", "geni_restart", sliver, creds=creds)
    assert code == 0, err
    assert sliver in out
    code, _, err = cli("wait", "clicycle", creds=creds)      # the restart runs in a job
    assert code == 0, err
    code, out, err = cli("poa", "clicycle", "geni_restart", creds=creds)   # omni's order
    assert code == 0, err
    assert sliver in out
    code, _, err = cli("wait", "clicycle", creds=creds)
    assert code == 0, err

    code, out, _ = cli("describe", am_env.slice_urn("clicycle"), "--compressed", creds=creds)
    assert code == 0 and "manifest rspec: 2 node(s)" in out
    code, out, _ = cli("--xml", "describe", "clicycle", creds=creds)
    assert code == 0 and 'type="manifest"' in out

    code, out, _ = cli("renew", "clicycle", "--until", "+2d", creds=creds)
    assert code == 0 and out.count("provisioned") == 2

    grown = tmp_path / "grown.xml"              # Update: one more node; n0 and n1 untouched
    grown.write_text(request_rspec(3))
    code, out, err = cli("update", "clicycle", "--rspec", str(grown), creds=creds)
    assert code == 0, err
    assert out.count("provisioned") == 2 and out.count("allocated") == 1
    assert sliver in out
    code, out, err = cli("provision", "clicycle", creds=creds)
    assert code == 0 and out.count("provisioned") == 1, err

    code, out, _ = cli("delete", "clicycle", creds=creds)
    assert code == 0 and out.count("unallocated") == 3

    code, out, err = cli("status", "clicycle", creds=creds)
    assert code == 1 and out == ""
    assert "SEARCHFAILED (12)" in err and "Traceback" not in err


def test_cli_wait_reports_failures(failing_am, capsys, tmp_path):
    env = failing_am
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(2))
    common = ["client", "--url", env.url, "--cert", str(env.cert), "--key", str(env.key),
              "--ca", str(env.ca), "--cred", str(env.slice_cred("doomed"))]
    assert main([*common, "allocate", "doomed", str(rspec)]) == 0
    assert main([*common, "provision", "doomed"]) == 0
    capsys.readouterr()
    code = main([*common, "wait", "doomed", "--interval", "0.05", "--timeout", "20"])
    out, err = capsys.readouterr()
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 2
    assert all("injected failure in fake provision" in line for line in failed)
    assert "2 of 2 sliver(s) failed" in err
    assert err.splitlines()[-2].startswith("[!!!!!!!!!!!!!!!!!!!!] 0/2 ready, 2 failed")


def test_cli_wait_times_out_needs_start_and_starts(notready_am, capsys, tmp_path):
    # start_on_provision off at this AM: provisioned slivers rest in geni_notready, so plain
    # `wait` must say they need an action, and `wait --start` must start them
    cli = _cli_for(notready_am, capsys)
    creds = (notready_am.slice_cred("slowpoke"),)
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(1))
    assert cli("allocate", "slowpoke", str(rspec), creds=creds)[0] == 0
    assert cli("provision", "slowpoke", creds=creds)[0] == 0
    code, out, err = cli("wait", "slowpoke", "--interval", "0.05", "--timeout", "0.1",
                         creds=creds)
    assert code == 2 and "timed out after 0.1 s: 0/1 ready" in err
    code, out, err = cli("wait", "slowpoke", "--interval", "0.05", "--timeout", "20", creds=creds)
    assert code == 2 and "need an action" in err and "--start" in err
    code, out, err = cli("--json", "status", "slowpoke", creds=creds)
    assert {s["geni_operational_status"] for s in json.loads(out)["geni_slivers"]} == \
        {"geni_notready"}
    code, out, err = cli("wait", "slowpoke", "--start", "--interval", "0.05", "--timeout", "20",
                         creds=creds)
    assert code == 0, err
    assert "all 1 sliver(s) ready" in out
    assert cli("delete", "slowpoke", creds=creds)[0] == 0


def test_cli_wait_times_out_then_ends_ready(cli, am_env, tmp_path):
    # the default AM: the same plain `wait` ends ready, no action needed
    creds = (am_env.slice_cred("quick"),)
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(1))
    assert cli("allocate", "quick", str(rspec), creds=creds)[0] == 0
    assert cli("provision", "quick", creds=creds)[0] == 0
    code, out, err = cli("wait", "quick", "--interval", "0.05", "--timeout", "0.1", creds=creds)
    assert code == 2 and "timed out after 0.1 s: 0/1 ready" in err
    code, out, err = cli("wait", "quick", "--interval", "0.05", "--timeout", "20", creds=creds)
    assert code == 0 and "all 1 sliver(s) ready" in out, err
    assert cli("delete", "quick", creds=creds)[0] == 0


def test_cli_omni_config(am_env, capsys, tmp_path):
    """The omni_config `geni-am serve` prints, plus our ca/credentials keys and a nickname."""
    from am.bootstrap import DevFiles, omni_config
    from am.config import Settings

    d = am_env.authority_dir
    files = DevFiles(authority_dir=d, trust_roots=d / "trust-roots", am_cert=d / "am-cert.pem",
                     am_key=d / "am-key.pem", user_cert=d / "alice-cert.pem",
                     user_key=d / "alice-key.pem", user_credential=d / "alice-cred.xml",
                     created=False)
    text = omni_config(Settings(authority="geni-am:test", public_url=am_env.url), files)
    text = text.replace("[portal]", f"[portal]\nca = {am_env.ca}\n"
                        f"credentials = {am_env.user_cred}, {am_env.slice_cred('omnislice')}")
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA alice@laptop\n")
    text = text.replace("keys = ~/.ssh/id_rsa.pub", f"keys = {key}")
    text += f"\n[aggregate_nicknames]\nmine = urn:publicid:IDN+geni-am:test+authority+am,{am_env.url}\n"
    config = tmp_path / "omni_config"
    config.write_text(text)

    assert main(["client", "--omni-config", str(config), "listresources"]) == 0
    assert "advertisement rspec" in capsys.readouterr().out
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(1))
    base = ["client", "--omni-config", str(config), "--url", "mine"]
    assert main([*base, "allocate", "omnislice", str(rspec)]) == 0
    capsys.readouterr()
    assert main([*base, "--json", "provision", "omnislice"]) == 0   # keys from [alice]
    provisioned = json.loads(capsys.readouterr().out)
    assert provisioned["geni_slivers"][0]["geni_allocation_status"] == "geni_provisioned"
    assert "alice@laptop" in provisioned["geni_rspec"]               # geni_users were sent
    assert main([*base, "delete", "omnislice"]) == 0


def test_cli_bad_input(cli, am_env, tmp_path, capsys):
    code, _, err = cli("allocate", "bad name!", str(tmp_path / "x.xml"))
    assert code == 2 and "neither a slice name" in err
    code, _, err = cli("allocate", "fine", str(tmp_path / "missing.xml"))
    assert code == 2 and "request rspec" in err and "does not exist" in err
    code, _, err = cli("renew", "fine", "--until", "tomorrow")
    assert code == 2 and "neither RFC 3339" in err
    code, _, err = cli("listresources", creds=(tmp_path / "nocred.xml",))
    assert code == 2 and "credential file" in err and "does not exist" in err
    assert main(["client", "--cert", str(am_env.cert), "--key", str(am_env.key),
                 "getversion"]) == 2
    assert "no AM URL" in capsys.readouterr().err
    code, _, err = cli("listresources")              # no credential at all: the AM says why
    assert code == 1 and "FORBIDDEN" in err


def test_poa_argument_order():
    """`poa ACTION TARGET...` as documented, and omni's `poa SLICE ACTION` too."""
    from am.client_cli import _poa_order
    assert _poa_order("geni_start", ["myslice"]) == ("geni_start", ["myslice"])
    assert _poa_order("myslice", ["geni_start"]) == ("geni_start", ["myslice"])
    assert _poa_order("myslice", ["geniam_sync_routes"]) == ("geniam_sync_routes", ["myslice"])
    urn = "urn:publicid:IDN+geni-am+slice+my_slice"
    assert _poa_order("geni_stop", [urn]) == ("geni_stop", [urn])
    assert _poa_order("geni_stop", ["a", "b"]) == ("geni_stop", ["a", "b"])


def test_numeric_options_are_checked(capsys):
    """A zero, negative or NaN timeout is a usage error, not a silent default."""
    import pytest

    from am.cli import main
    for bad in (["--call-timeout", "0"], ["--call-timeout", "-1"], ["--call-timeout", "nan"],
                ["--busy-retries", "-2"], ["--busy-retries", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(["client", *bad, "getversion"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert bad[0] in err and ("must be" in err or "not a number" in err), err


def test_cli_find_slot_calendar_and_booking(cli, am_env, tmp_path):
    creds = (am_env.user_cred, am_env.slice_cred("booked"))
    rspec = tmp_path / "request.xml"
    rspec.write_text(request_rspec(2))
    code, out, err = cli("find-slot", str(rspec), "--duration", "2h", "--from", "+3h",
                         creds=creds)
    assert code == 0, err
    assert out.startswith("fits from ")
    start, end = out.split()[2], out.split()[4]
    code, out, err = cli("allocate", "booked", str(rspec), "--start-time", start,
                         "--end-time", end, creds=creds)
    assert code == 0, err
    assert out.count(f"{start} .. {end}") == 2        # the window, shown per sliver
    chart = tmp_path / "cal.png"
    code, out, err = cli("calendar", "--hours", "8", "--png", str(chart), creds=creds)
    assert code == 0, err
    assert out.startswith("free cpu_milli per component and hour") and "HOUR (UTC)" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = cli("find-slot", str(rspec), "--duration", "0", creds=creds)
    assert code == 2 and "more than 0" in err
    assert cli("delete", "booked", creds=creds)[0] == 0
