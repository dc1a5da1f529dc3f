"""`geni-am serve` as a real process: first run on embedded defaults (fake nodes; the real
default site is tests/site), then SIGTERM."""
from __future__ import annotations

import pytest

import os
import signal
import subprocess
import sys
import urllib.request

from cryptography.hazmat.primitives.serialization import pkcs12

from am.cli import main
from tests.api.conftest import code_of
from tests.api.tlsclient import client_context, proxy
from tests.services import free_port
from tests.support import read_banner

pytestmark = pytest.mark.slow


def test_serve_first_run_prints_settings_and_answers(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENI_AM_")}
    proc = subprocess.Popen([sys.executable, "-m", "am", "serve", "--state-dir", str(tmp_path),
                             "--port", str(port), "--threads", "4", "--fake", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        text = read_banner(proc, 60)
        assert f"https://127.0.0.1:{port}/" in text and "[omni]" in text, proc.stderr.read()
        auth = tmp_path / "authority"
        ctx = client_context(str(auth / "trust-roots" / "ca-cert.pem"),
                             str(auth / "alice-cert.pem"), str(auth / "alice-key.pem"))
        am = proxy(f"https://127.0.0.1:{port}/", ctx)
        assert code_of(am.GetVersion()) == 0
        cred = {"geni_type": "geni_sfa", "geni_version": "3",
                "geni_value": (auth / "alice-cred.xml").read_text()}
        lr = am.ListResources([cred], {"geni_rspec_version": {"type": "GENI", "version": "3"}})
        assert code_of(lr) == 0 and "advertisement" in lr["value"]
        # the dashboard opens with alice's certificate, as the banner says
        dash = f"https://127.0.0.1:{port}/dashboard/"
        assert dash in text and str(auth / "alice.p12") in text
        with urllib.request.urlopen(dash, context=ctx, timeout=30) as page:
            assert page.status == 200 and 'id="live-slices"' in page.read().decode()
        key, cert, _ = pkcs12.load_key_and_certificates((auth / "alice.p12").read_bytes(), b"alice")
        assert "alice" in cert.subject.rfc4514_string() + str(cert.extensions)
        # the geni-lib script runs as printed (copied from the banner into a file)
        script = text.split("--- geni-lib context ---\n", 1)[1].rsplit("--- end ---", 1)[0]
        (tmp_path / "snippet.py").write_text(script)
        ran = subprocess.run([sys.executable, str(tmp_path / "snippet.py")], capture_output=True,
                             text=True, timeout=120, env=env)
        assert ran.returncode == 0, ran.stderr
        assert f"'2': 'https://127.0.0.1:{port}/am/2'" in ran.stdout
        assert sorted(l.split()[1] for l in ran.stdout.splitlines() if l.startswith("node ")) \
            == ["fake1", "fake2", "fake3", "fake4"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    assert rc == 0
    assert (tmp_path / "authority" / "am-cert.pem").is_file()


def test_serve_refuses_bad_configuration(tmp_path, capsys):
    rc = main(["serve", "--state-dir", str(tmp_path), "--behind-proxy"])
    assert rc == 2 and "trusted_proxies" in capsys.readouterr().err
    missing = tmp_path / "nope.toml"
    assert main(["serve", "--config", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_refuses_a_bad_inventory_with_its_reason(tmp_path, capsys):
    """A broken inventory is a one-line message naming file, table and key; no traceback."""
    inv = tmp_path / "inventory.toml"
    inv.write_text('[[components]]\nname = "n1"\ndriver = "nosuchdriver"\n')
    rc = main(["serve", "--state-dir", str(tmp_path / "state"), "--inventory", str(inv),
               "--port", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(inv) in err and "components[0]" in err and "driver" in err
    assert "Traceback" not in err


def test_serve_with_its_database_down_says_so_in_one_line(tmp_path, capsys):
    """Found by the chaos suite: serve started while PostgreSQL was restarting died with an
    OperationalError traceback. Now: one line naming the database (no password), exit 1 (a
    transient failure: a supervisor starts it again)."""
    from tests.services import free_port
    url = f"postgresql+psycopg://geniam:secret@127.0.0.1:{free_port()}/nothing"
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[site]\nname = "x"\n\n[drivers.fake]\nnodes = 1\n'
                   f'state_dir = "{tmp_path / "substrate"}"\n')
    rc = main(["serve", "--state-dir", str(tmp_path / "state"), "--database", url,
               "--inventory", str(inv), "--port", "0"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "is not usable" in err and "127.0.0.1" in err and "Connection refused" in err
    assert "secret" not in err and "Traceback" not in err
