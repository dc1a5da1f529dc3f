"""Open vSwitch from Python: a private OVS instance, and the CLI tools pointed at one.

This host has no OVS kernel module and no systemd, so `ovs-ctl` cannot start OVS; `OVSInstance`
starts `ovsdb-server` + `ovs-vswitchd` by hand in a private run directory (every bridge uses the
userspace datapath, `datapath_type=netdev`). `OVSClient` runs `ovs-vsctl` / `ovs-ofctl` against
a given database socket and run directory: one process per configuration command (1-10 ms),
flows in batches through `ovs-ofctl add-flows <br> -` so a slice's whole table is one process.
Failures raise `OVSError` (a `DriverError`) carrying the command and what the tool said.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.base import DriverError

VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
REQUIRED_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl",
                  "ovs-appctl")
OF_PROTOCOLS = "OpenFlow10,OpenFlow13"


class OVSError(DriverError):
    """An OVS tool failed; `stderr` is what it said."""

    def __init__(self, message: str, *, stderr: str = "", transient: bool = False):
        super().__init__(message, transient=transient)
        self.stderr = stderr


def missing_tools(tools: Sequence[str] = REQUIRED_TOOLS) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


@dataclass(frozen=True)
class FlowEntry:
    """One line of `ovs-ofctl dump-flows`, the parts the driver needs."""

    cookie: int
    table: int
    priority: int
    match: str           # the match part as ovs-ofctl prints it (without priority)
    actions: str
    n_packets: int


class OVSClient:
    """The OVS command-line tools bound to one database socket and run directory."""

    def __init__(self, db: str, rundir: str | None = None, *, timeout: float = 20.0):
        self.db = db                        # "unix:/path/db.sock"
        self.rundir = rundir or _rundir_of(db)
        self.timeout = timeout
        self._env = {**os.environ}
        if self.rundir:
            self._env["OVS_RUNDIR"] = self.rundir

    # ---- raw runners ---------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, input: str | None = None) -> str:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                                  env=self._env, timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise OVSError(f"{argv[0]} is not installed on this host") from None
        except subprocess.TimeoutExpired:
            raise OVSError(f"`{' '.join(argv)}` timed out after {self.timeout:g} s "
                           "(is ovs-vswitchd running?)", transient=True) from None
        if proc.returncode != 0:
            err = proc.stderr.strip() or f"exit {proc.returncode}"
            raise OVSError(f"`{' '.join(argv)}` failed: {err}", stderr=err,
                           transient="Connection refused" in err or "database connection" in err)
        return proc.stdout

    def vsctl(self, *args: str, wait: bool = True) -> str:
        """One ovs-vsctl transaction; `--` separated commands in `args` run atomically."""
        argv = ["ovs-vsctl", f"--db={self.db}", f"--timeout={int(self.timeout)}"]
        if not wait:
            argv.append("--no-wait")
        return self.run(argv + list(args))

    def ofctl(self, *args: str, input: str | None = None) -> str:
        return self.run(["ovs-ofctl", "-O", "OpenFlow13", *args], input=input)

    # ---- queries ------------------------------------------------------------------------------
    def bridges(self) -> list[str]:
        return self.vsctl("list-br").split()

    def bridge_exists(self, bridge: str) -> bool:
        return bridge in self.bridges()

    def ports(self, bridge: str) -> list[str]:
        return self.vsctl("list-ports", bridge).split()

    def get(self, table: str, record: str, column: str) -> str:
        return self.vsctl("get", table, record, column).strip()

    def external_ids(self, table: str, record: str) -> dict[str, str]:
        return _parse_map(self.get(table, record, "external_ids"))

    def find(self, table: str, columns: Sequence[str], *conditions: str) -> list[dict[str, Any]]:
        """Rows of `table` matching the conditions, {column: value} with OVSDB JSON decoded
        (maps to dicts, sets to lists, uuids to strings)."""
        out = self.vsctl("--format=json", f"--columns={','.join(columns)}", "find", table,
                         *conditions)
        doc = json.loads(out or '{"data": [], "headings": []}')
        heads = doc.get("headings", list(columns))
        return [{h: _ovsdb_value(v) for h, v in zip(heads, row)} for row in doc.get("data", [])]

    def ofports(self, bridge: str) -> dict[str, int]:
        """Port name -> OpenFlow port number of every interface of `bridge` (not LOCAL)."""
        out = self.ofctl("show", bridge)
        ports: dict[str, int] = {}
        for line in out.splitlines():
            line = line.strip()
            num, sep, rest = line.partition("(")
            if not sep or not num.isdigit():
                continue
            ports[rest.split(")", 1)[0]] = int(num)
        return ports

    def dpid(self, bridge: str) -> str:
        """The bridge's datapath id as 8 colon-separated hex octets.

        ovs-vswitchd fills `datapath_id` in shortly after the bridge appears; on a loaded host
        that can lag the `add-br` transaction, so an empty id is waited for (up to the client's
        timeout) before it counts as an error."""
        deadline = time.monotonic() + self.timeout
        while True:
            raw = self.get("Bridge", bridge, "datapath_id").strip('"')
            if len(raw) == 16:
                return ":".join(raw[i:i + 2] for i in range(0, 16, 2))
            if time.monotonic() >= deadline:
                raise OVSError(f"bridge {bridge} has no datapath id yet ({raw!r})", transient=True)
            time.sleep(0.05)

    def dump_flows(self, bridge: str, match: str | None = None) -> list[FlowEntry]:
        args = ["dump-flows", "--no-names", bridge] + ([match] if match else [])
        return [f for f in (_parse_flow(line) for line in self.ofctl(*args).splitlines())
                if f is not None]

    # ---- changes ------------------------------------------------------------------------------
    def add_flows(self, bridge: str, flows: Iterable[str]) -> None:
        text = "\n".join(flows)
        if text:
            self.ofctl("add-flows", bridge, "-", input=text + "\n")

    def del_flows(self, bridge: str, match: str) -> None:
        self.ofctl("del-flows", bridge, match)

    # ---- link shaping: OpenFlow meters ------------------------------------------------------------
    def set_meter(self, bridge: str, meter_id: int, kbps: int) -> None:
        """Meter `meter_id` on `bridge` drops what exceeds `kbps` kbit/s (a flow applies it
        with the action `meter:<id>` before its output). Meters are OVS's own shaping: the
        userspace datapath (dpif-netdev) runs them itself, whatever the port type, and per
        flow, so links sharing one port are shaped apart. (ingress_policing_rate needs the
        kernel's tc police, which this kernel lacks: OVS accepts it and shapes nothing.)"""
        if kbps <= 0 or meter_id <= 0:
            raise OVSError(f"meter {meter_id}: rate and id must be positive, not {kbps}")
        spec = (f"meter={meter_id},kbps,burst,band=type=drop,rate={int(kbps)},"
                f"burst_size={meter_burst_kbit(kbps)}")
        existing = self.ofctl("dump-meters", bridge)
        verb = "mod-meter" if f"meter={meter_id} " in existing + " " else "add-meter"
        self.ofctl(verb, bridge, spec)

    def del_meter(self, bridge: str, meter_id: int) -> None:
        self.ofctl("del-meter", bridge, f"meter={meter_id}")


def meter_burst_kbit(kbps: int) -> int:
    """The burst a drop meter allows: 0.2 s of traffic (a TCP flow's window at LAN round-trip
    times; much less starves TCP: 100 kbit at 10 Mb/s gave 0.5 Mb/s here), at least 1 Mbit."""
    return max(1000, int(kbps) // 5)


class OVSInstance:
    """A private ovsdb-server + ovs-vswitchd (userspace datapath) under `rundir`.

    For tests and for hosts without a system OVS: `start()` creates the database and starts both
    daemons (about 0.05 s), `stop()` asks them to exit and removes nothing of the caller's.
    """

    def __init__(self, rundir: str | Path, *, netns: str | None = None):
        self.rundir = Path(rundir)
        self.netns = netns      # run vswitchd (and so its datapath and ports) in this namespace
        self.db_path = self.rundir / "conf.db"
        self.sock = self.rundir / "db.sock"

    @property
    def db(self) -> str:
        return f"unix:{self.sock}"

    def client(self) -> OVSClient:
        return OVSClient(self.db, str(self.rundir))

    def _env(self) -> dict[str, str]:
        d = str(self.rundir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d,
                "OVS_SYSCONFDIR": d}

    def _run(self, argv: Sequence[str]) -> None:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, env=self._env(),
                                  timeout=30, check=False)
        except FileNotFoundError:
            raise OVSError(f"{argv[0]} is not installed on this host") from None
        if proc.returncode != 0:
            raise OVSError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}",
                           stderr=proc.stderr)

    def start(self) -> "OVSInstance":
        missing = missing_tools()
        if missing:
            raise OVSError(f"Open vSwitch tools missing: {', '.join(missing)} "
                           "(apt-get install openvswitch-switch)")
        try:
            self.rundir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OVSError(f"cannot create the OVS run directory {self.rundir}: "
                           f"{exc.strerror}") from None
        d = self.rundir
        if not self.db_path.exists():
            self._run(["ovsdb-tool", "create", str(self.db_path), VSWITCH_SCHEMA])
        self._run(["ovsdb-server", str(self.db_path), f"--remote=punix:{self.sock}",
                   "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                   f"--pidfile={d}/ovsdb-server.pid", "--detach",
                   f"--log-file={d}/ovsdb-server.log", f"--unixctl={d}/ovsdb-server.ctl"])
        self._run(["ovs-vsctl", f"--db={self.db}", "--no-wait", "init"])
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        self._run([*inside, "ovs-vswitchd", self.db, f"--pidfile={d}/ovs-vswitchd.pid", "--detach",
                   f"--log-file={d}/ovs-vswitchd.log", f"--unixctl={d}/ovs-vswitchd.ctl"])
        return self

    def add_bridge(self, name: str, *, dpid: str | None = None) -> None:
        """A userspace-datapath bridge that drops everything until someone installs flows."""
        args = ["add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                f"protocols={OF_PROTOCOLS}", "fail_mode=secure"]
        if dpid:
            args.append(f"other-config:datapath-id={dpid.replace(':', '')}")
        self.client().vsctl(*args)

    def pids(self) -> list[int]:
        out = []
        for name in ("ovs-vswitchd", "ovsdb-server"):
            try:
                out.append(int((self.rundir / f"{name}.pid").read_text().strip()))
            except (OSError, ValueError):
                continue
        return out

    def stop(self) -> None:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            ctl = self.rundir / f"{name}.ctl"
            pidfile = self.rundir / f"{name}.pid"
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            if ctl.exists():
                # --cleanup: vswitchd removes its datapaths and ports on the way out; without it
                # the userspace datapath leaves a tap device per bridge and internal port behind
                cleanup = ["--cleanup"] if name == "ovs-vswitchd" else []
                subprocess.run(["ovs-appctl", "-t", str(ctl), "exit", *cleanup],
                               capture_output=True, env=self._env(), timeout=10, check=False)
            _wait_gone(pid, 5.0)


def _alive(pid: int) -> bool:
    """True while `pid` runs; an exited daemon waiting for its (re)parent to reap it (a
    zombie: the detached daemons' parent is whatever init this host has) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rundir_of(db: str) -> str | None:
    if db.startswith("unix:"):
        return str(Path(db[5:]).parent)
    return None


def _ovsdb_value(v: Any) -> Any:
    """OVSDB JSON notation to plain Python: ["map", pairs] -> dict, ["set", xs] -> list."""
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
        tag, body = v
        if tag == "map":
            return {_ovsdb_value(k): _ovsdb_value(x) for k, x in body}
        if tag == "set":
            return [_ovsdb_value(x) for x in body]
        if tag in ("uuid", "named-uuid"):
            return body
    return v


def _parse_map(raw: str) -> dict[str, str]:
    """An OVSDB map as ovs-vsctl prints it: {a="x", b=y}."""
    raw = raw.strip()
    if not raw.startswith("{") or raw == "{}":
        return {}
    out: dict[str, str] = {}
    for item in _split_top(raw[1:-1]):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip().strip('"')] = value.strip().strip('"').replace('\\"', '"')
    return out


def _split_top(body: str) -> list[str]:
    """Split on commas outside double quotes."""
    items, cur, quoted, esc = [], [], False, False
    for ch in body:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == "," and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        items.append("".join(cur))
    return items


def _parse_flow(line: str) -> FlowEntry | None:
    line = line.strip()
    if not line.startswith("cookie="):
        return None
    head, sep, actions = line.partition(" actions=")
    if not sep:
        return None
    fields: dict[str, str] = {}
    match_parts: list[str] = []
    for part in head.replace(", ", ",").replace(" ", ",").split(","):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if key in ("cookie", "duration", "table", "n_packets", "n_bytes", "idle_age",
                   "hard_age", "priority", "idle_timeout", "hard_timeout", "reset_counts"):
            fields[key] = value
        else:
            match_parts.append(part)
    return FlowEntry(cookie=int(fields.get("cookie", "0"), 16),
                     table=int(fields.get("table", "0")),
                     priority=int(fields.get("priority", "32768")),
                     match=",".join(match_parts), actions=actions,
                     n_packets=int(fields.get("n_packets", "0")))


def parse_map(raw: str) -> dict[str, str]:
    return _parse_map(raw)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m drivers.ovs start|stop RUNDIR [--bridge BR [--dpid D] [--port IF=NUM ...]]`:
    start or stop a private OVS for the openflow driver (there is no ovs-ctl on this host)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m drivers.ovs", description=main.__doc__)
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("rundir")
    ap.add_argument("--bridge", help="also create this bridge (userspace datapath, secure mode)")
    ap.add_argument("--dpid", help="its datapath id, e.g. 00:00:00:00:00:00:00:01")
    ap.add_argument("--port", action="append", default=[],
                    help="attach an existing interface as IF=OPENFLOW_PORT_NUMBER")
    args = ap.parse_args(argv)
    inst = OVSInstance(args.rundir)
    try:
        if args.action == "stop":
            inst.stop()
            return 0
        inst.start()
        if args.bridge:
            client = inst.client()
            if args.bridge not in client.bridges():
                inst.add_bridge(args.bridge, dpid=args.dpid)
            for spec in args.port:
                name, _, num = spec.partition("=")
                if not num.isdigit():
                    ap.error(f"--port {spec!r} is not IF=NUMBER")
                client.vsctl("--may-exist", "add-port", args.bridge, name, "--", "set",
                             "interface", name, f"ofport_request={num}")
        print(f"OVS running: ovs_db = \"{inst.db}\"  (OVS_RUNDIR={inst.rundir})")
        return 0
    except OVSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["FlowEntry", "OVSClient", "OVSError", "OVSInstance", "meter_burst_kbit",
           "missing_tools", "parse_map"]
