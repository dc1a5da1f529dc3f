"""The emulated NetFPGA card: a process that turns a card's registers into real forwarding.

There is no NetFPGA here, so each card gets a process (one per card, started and stopped like
OVS: `python -m drivers.netfpga.card start|stop|run`) that owns:

* a private ovsdb-server + ovs-vswitchd (userspace datapath) running as its children, which die
  with it (PR_SET_PDEATHSIG): a killed card forwards nothing, as a card without power;
* one bridge `<prefix>br` programmed with OpenFlow rules compiled from the registers
  (`drivers.netfpga.pipeline`); it recompiles whenever the configuration generation moves and
  then reports the generation it runs, so software can wait for a change to be in force;
* the card's ports nf0..nfN-1 as veth pairs: `<prefix>i<k>` in the bridge, `<prefix>p<k>` the
  wire end that experiments take (move it into a container, a VM's bridge, a switch);
* per slot a CPU port (`<prefix>c<s>` in the bridge, `<prefix>h<s>` for the slot's control
  plane) and a card-software port (`<prefix>m<s>` / `<prefix>s<s>`) through which the card's
  own software learns ARP and sends ARP requests for next hops the ARP table lacks, as the
  reference router's software does. No packet is forwarded in Python.

Every `report_s` the process copies port and flow counters into the counter registers and beats
its heartbeat. Interfaces are kept across restarts (a restarted card finds its wires where they
were); `cleanup` removes them.
"""
from __future__ import annotations

import argparse
import ctypes
import ipaddress
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers import hostnet
from drivers.base import DriverError
from drivers.netfpga.pipeline import (
    COOKIE_BASE,
    KINDS,
    access_ofport,
    access_wires,
    compile_flows,
    cpu_macs,
    cpu_ofport,
    kind_of,
    port_ofport,
    soft_ofport,
)
from drivers.netfpga.registers import REG_CONFIG_GEN, REG_PIPELINE_GEN, REG_PIPELINE_PID
from drivers.netfpga.simulated import CardState, SimulatedCard
from drivers.ovs import VSWITCH_SCHEMA, OVSClient, OVSError, missing_tools

ETH_P_ALL = 0x0003
PR_SET_PDEATHSIG = 1
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,8}$")
_DUMP_PORT = re.compile(r"port\s+(\d+):\s+rx pkts=(\d+), bytes=(\d+).*?tx pkts=(\d+), bytes=(\d+)",
                        re.DOTALL)


@dataclass(frozen=True)
class CardNames:
    """Interface names of one emulated card (all within the kernel's 15 characters)."""

    prefix: str

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def netns(self) -> str:
        """The card's own network namespace: its switch runs there, so each card's userspace
        datapath (whose `ovs-netdev` device is one per namespace) meets no other OVS."""
        return f"{self.prefix}ns"

    def inner(self, port: int) -> str:
        return f"{self.prefix}i{port}"

    def wire(self, port: int) -> str:
        return f"{self.prefix}p{port}"

    def cpu(self, slot: int) -> str:
        return f"{self.prefix}c{slot}"

    def control(self, slot: int) -> str:
        return f"{self.prefix}h{slot}"

    def soft_bridge(self, slot: int) -> str:
        return f"{self.prefix}m{slot}"

    def soft(self, slot: int) -> str:
        return f"{self.prefix}s{slot}"

    def access(self, port: int, vlan: int) -> str:
        """The wire end of port `port`'s VLAN `vlan` with the tag popped (an access port of
        the card's VLAN breakout): what a container that cannot tag takes."""
        return f"{self.prefix}t{port}{vlan:03x}"

    def access_pattern(self, port: int) -> str:
        """`access(port, vlan)` as a format string with the field `vlan` (for inventories)."""
        return f"{self.prefix}t{port}" + "{vlan:03x}"

    def access_inner(self, port: int, vlan: int) -> str:
        return f"{self.prefix}u{port}{vlan:03x}"


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise DriverError(f"interface prefix {prefix!r} must be a lower-case letter then up to 8 "
                          "letters or digits (names are <prefix>p0, <prefix>br, ...)")
    return prefix


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class CardProcess:
    """The body of `python -m drivers.netfpga.card run`."""

    def __init__(self, card_file: str | Path, rundir: str | Path, prefix: str, *,
                 poll_s: float = 0.05, report_s: float = 0.5):
        if not Path(card_file).is_file():
            raise DriverError(f"no card file {card_file} (the NetFPGA driver creates it with the "
                              "configured geometry)")
        self.card = SimulatedCard(card_file)
        self.rundir = Path(rundir)
        self.names = CardNames(check_prefix(prefix))
        self.poll_s = poll_s
        self.report_s = report_s
        self.children: list[subprocess.Popen] = []
        self.ovs = OVSClient(f"unix:{self.rundir / 'db.sock'}", str(self.rundir))
        self.sockets: dict[int, socket.socket] = {}     # slot -> card-software port
        self.compiled = -1
        self.state: CardState | None = None
        self._asked: dict[tuple[int, str], float] = {}
        self._stop = False

    # ---- start ----------------------------------------------------------------------------------
    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        with open(self.rundir / f"{Path(argv[0]).name}.out", "ab") as log:
            # preexec_fn: the card process is single-threaded; the child must die with it
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent,  # noqa: PLW1509
                                    env=self._env())
        self.children.append(proc)
        return proc

    def _env(self) -> dict[str, str]:
        d = str(self.rundir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d,
                "OVS_SYSCONFDIR": d}

    def start_ovs(self) -> None:
        missing = missing_tools()
        if missing:
            raise OVSError(f"Open vSwitch tools missing: {', '.join(missing)}")
        d = self.rundir
        d.mkdir(parents=True, exist_ok=True)
        for stale in ("conf.db", ".conf.db.~lock~", "db.sock", "ovsdb-server.ctl",
                      "ovs-vswitchd.ctl", f"{self.names.bridge}.mgmt",
                      f"{self.names.bridge}.snoop"):
            (d / stale).unlink(missing_ok=True)      # a fresh database: rebuilt from registers
        subprocess.run(["ovsdb-tool", "create", str(d / "conf.db"), VSWITCH_SCHEMA], check=True,
                       capture_output=True)
        self._spawn(["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}",
                     f"--unixctl={d / 'ovsdb-server.ctl'}", f"--log-file={d / 'ovsdb-server.log'}"])
        _wait_for(lambda: (d / "db.sock").exists(), 10, "ovsdb-server's socket")
        self.ovs.vsctl("--no-wait", "init", wait=False)
        hostnet.netns_add(self.names.netns)
        self._spawn(["ip", "netns", "exec", self.names.netns,
                     "ovs-vswitchd", f"unix:{d / 'db.sock'}", f"--unixctl={d / 'ovs-vswitchd.ctl'}",
                     f"--log-file={d / 'ovs-vswitchd.log'}"])
        _wait_for(lambda: (d / "ovs-vswitchd.ctl").exists(), 10, "ovs-vswitchd")
        br = self.names.bridge
        self.ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                       "protocols=OpenFlow13", "fail_mode=secure",
                       "other_config:disable-in-band=true")

    def _veth(self, inner: str, outer: str, *, outer_mac: str | None = None) -> None:
        """A veth pair whose `inner` end is in the card's namespace; an existing one (its outer
        end may be inside a container by now) is kept."""
        ns = self.names.netns
        if hostnet.find_link(ns, inner) is None:
            hostnet.link_delete(None, inner)
            hostnet.link_delete(None, outer)
            hostnet.veth_add(inner, outer)
            if outer_mac:
                hostnet.link_set(None, outer, mac=outer_mac)
            hostnet.link_set(None, outer, up=True)
            _tx_off(None, outer)
            hostnet.link_move(inner, ns)
        hostnet.link_set(ns, inner, up=True)
        _tx_off(ns, inner)

    def build(self) -> None:
        g = self.card.geometry
        n = self.names
        state = self.card.hw_state()
        ports: list[tuple[str, int]] = []
        for p in range(g.ports):
            self._veth(n.inner(p), n.wire(p))
            ports.append((n.inner(p), port_ofport(p)))
        for s in range(g.slots):
            self._veth(n.cpu(s), n.control(s), outer_mac=cpu_macs(state.port_macs[0], s)[1])
            self._veth(n.soft_bridge(s), n.soft(s))
            ports += [(n.cpu(s), cpu_ofport(s)), (n.soft_bridge(s), soft_ofport(s))]
        args: list[str] = []
        for name, num in ports:
            args += ["--", "--may-exist", "add-port", n.bridge, name, "--", "set", "interface",
                     name, f"ofport_request={num}"]
        self.ovs.vsctl(*args[1:])
        for s in range(g.slots):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((n.soft(s), 0))
            sock.setblocking(False)
            self.sockets[s] = sock

    # ---- run ------------------------------------------------------------------------------------
    def breakout(self, state: CardState) -> None:
        """An access wire (`<prefix>t<port><vlan>`) for every VLAN a slot has on a port: the
        breakout switch on the card's side of the cable, made in OVS (the kernel here has no
        802.1Q). Wires no slot uses any more are kept (one may be in a container)."""
        n = self.names
        present = {li.name for li in hostnet.links(n.netns)}
        args: list[str] = []
        for port, vlan in access_wires(state):
            inner = n.access_inner(port, vlan)
            if inner in present:
                continue
            self._veth(inner, n.access(port, vlan))
            args += ["--", "--may-exist", "add-port", n.bridge, inner, "--", "set", "interface",
                     inner, f"ofport_request={access_ofport(port, vlan)}"]
        if args:
            self.ovs.vsctl(*args[1:])

    def compile(self) -> None:
        if self.card.read(REG_CONFIG_GEN) == self.compiled:
            return
        state = self.card.hw_state()
        self.breakout(state)
        flows = compile_flows(state)
        self.ovs.run(["ovs-ofctl", "-O", "OpenFlow13", "replace-flows", self.names.bridge, "-"],
                     input="\n".join(flows) + "\n")
        self.state = state
        self.compiled = state.generation
        self.card.hw_report(generation=state.generation)

    def report(self) -> None:
        ports: dict[int, dict[str, int]] = {}
        text = self.ovs.ofctl("dump-ports", self.names.bridge)
        for m in _DUMP_PORT.finditer(text):
            num = int(m.group(1))
            if 1 <= num <= self.card.geometry.ports:
                ports[num - 1] = {"rx_packets": int(m.group(2)), "rx_bytes": int(m.group(3)),
                                  "tx_packets": int(m.group(4)), "tx_bytes": int(m.group(5))}
        slots: dict[int, dict[str, int]] = {s: {} for s in range(self.card.geometry.slots)}
        for f in self.ovs.dump_flows(self.names.bridge,     # the counting flows only
                                     f"cookie={COOKIE_BASE:#x}/{0xFFFF << 48:#x}"):
            found = kind_of(f.cookie)
            if found and found[1] in slots:
                name, s = found
                slots[s][name] = slots[s].get(name, 0) + f.n_packets
        for counts in slots.values():
            for name in KINDS:
                counts.setdefault(name, 0)
        self.card.hw_report(heartbeat=int(time.time()), ports=ports, slots=slots)

    def heal(self) -> None:
        """A port whose wire was destroyed (its container's namespace deleted with the wire in
        it) gets a new cable: the pair is made again and put back on its OpenFlow port."""
        n = self.names
        present = {li.name for li in hostnet.links(n.netns)}
        mac0 = self.state.port_macs[0] if self.state else None
        lost = [(n.inner(p), n.wire(p), port_ofport(p), None)
                for p in range(self.card.geometry.ports) if n.inner(p) not in present]
        lost += [(n.cpu(s), n.control(s), cpu_ofport(s), cpu_macs(mac0, s)[1] if mac0 else None)
                 for s in range(self.card.geometry.slots) if n.cpu(s) not in present]
        for inner, outer, num, mac in lost:      # a control plane's namespace went with it
            self._veth(inner, outer, outer_mac=mac)
            self.ovs.vsctl("--", "--if-exists", "del-port", n.bridge, inner, "--",
                           "add-port", n.bridge, inner, "--", "set", "interface",
                           inner, f"ofport_request={num}")

    def software(self, slot: int, frame: bytes) -> None:
        """The card's software path: learn ARP, ask for next hops the ARP table lacks."""
        if len(frame) < 42 or self.state is None:
            return
        etype = struct.unpack_from("!H", frame, 12)[0]
        if etype == 0x0806:
            op = struct.unpack_from("!H", frame, 20)[0]
            sha, spa = frame[22:28], frame[28:32]
            if op in (1, 2) and spa != b"\0\0\0\0":
                self.card.hw_learn_arp(slot, socket.inet_ntoa(spa), _mac(sha))
        elif etype == 0x0800:
            src_mac = _mac(frame[6:12])
            next_hop = socket.inet_ntoa(frame[26:30])
            key = (slot, next_hop)
            now = time.monotonic()
            if now - self._asked.get(key, 0.0) < 0.2:
                return
            self._asked[key] = now
            own = self._sender_for(slot, next_hop)
            if own is None:
                return
            frame = (b"\xff" * 6 + _mac_bytes(src_mac) + b"\x08\x06" +
                     struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + _mac_bytes(src_mac) +
                     socket.inet_aton(own) + b"\0" * 6 + socket.inet_aton(next_hop))
            try:
                self.sockets[slot].send(frame)
            except OSError:
                pass

    def _sender_for(self, slot: int, target: str) -> str | None:
        """The slot's own address closest to `target` (the sender of our ARP request)."""
        assert self.state is not None
        own = self.state.slots[slot].filters
        if not own:
            return None
        t = int(ipaddress.IPv4Address(target))
        return max(own, key=lambda a: 32 - (int(ipaddress.IPv4Address(a)) ^ t).bit_length())

    def children_alive(self) -> bool:
        return all(c.poll() is None for c in self.children)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "_stop", True))
        try:
            self.start_ovs()
            self.build()
            self.card.hw_attach(os.getpid())
            last_report = 0.0
            while not self._stop:
                if not self.children_alive():
                    print("netfpga card: an Open vSwitch daemon exited; the card is down",
                          file=sys.stderr)
                    return 1
                self.compile()
                ready, _, _ = select.select(list(self.sockets.values()), [], [], self.poll_s)
                for slot, sock in self.sockets.items():
                    if sock in ready:
                        for _ in range(64):
                            try:
                                self.software(slot, sock.recv(2048))
                            except BlockingIOError:
                                break
                if time.monotonic() - last_report >= self.report_s:
                    self.heal()
                    self.report()
                    last_report = time.monotonic()
            return 0
        finally:
            self.card.hw_detach(os.getpid())
            self.shutdown()

    def shutdown(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        for name in ("ovs-vswitchd", "ovsdb-server"):
            ctl = self.rundir / f"{name}.ctl"
            if ctl.exists():
                args = ["--cleanup"] if name == "ovs-vswitchd" else []
                subprocess.run(["ovs-appctl", "-t", str(ctl), "exit", *args], capture_output=True,
                               env=self._env(), timeout=10, check=False)
        for c in self.children:
            try:
                c.wait(timeout=5)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()


# ---- supervision (start/stop from another process) -------------------------------------------
@dataclass
class EmulatedCard:
    """A handle on one card process: `start()` runs it detached and waits until its pipeline
    runs the current registers; `stop()` ends it; `kill()` takes it down hard (tests)."""

    card_file: str
    rundir: str
    prefix: str

    @property
    def pidfile(self) -> Path:
        return Path(self.rundir) / "card.pid"

    @property
    def names(self) -> CardNames:
        return CardNames(self.prefix)

    def pid(self) -> int | None:
        """The running card process of this card (a recycled pid is not taken for it)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        ours = b"drivers.netfpga.card" in cmdline and str(self.rundir).encode() in cmdline
        return pid if ours and _alive(pid) else None

    def start(self, timeout: float = 20.0) -> int:
        running = self.pid()
        if running:
            return running
        check_prefix(self.prefix)
        Path(self.rundir).mkdir(parents=True, exist_ok=True)
        with open(Path(self.rundir) / "card.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "drivers.netfpga.card", "run",
                                     "--card-file", str(self.card_file), "--rundir",
                                     str(self.rundir), "--prefix", self.prefix],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True,
                                    cwd=str(Path(__file__).resolve().parents[2]))
        self.pidfile.write_text(f"{proc.pid}\n")
        card = SimulatedCard(self.card_file)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    tail = (Path(self.rundir) / "card.log").read_text(errors="replace")[-800:]
                    raise DriverError(f"the emulated card process exited ({proc.returncode}): "
                                      f"{tail.strip()}")
                if card.read(REG_PIPELINE_PID) == proc.pid and \
                        card.read(REG_PIPELINE_GEN) == card.read(REG_CONFIG_GEN):
                    return proc.pid
                if time.monotonic() > deadline:
                    self.kill()
                    raise DriverError(f"the emulated card process did not come up in {timeout} s")
                time.sleep(0.02)
        finally:
            card.close()

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            _wait_for(lambda: not _alive(pid), timeout, f"card process {pid} to exit",
                      fail=False)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            _wait_for(lambda: not _alive(pid), 5, f"card process {pid} to die", fail=False)

    def cleanup(self) -> None:
        """Remove the card's namespace and interfaces (pulls its wires out of wherever they
        went)."""
        hostnet.netns_delete(self.names.netns)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _wait_for(cond, timeout: float, what: str, *, fail: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            if fail:
                raise DriverError(f"timed out waiting for {what}")
            return
        time.sleep(0.01)


def _tx_off(netns: str | None, dev: str) -> None:
    """TCP through the userspace datapath needs TX checksums computed by the sender's stack."""
    argv = ["ethtool", "-K", dev, "tx", "off"]
    subprocess.run(hostnet.netns_exec_argv(netns, argv) if netns else argv, capture_output=True,
                   check=False)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m drivers.netfpga.card run|start|stop|cleanup --card-file F --rundir D --prefix P`"""
    ap = argparse.ArgumentParser(prog="python -m drivers.netfpga.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("run", "start", "stop", "cleanup"))
    ap.add_argument("--card-file", required=True)
    ap.add_argument("--rundir", required=True)
    ap.add_argument("--prefix", required=True)
    args = ap.parse_args(argv)
    try:
        if args.action == "run":
            return CardProcess(args.card_file, args.rundir, args.prefix).run()
        handle = EmulatedCard(args.card_file, args.rundir, args.prefix)
        if args.action == "start":
            print(handle.start())
        elif args.action == "stop":
            handle.stop()
        else:
            handle.cleanup()
        return 0
    except (DriverError, OSError) as exc:
        print(f"netfpga card: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
