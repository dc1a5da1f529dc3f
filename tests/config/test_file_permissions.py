"""The AM's state is its user's alone whatever the umask: database, authority keys, sliver
records and logs 0600 in 0700 directories; a state directory open to others is narrowed at
start-up with a warning, one owned by someone else refused."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from am.bootstrap import ensure_dev_authority, genilib_dir
from am.cli import main
from am.config import Settings
from am.fileperms import StateDirError, check_state_dir
from am.store import open_store
from tests.support import wait_until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_state_is_private_under_a_permissive_umask(tmp_path):
    state = tmp_path / "state"
    with umask(0):
        assert check_state_dir(state) == []
        settings, files = ensure_dev_authority(Settings(state_dir=str(state)))
        cred = genilib_dir(files) / "geni-am-alice-usercred.xml"
        store = open_store(settings.effective_database_url, migrate=True)
        try:
            store.ping()
        finally:
            store.close()
        from drivers.fake_state import FakeStateStore
        FakeStateStore(state / "fake-substrate").close()
    assert mode(state) == 0o700
    db = state / "geni-am.sqlite"
    assert mode(db) == 0o600
    for extra in state.glob("geni-am.sqlite*"):      # -wal, -shm, the writers' and migrate locks
        assert mode(extra) & 0o077 == 0, extra
    auth = files.authority_dir
    assert mode(auth) == 0o700 and mode(auth / "trust-roots") == 0o700
    for key in ("ca-key.pem", "am-key.pem", "alice-key.pem"):
        assert mode(auth / key) == 0o600, key
    assert mode(cred) == 0o600 and mode(cred.parent) == 0o700
    for f in (state / "fake-substrate").iterdir():
        assert mode(f) & 0o077 == 0, f


def test_existing_database_open_to_others_is_narrowed(tmp_path):
    db = tmp_path / "old.sqlite"
    db.touch()
    os.chmod(db, 0o644)
    store = open_store(f"sqlite:///{db}", migrate=True)
    store.close()
    assert mode(db) == 0o600


def test_state_dir_open_to_others_is_fixed_with_a_warning(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    (warning,) = check_state_dir(state)
    assert "0755" in warning and "0711" in warning
    assert mode(state) == 0o711                       # traversable, never listable or readable
    assert check_state_dir(state) == []
    os.chmod(state, 0o777)
    check_state_dir(state)
    assert mode(state) == 0o711


@pytest.mark.root
def test_state_dir_of_another_user_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(StateDirError, match="belongs to uid 65534"):
        check_state_dir(state)


@pytest.mark.root
def test_serve_fixes_a_readable_state_dir_and_says_so(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o750)
    inv = tmp_path / "inventory.toml"
    inv.write_text('[[components]]\nname = "n1"\ndriver = "nosuchdriver"\n')
    assert main(["serve", "--state-dir", str(state), "--inventory", str(inv), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "warning: state directory" in err and "was open to others (0750)" in err
    assert mode(state) == 0o710
    os.chown(state, 65534, 65534)
    assert main(["serve", "--state-dir", str(state), "--inventory", str(inv), "--port", "0"]) == 2
    assert "belongs to uid 65534" in capsys.readouterr().err


@pytest.mark.root
def test_sliver_records_and_execute_logs_are_private(tmp_path):
    from rspec.model import Execute
    from tests.drivers.vserver.conftest import driven
    from tests.drivers.vserver.helpers import node

    with umask(0), driven(tmp_path) as driver:
        spec = node("perm", [], executes=(Execute("sh", "echo private"),))
        driver.provision(spec)
        handle = driver.node_handle(spec.sliver_urn)
        # the log is written inside the guest, into its own layer (root's alone on the host)
        log = driver.guests.upper(handle) / "var" / "log" / "geni" / "execute-0.log"
        wait_until(lambda: log.exists() and "private" in log.read_text(),
                   "the execute's log to be written", 10)
        assert mode(log) & 0o007 == 0
        assert mode(driver.state.root_dir(handle)) == 0o700
        assert mode(driver.state.records) == 0o700 and mode(driver.state.locks) == 0o700
        assert mode(driver.state.path(handle)) == 0o600
        assert mode(driver.state.root) == 0o700 and mode(driver.state.roots) == 0o700
