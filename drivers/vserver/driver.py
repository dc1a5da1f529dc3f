"""The vserver driver: Linux-VServer-style container slivers on this host.

Backend: a guest per node sliver (`guest`, `guestinit`): its own mount, PID, UTS, IPC and user
namespaces inside one network namespace and one cpu, memory and pids cgroup (v1), rooted in an
overlay of a read-only image from the content-addressed store (`drivers/images`) and the
sliver's own layer. Guest root is an unprivileged host uid. Links are veth pairs (two ends) or
a bridge with a veth per end (a LAN), shaped with tc tbf, all made from the host.

Order independence (the crux): a link sliver and its node slivers may be provisioned in any
order by concurrent workers. Both sides derive the same names from the sliver URNs
(`naming.Naming`), both create the node's namespace idempotently under the node's lock, and:
  * the link puts its container-side ends into the node namespaces under a temporary name that
    is also set as the interface alias, and shapes them there;
  * the node records its interface plan (names, addresses, MACs, routes) and, under its lock,
    renames every end it finds by alias, addresses it, brings it up and installs the routes
    whose next hop is now reachable;
  * a link that arrives after its node runs the same convergence for that node.
So whichever finishes last completes the wiring, and once both report ready nothing is pending.

Hybrid routers: a router node asking for `hardware` or `openflow` forwarding is only the
control plane here (placement pairs it with a forwarding sliver elsewhere, see
docs/hybrid-routers.md). Its container keeps ip_forward at 0 and gets none of the routes in its
kernel; the route set lives in a `ControlPlaneRoutes` file and changes through `set_routes`
(PerformOperationalAction `geniam_sync_routes`), which the AM also hands to the forwarding
sliver's driver, the one that forwards.

SSH login (`logins.SshLogins`): a node sliver with `geni_users` gets one TCP port whose
listening socket its guest's init holds, starting `sshd -i` inside the guest per connection,
with accounts in the guest's own /etc/passwd (docs/vserver.md, "SSH login").
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import ipaddress
import logging
import os
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from drivers import hostnet
from drivers.base import (
    Action,
    Admission,
    Capabilities,
    Component,
    DiskImage,
    DriverError,
    ForwardingMode,
    IsolationClass,
    Login,
    ObservedSliver,
    OperationalState,
    ProvisionResult,
    ResourceKind,
    SliverSpec,
    SubstrateDriver,
    Usage,
)
from drivers.images import debs, recipes
from drivers.images.store import Image, ImageError, ImageStore
from drivers.inventory import InventoryError, build_component
from drivers.ovs import OVSClient, OVSError
from drivers.vserver import services
from drivers.routesync import (
    SYNC_ROUTES_ACTION,
    ControlPlaneRoutes,
    RouteError,
    SyncResult,
    normalise_all,
)
from drivers.vserver.admission import IFNAME_RE, REMOTE_MODES, admit_sliver
from drivers.vserver.cgroups import CONTROLLERS, CgroupLayout
from drivers.vserver.config import TABLE, VServerSettings, images_dir, parse_settings
from drivers.vserver.guest import GUEST_IDS, Guests
from drivers.vserver.images import DEFAULT_IMAGE
from drivers.vserver.logins import SshLogins
from drivers.vserver.naming import Naming
from drivers.vserver.snapshot import snapshot
from drivers.vserver.state import StateDir
from rspec.model import Execute, Route

SLIVER_TYPE = "vserver-container"
VXLAN_PORT = 4789           # IANA's VXLAN port, the tunnels' UDP destination
TUNNEL_MTU = 1450           # a tunnel link's interfaces: 1500 less VXLAN's 50-byte header
CONTROL_PORT = "cpu0"      # a hybrid router's forwarding-plane CPU port, in its control plane

log = logging.getLogger(__name__)

Record = dict[str, Any]


class VServerDriver(SubstrateDriver):
    kind: ClassVar[str] = "vserver"
    capabilities: ClassVar[Capabilities] = Capabilities(
        routes=True, images=True,
        isolation=IsolationClass.CONTAINER,
        sliver_types=(SLIVER_TYPE,),
        actions=(*(a.value for a in Action), SYNC_ROUTES_ACTION),
        forwarding_modes=(ForwardingMode.GUEST,),
        links=True,
        wires=True,
        joins_bridges=True,
        tunnels=True,
        control_ports=True,          # a hybrid router's container takes the CPU port as cpu0
        link_properties=hostnet.TC_LINK_PROPERTIES,   # tbf on the veths; no netem here
    )
    shaping_note: ClassVar[str] = hostnet.NO_NETEM

    def __init__(self, config: Mapping[str, Any], components: list[Mapping[str, Any]],
                 *, authority: str):
        super().__init__(config, components, authority=authority)
        self.settings: VServerSettings = parse_settings(config)
        self._components = [self._component(t) for t in components]
        if not self._components:
            raise InventoryError('the vserver driver needs at least one [[components]] table '
                                 'with driver = "vserver"', table=TABLE)
        _require_host()
        self.naming = Naming(self.settings.name_prefix)
        throttled = self.settings.disk_read_mbps or self.settings.disk_write_mbps
        self.cgroups = CgroupLayout(Path(self.settings.cgroup_root), self.settings.cgroup_parent,
                                    self.settings.cfs_period_us,
                                    CONTROLLERS + (("blkio",) if throttled else ()))
        self.cgroups.check()
        try:
            self.state = StateDir(Path(self.settings.state_dir) / self.settings.name_prefix)
        except OSError as exc:
            raise DriverError(f"cannot use state_dir {self.settings.state_dir}: "
                              f"{exc.strerror}") from None
        self.routes = ControlPlaneRoutes(self.state.root / "routes")
        try:
            self.images = ImageStore(images_dir(self.settings))
        except OSError as exc:
            raise DriverError(f"cannot use the image store {images_dir(self.settings)}: "
                              f"{exc.strerror}") from None
        s = self.settings
        self.guests = Guests(self.state, self.cgroups, id_base=s.guest_id_base,
                             id_slots=s.guest_id_slots, tmpfs_mb=s.guest_tmpfs_mb,
                             kill_timeout_s=s.kill_timeout_s)
        self.ssh = SshLogins(self.settings, self.state, self.guests)

    def _component(self, table: Mapping[str, Any]) -> Component:
        where = table.get("_table", "components")
        iso = table.get("isolation", IsolationClass.CONTAINER)
        if iso is not IsolationClass.CONTAINER:
            raise InventoryError("a vserver node shares one kernel among its slivers, so its "
                                 f"isolation is container, not {iso.value}", table=where,
                                 key="isolation")
        types = tuple(table.get("sliver_types", (SLIVER_TYPE,)))
        if set(t.lower() for t in types) != {SLIVER_TYPE}:
            raise InventoryError(f"a vserver node offers only sliver type {SLIVER_TYPE!r}",
                                 table=where, key="sliver_types")
        modes = tuple(table.get("forwarding_modes", (ForwardingMode.GUEST,)))
        if set(modes) - {ForwardingMode.GUEST}:
            raise InventoryError("containers forward in the guest only (forwarding_modes = "
                                 '["guest"])', table=where, key="forwarding_modes")
        comp = build_component(table, authority=self.authority, driver=self.kind,
                               default_isolation=IsolationClass.CONTAINER,
                               default_sliver_types=(SLIVER_TYPE,),
                               default_capacity=self.settings.node_capacity,
                               default_forwarding=(ForwardingMode.GUEST,))
        images = comp.sliver_types[0].disk_images or (
            DiskImage(self.settings.default_image, os="Linux",
                      description="the site's container root filesystem (built from Debian "
                                  "packages; docs/images.md)", default=True),)
        non_linux = [i.name for i in images if i.os.lower() != "linux"]
        if non_linux:
            raise InventoryError(f"containers share the host's Linux kernel; image(s) "
                                 f"{', '.join(non_linux)} are not Linux", table=where,
                                 key="disk_images")
        return dataclasses.replace(
            comp, sliver_types=tuple(dataclasses.replace(t, disk_images=images)
                                     for t in comp.sliver_types),
            hardware_types=comp.hardware_types or ("pc", "vserver-host"),
            extra={**comp.extra, "backend": "guest: user+mount+pid+uts+ipc+net namespaces, "
                                            "overlay root, cgroup v1"})

    def close(self) -> None:
        """Stop the guests' fork server (guests run on without it)."""
        self.guests.close()
        super().close()

    # ---- inventory and admission -----------------------------------------------------------
    def inventory(self) -> list[Component]:
        """The nodes, each advertising the container images in the store now (and the default
        image, built on first use when missing)."""
        images = self.disk_images()
        return [dataclasses.replace(c, sliver_types=tuple(
            dataclasses.replace(t, disk_images=images) for t in c.sliver_types))
            for c in self._components]

    def disk_images(self) -> tuple[DiskImage, ...]:
        default = self.settings.default_image
        out = [DiskImage(i.name, os="Linux", version=i.short, description=i.description,
                         default=i.name == default)
               for i in self.images.list() if i.kind == "rootfs"]
        if not any(i.name == default for i in out):
            out.insert(0, DiskImage(default, os="Linux", default=True,
                                    description="the site's container root filesystem"))
        return tuple(out)

    def admit_component(self, comp: Component, spec: SliverSpec, usage: Usage) -> Admission:
        if spec.kind is ResourceKind.NODE and spec.disk_image:
            comp = dataclasses.replace(comp, sliver_types=tuple(
                dataclasses.replace(t, disk_images=self.disk_images())
                for t in comp.sliver_types))
        return admit_sliver(comp, spec, usage, self.settings)

    # ---- images ------------------------------------------------------------------------------
    def image_name(self, spec: SliverSpec) -> str:
        """The store name a request's disk image means (a URN's last part, or the default)."""
        if not spec.disk_image:
            return self.settings.default_image
        return re.split(r"[+:]", spec.disk_image)[-1]

    def image(self, name: str) -> Image:
        """The image called `name`, building the default one from its recipe if missing."""
        try:
            return self.images.get(name)
        except ImageError as exc:
            if name != self.settings.default_image or not self.settings.build_default_image:
                raise DriverError(f"disk image {name!r}: {exc}") from None
        with self.state.lock("_image"):
            try:
                return self.images.get(name)
            except ImageError:
                pass
            try:
                cache = ImageStore(debs.cache_dir().parent / "built-images")
                return recipes.build(self.images, DEFAULT_IMAGE, name, cache=cache)
            except (ImageError, OSError) as exc:
                raise DriverError(f"cannot build the container image {name!r}: {exc}",
                                  transient=True) from None

    def _image_dir(self, rec: Record) -> Path:
        """The image a sliver was made from, by digest (a later image of its name is not it)."""
        digest = (rec.get("image") or {}).get("digest")
        if not digest:
            return self.image(self.settings.default_image).data
        try:
            return self.images.get(digest).data
        except ImageError:
            raise DriverError(f"the image {rec['image'].get('name')} ({digest}) of "
                              f"{rec['handle']} is gone from the store") from None

    def create_image(self, spec: SliverSpec, name: str, *, owner: str,
                     creator: str = "") -> Image:
        """Snapshot a node sliver's root filesystem (its image with its own layer applied) as a
        new image `name` owned by `owner` (a project); DriverError if the name is taken or
        the sliver is not here. Consistent for files the guest does not write meanwhile
        (stop the sliver first for a quiet copy)."""
        if spec.kind is not ResourceKind.NODE:
            raise DriverError(f"sliver {spec.client_id} is a {spec.kind.value}; only a "
                              "container's root filesystem can become an image")
        handle = self.naming.node(spec.sliver_urn)
        with self.state.lock(handle):
            rec = self.state.read(handle)
            if rec is None or (rec.get("guest") or {}).get("slot") is None:
                raise DriverError(f"sliver {spec.sliver_urn} has no guest on this host")
            base = self._image_dir(rec)
            try:
                image = snapshot(self.images, base, self.guests.upper(handle), name,
                                 id_base=self.guests.host_id(rec), id_count=GUEST_IDS,
                                 owner=owner, description=f"snapshot of {spec.client_id}",
                                 meta={"from_sliver": spec.sliver_urn, "creator": creator,
                                       "base": rec["image"]["digest"]})
            except ImageError as exc:
                raise DriverError(str(exc)) from None
        self.__dict__.pop("_component_index", None)   # advertise it
        return image

    def list_images(self) -> list[Image]:
        return [i for i in self.images.list() if i.kind == "rootfs"]

    def delete_image(self, name: str) -> Image:
        """Remove an image name; refused while a sliver runs on it (its digest)."""
        try:
            image = self.images.get(name)
        except ImageError as exc:
            raise DriverError(str(exc)) from None
        with self.state.lock("_image"):
            users = [r["client_id"] for r in self.state.all().values()
                     if (r.get("image") or {}).get("digest") == image.digest]
            if users:
                raise DriverError(f"image {name} is in use by sliver(s) {', '.join(users)}")
            self.images.delete(name)
        return image

    def images_in_use(self) -> set[str]:
        """Digests of the images some sliver runs on."""
        return {(r.get("image") or {}).get("digest") for r in self.state.all().values()
                if r.get("kind") == "node"} - {None}

    # ---- provision --------------------------------------------------------------------------
    def provision(self, spec: SliverSpec) -> ProvisionResult:
        self._own(spec)
        if spec.kind is ResourceKind.NODE:
            return self._provision_node(spec)
        if spec.kind is ResourceKind.LINK:
            return self._provision_link(spec)
        raise DriverError(f"the vserver driver cannot provision a {spec.kind.value} sliver")

    def _provision_node(self, spec: SliverSpec) -> ProvisionResult:
        handle = self.naming.node(spec.sliver_urn)
        self.ssh.check(spec.users)            # a bad login fails before anything is made
        with self.state.lock(handle):
            old = self.state.read(handle) or {}
            rec = _node_record(spec, handle, self.naming, self.settings)
            rec["ssh"] = old.get("ssh")       # its port and uids stay taken
            rec["guest"] = old.get("guest") or {}
            rec["stopped"] = old.get("stopped", False)
            if old.get("control_port"):       # a hybrid router's CPU port stays plugged
                rec["control_port"] = old["control_port"]
            rec["installed"] = old.get("installed", False) and old.get("installs") == rec["installs"]
            rec["executes_started"] = old.get("executes_started", False)
            if old.get("image"):              # a sliver keeps the image it was made from
                rec["image"] = old["image"]
            self.state.write(handle, rec)      # first: observed() must know the netns is ours
            if not old.get("image"):
                image = self.image(self.image_name(spec))
                rec["image"] = {"name": image.name, "digest": image.digest}
                self.state.write(handle, rec)
            image_dir = self._image_dir(rec)
            if rec["remote_forwarding"] and self.routes.get(handle) is None:
                try:
                    self.routes.put(handle, spec.routes)
                except RouteError as exc:
                    raise DriverError(f"node {spec.client_id}: {exc}") from None
            self._limit(handle, rec)
            macs: dict[str, str] = {}
            self._converge_node(rec, macs=macs)
            macs.update({i["client_id"]: i["mac"] for i in rec["interfaces"]
                         if i.get("mac") and i["client_id"] not in macs})
            running = not rec["stopped"]
            if running:
                self._ensure_guest(handle, rec, image_dir)
            self.ssh.converge(handle, rec, spec.users, run=running, may_move=True,
                              image_dir=image_dir)
            if not rec["installed"] and running:
                s = self.settings
                for inst in spec.installs:
                    services.run_install(inst, self.guests, handle, install_dir=s.install_dir,
                                         allow_networks=s.install_allow_networks,
                                         max_bytes=s.install_max_mb * 2**20,
                                         timeout_s=s.install_timeout_s)
                rec["installed"] = True
            if not rec["executes_started"] and running:
                self._start_executes(rec)
                rec["executes_started"] = True
            self.state.write(handle, rec)
        state = OperationalState.NOTREADY if rec["stopped"] else OperationalState.READY
        # no "waiting for link(s)" here: this text is stored and outlives the wait (the link's
        # job plugs the interface in later); live_status says what is still missing now
        note = self._router_note(rec, spec)
        return ProvisionResult(state=state, macs=macs, logins=self.ssh.logins(rec), handle=handle,
                               resource_status=f"{self._describe(rec)}{note}; "
                                               f"{self.ssh.note(rec)}")

    @staticmethod
    def _router_note(rec: Record, spec: SliverSpec) -> str:
        """A hybrid router's control plane says where its packets are forwarded."""
        if not rec.get("remote_forwarding"):
            return ""
        cpu = rec.get("control_port")
        return (f"; control plane of a router forwarding in {rec['remote_forwarding']} "
                f"({spec.params.get('forwarding_sliver', 'its forwarding sliver')})"
                + (f", plugged into its CPU port {cpu['wire']} as {cpu['name']}" if cpu else ""))

    def _describe(self, rec: Record) -> str:
        cpu = "a fair CPU share" if rec.get("cpu") is None else f"{rec['cpu']:g} cores"
        image = (rec.get("image") or {}).get("name", "?")
        return (f"container {rec['handle']} (guest on image {image}, {cpu}, "
                f"{rec['memory_mb']} MiB, {rec['pids_max']} tasks)")

    def live_status(self, spec: SliverSpec) -> str | None:
        """What a node sliver's guest reports now: each execute running or its exit status,
        with the tail of its log (None for links and unknown slivers)."""
        if spec.kind is not ResourceKind.NODE:
            return None
        handle = self.naming.node(spec.sliver_urn)
        rec = self.state.read(handle)
        if rec is None:
            return None
        parts = [self._describe(rec) + self._router_note(rec, spec)]
        alive = not rec.get("stopped") and self.guests.alive(handle, rec)
        waiting = self._unplugged(rec, rec["guest"]["pid"] if alive else None)
        if waiting:
            parts.append(f"waiting for link(s) on {', '.join(waiting)}")
        if rec.get("stopped"):
            parts.append("stopped")
        elif not rec.get("executes"):
            if not alive:                 # nothing to ask its init about
                parts.append("its guest is not running")
        elif alive:
            try:
                children = self.guests.status(handle).get("children", {})
            except DriverError as exc:
                children = {}
                parts.append(str(exc))
            for name in sorted(children):
                c = children[name]
                state = "running" if c["running"] else f"exited {c['exit']}"
                tail = " | ".join(c.get("tail", "").strip().splitlines()[-3:])
                parts.append(f"{name}: {state}" + (f" ({tail[-300:]})" if tail else ""))
        else:
            parts.append("its guest is not running")
        parts.append(self.ssh.note(rec))
        return "; ".join(parts)

    @staticmethod
    def _unplugged(rec: Record, init_pid: int | None = None) -> list[str]:
        """The node's interfaces whose link has not plugged in yet, as the namespace is now
        (read only; a missing namespace has every linked interface missing). A hybrid
        router's links plug into its forwarding plane, never into this container: none.
        `init_pid`: the guest's running init, whose /proc/PID/net/dev lists the namespace's
        interfaces in one read (a thread entering the namespace costs far more, and Status
        asks this of every node)."""
        if rec.get("remote_forwarding"):
            return []
        ns = rec["netns"]
        # by name: an end is named after itself until the node's convergence renames it to
        # the interface's name (nothing else puts interfaces in the namespace)
        seen = hostnet.proc_link_names(init_pid) if init_pid else None
        if seen is None:
            seen = hostnet.link_names(ns) if hostnet.netns_exists(ns) else set()
        return [i["name"] for i in rec["interfaces"]
                if i.get("linked", True) and not {i["end"], i["name"]} & seen]

    def _ensure_guest(self, handle: str, rec: Record, image_dir: Path) -> None:
        """The guest runs (started now if it does not: whatever is left of an old one is
        killed first); caller holds the lock."""
        if self.guests.alive(handle, rec):
            return
        self.guests.stop(handle, rec)
        # ICMP echo sockets for every guest id (guest root has no CAP_NET_RAW on this netns)
        hostnet.sysctl_set(rec["netns"], "net.ipv4.ping_group_range", "0 2147483647")
        self.guests.start(handle, rec, image_dir, hostname=_hostname(rec["client_id"]))
        self.state.write(handle, rec)

    # ---- Update: reconfigure in place ---------------------------------------------------------
    def check_update(self, old: SliverSpec, new: SliverSpec) -> None:
        """A container keeps running while its interfaces (hot-plugged as their links come),
        addresses, routes and cpu/memory limits change, and a link while its capacity is
        re-shaped. What would need a new container or a new wire is refused."""
        self._own(new)
        fixed = (("sliver_type", "disk_image", "router", "forwarding", "exclusive", "installs",
                  "executes") if old.kind is ResourceKind.NODE else ())
        for what in ("kind", "component_id", *fixed):
            if getattr(old, what) != getattr(new, what):
                raise DriverError(f"its {what} would change; a container keeps those for life")
        if old.kind is ResourceKind.LINK:
            if old.link is None or new.link is None:
                raise DriverError("a link sliver without a link spec")
            ends = {(e.sliver_urn, e.interface_client_id) for e in old.link.ends}
            if ends != {(e.sliver_urn, e.interface_client_id) for e in new.link.ends}:
                raise DriverError("its ends would change; add a link with a new client_id "
                                  "instead")
            if old.link.mode != new.link.mode:
                raise DriverError(f"it would turn from {old.link.mode} into {new.link.mode}")
        elif old.kind is ResourceKind.NODE:
            _node_record(new, "check", self.naming, self.settings)   # addresses parse

    def update(self, old: SliverSpec, new: SliverSpec) -> ProvisionResult:
        """Converge the running sliver to `new` (the same code as provisioning, which is
        idempotent): new interfaces wait for their links, limits and routes follow; a link's
        shaping is replaced (or removed)."""
        self.check_update(old, new)
        if new.kind is ResourceKind.LINK and new.link and not new.link.capacity_kbps:
            self._unshape(new)
        return self.provision(new)

    def _unshape(self, spec: SliverSpec) -> None:
        rec = _link_record(spec, self.naming.link(spec.sliver_urn), self.naming)
        for end in rec["ends"]:
            with self.state.lock(end["node_handle"]):
                where = self._locate(end)
                if where is not None:
                    hostnet.root_qdisc_delete(where[0], where[1].name)
            if end.get("port"):
                hostnet.root_qdisc_delete(None, end["port"])

    def check_users(self, users) -> None:
        """No root, no host account names, one account per login (`SshLogins.check`)."""
        self.ssh.check(users)

    def logins(self, spec: SliverSpec) -> tuple[Login, ...] | None:
        """The SSH logins a node sliver offers now (geni_update_users may add or drop them)."""
        if spec.kind is not ResourceKind.NODE:
            return None
        rec = self.state.read(self.naming.node(spec.sliver_urn))
        return None if rec is None else self.ssh.logins(rec)

    def _provision_link(self, spec: SliverSpec) -> ProvisionResult:
        handle = self.naming.link(spec.sliver_urn)
        rec = _link_record(spec, handle, self.naming)
        with self.state.lock(handle):
            old = self.state.read(handle) or {}
            rec["stopped"] = old.get("stopped", False)
            self.state.write(handle, rec)
            self.state.hold((e["end"] for e in rec["ends"]), rec["stopped"])
            if rec["mode"] == "veth":
                self._build_veth(rec, fresh=not old)
            elif rec["mode"] == "wire":
                self._take_wires(rec)
            elif rec["mode"] == "stitch":
                self._build_stitch(rec)
            else:
                self._build_bridge(rec)
                if rec.get("tunnel"):
                    self._build_tunnel(rec)
            kbps = rec["capacity_kbps"]
            for end in rec["ends"]:
                with self.state.lock(end["node_handle"]):
                    hostnet.netns_add(end["netns"])
                    if hostnet.root_has_link(end["end"]):
                        hostnet.link_move(end["end"], end["netns"])
                    node = self.state.read(end["node_handle"])
                    iface = next((i for i in (node or {}).get("interfaces", ())
                                  if i["end"] == end["end"]), None)
                    if iface is not None:      # the node renames it: shape it by its new name
                        pending = self._converge_node(node)
                        name = None if iface["name"] in pending else iface["name"]
                    else:                      # no node yet: nothing renamed the end
                        name = end["end"]
                    if name is None:
                        raise DriverError(f"link end {end['end']} vanished while wiring "
                                          f"{spec.client_id}", transient=True)
                    if kbps:
                        try:
                            hostnet.tbf_replace(end["netns"], name, kbps,
                                                latency_ms=self.settings.tc_latency_ms)
                        except hostnet.HostNetError:
                            here = hostnet.find_link(end["netns"], end["end"])
                            if here is None or here.name == name:
                                raise DriverError(f"link end {end['end']} vanished while "
                                                  f"wiring {spec.client_id}",
                                                  transient=True) from None
                            hostnet.tbf_replace(end["netns"], here.name, kbps,
                                                latency_ms=self.settings.tc_latency_ms)
                if end.get("port") and kbps:
                    hostnet.tbf_replace(_port_netns(rec), end["port"], kbps,
                                        latency_ms=self.settings.tc_latency_ms)
            if rec["mode"] == "stitch":
                self._stitch_flows(rec)
        shaped = f", {rec['capacity_kbps']} kbit/s each way" if rec["capacity_kbps"] else ""
        if rec.get("tunnel"):
            t = rec["tunnel"]
            hosts = t.get("remote_hosts") or [t["remote_host"]]
            shaped += (f", VXLAN VNI {t['vni']} ({t['dev']}) {t['local']} -> "
                       f"{', '.join(t.get('remotes') or [t['remote']])} "
                       f"(host{'s' if len(hosts) > 1 else ''} {', '.join(hosts)}), "
                       f"MTU {t['mtu']}")
        return ProvisionResult(state=OperationalState.NOTREADY if rec["stopped"]
                               else OperationalState.READY, handle=handle,
                               resource_status=f"{rec['mode']} link {handle}{shaped}")

    def _build_veth(self, rec: Record, *, fresh: bool = False) -> None:
        """The pair, each end named and aliased by its end name, already in its node's
        namespace, over netlink in this process (`hostnet.veth_pair`). `fresh`: no earlier attempt made this link (its
        record is new), so nothing of it can exist and the ends need not be looked for."""
        a, b = rec["ends"]
        for e in (a, b):
            hostnet.netns_add(e["netns"])
        if not fresh:
            where = [self._locate_locked(e) for e in (a, b)]
            if all(w is not None for w in where):
                return
            for e, w in zip((a, b), where):     # half a pair is useless: clear it, build anew
                if w is not None:
                    hostnet.link_delete(w[0], w[1].name)
        try:
            hostnet.veth_pair(a["end"], a["netns"], b["end"], b["netns"])
        except hostnet.HostNetError as exc:
            if fresh and exc.stderr == os.strerror(errno.EEXIST):
                return self._build_veth(rec)    # debris of a lost attempt: clear it first
            raise

    def _build_stitch(self, rec: Record) -> None:
        """A stitched link's local part: a veth whose one end becomes the node's interface and
        whose other end is a port of the edge's Open vSwitch bridge (in vswitchd's namespace).
        Its packets leave the edge port tagged with the link's VLAN (`_stitch_flows`)."""
        (end,) = rec["ends"]
        st = rec["stitch"]
        ns = st.get("netns")
        where = self._locate_locked(end)
        port_here = hostnet.find_link(ns, end["port"]) or hostnet.find_link(None, end["port"])
        if where is None or port_here is None:
            if where is not None:
                hostnet.link_delete(where[0], where[1].name)
            for space in {ns, None}:
                hostnet.link_delete(space, end["port"])
            hostnet.veth_add(end["end"], end["port"])
            hostnet.link_set(None, end["end"], alias=end["end"])
            for dev in (end["end"], end["port"]):
                hostnet.run(["ip", "link", "set", "dev", dev, "mtu", str(st.get("mtu") or 1500)])
            # TCP through OVS's userspace datapath needs checksums computed in software
            hostnet.run(["ethtool", "-K", end["end"], "tx", "off"], missing_ok=True)
            hostnet.run(["ethtool", "-K", end["port"], "tx", "off"], missing_ok=True)
            if ns:
                hostnet.link_move(end["port"], ns)
        hostnet.link_set(ns, end["port"], up=True)

    def _stitch_flows(self, rec: Record) -> None:
        """The port on the edge bridge, and two flows (cookie: the link): what the node sends
        leaves the edge port with the link's VLAN pushed; what arrives there on that VLAN comes
        to the node with it popped. The bridge is fail-secure: no other traffic passes."""
        (end,) = rec["ends"]
        st = rec["stitch"]
        ovs = OVSClient(st["ovs_db"])
        bridge = st["bridge"]
        try:
            ovs.vsctl("set", "bridge", bridge, "fail_mode=secure", "--",
                      "--may-exist", "add-port", bridge, end["port"])
            ofports = ovs.ofports(bridge)
        except OVSError as exc:
            raise DriverError(f"stitched link {rec['client_id']}: edge bridge {bridge}: {exc}",
                              transient=exc.transient) from None
        if end["port"] not in ofports or st["edge_port"] not in ofports:
            missing = end["port"] if end["port"] not in ofports else st["edge_port"]
            raise DriverError(f"stitched link {rec['client_id']}: port {missing} has no OpenFlow "
                              f"number on {bridge} yet", transient=True)
        node, edge, tag = ofports[end["port"]], ofports[st["edge_port"]], int(st["tag"])
        cookie = st["cookie"]
        ovs.add_flows(bridge, [
            f"cookie={cookie},priority=100,in_port={node},"
            f"actions=push_vlan:0x8100,set_field:{4096 + tag}->vlan_vid,output:{edge}",
            f"cookie={cookie},priority=100,in_port={edge},dl_vlan={tag},"
            f"actions=pop_vlan,output:{node}"])

    def _unstitch(self, rec: Record) -> None:
        (end,) = rec["ends"] or ({"port": None},)
        st = rec["stitch"]
        ovs = OVSClient(st["ovs_db"])
        try:
            ovs.del_flows(st["bridge"], f"cookie={st['cookie']}/-1")
            if end.get("port"):
                ovs.vsctl("--if-exists", "del-port", st["bridge"], end["port"])
        except OVSError as exc:
            if exc.transient:
                raise DriverError(f"stitched link {rec['client_id']}: edge bridge "
                                  f"{st['bridge']}: {exc}", transient=True) from None
            log.warning("stitched link %s: %s", rec["client_id"], exc)

    def _take_wires(self, rec: Record) -> None:
        """Plug another component's port (a host interface, e.g. an emulated card's wire end)
        into the node: it is named by the end's alias, so the node's convergence renames,
        addresses and raises it like any link end."""
        for e in rec["ends"]:
            with self.state.lock(e["node_handle"]):
                if self._locate(e) is not None:
                    continue
                if hostnet.find_link(None, e["wire"]) is None:
                    raise DriverError(f"wire {e['wire']} (the port link {rec['client_id']} plugs "
                                      "into) is not on this host: is its card running?",
                                      transient=True)
                hostnet.netns_add(e["netns"])
                hostnet.link_set(None, e["wire"], alias=e["end"])
                hostnet.link_move(e["wire"], e["netns"])

    def _return_wire(self, end: Mapping[str, Any]) -> None:
        """Unplug a wire: back to the root namespace under its own name (never deleted: it is
        another component's port). Caller holds the node lock."""
        where = self._locate(end)
        if where is None or where[0] is None:
            return
        ns, info = where
        hostnet.run(["ip", "-n", ns, "link", "set", "dev", info.name, "down"])
        hostnet.run(["ip", "-n", ns, "link", "set", "dev", info.name, "netns", "1"])
        hostnet.link_set(None, info.name, name=end["wire"], mac=None)
        hostnet.run(["ip", "link", "set", "dev", end["wire"], "alias", ""], missing_ok=True)
        hostnet.link_set(None, end["wire"], up=True)

    def _build_bridge(self, rec: Record) -> None:
        br = rec["bridge"]
        if rec.get("joins"):      # another slice's shared LAN: plug into its bridge, never make it
            if hostnet.find_link(None, br) is None:
                raise DriverError(f"link {rec['client_id']}: the shared LAN "
                                  f"{rec['joins']!r} (bridge {br}) is gone")
        else:
            hostnet.bridge_add(br)
            if rec["stopped"]:
                hostnet.link_set(None, br, up=False)
        for e in rec["ends"]:
            if self._locate_locked(e) is not None:
                continue
            hostnet.link_delete(None, e["port"])
            hostnet.veth_add(e["end"], e["port"])
            hostnet.link_set(None, e["end"], alias=e["end"])
            if rec.get("tunnel"):    # room for the VXLAN header on a 1500-byte underlay
                for dev in (e["end"], e["port"]):
                    hostnet.run(["ip", "link", "set", "dev", dev, "mtu",
                                 str(rec["tunnel"]["mtu"])])
            hostnet.link_set(None, e["port"], master=br, up=True)

    def _build_tunnel(self, rec: Record) -> None:
        """This host's half of a cross-host link: a VXLAN device (the link's VNI, from this
        host's address to the other's, unicast, UDP 4789) on the half's bridge."""
        t = rec["tunnel"]
        remotes = t.get("remotes") or [t["remote"]]
        info = hostnet.find_link(None, t["dev"])
        if info is None:
            # two hosts: the other one is the device's remote; a LAN over more hosts: no
            # remote, an all-zero forwarding entry per other host instead (broadcast and
            # unknown frames go to each of them; the device learns where each MAC is)
            peer = ["remote", t["remote"]] if len(remotes) == 1 else []
            try:
                hostnet.run(["ip", "link", "add", t["dev"], "type", "vxlan", "id", str(t["vni"]),
                             "local", t["local"], *peer, "dstport", str(VXLAN_PORT)])
            except hostnet.HostNetError as exc:
                raise DriverError(f"link {rec['client_id']}: VXLAN VNI {t['vni']} to "
                                  f"{', '.join(remotes)}: {exc}", transient=True) from None
        if len(remotes) > 1:
            have = hostnet.run(["bridge", "fdb", "show", "dev", t["dev"]])
            for remote in remotes:
                if f"00:00:00:00:00:00 dst {remote} " not in have + " ":
                    hostnet.run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", t["dev"],
                                 "dst", remote])
        hostnet.run(["ip", "link", "set", "dev", t["dev"], "mtu", str(t["mtu"])])
        hostnet.link_set(None, t["dev"], master=rec["bridge"], up=True)

    def _locate_locked(self, end: Mapping[str, Any]) -> tuple[str | None, hostnet.LinkInfo] | None:
        with self.state.lock(end["node_handle"]):
            return self._locate(end)

    def _locate(self, end: Mapping[str, Any]) -> tuple[str | None, hostnet.LinkInfo] | None:
        """(namespace, interface) of a link end: still in the root namespace or in its node's."""
        if hostnet.root_has_link(end["end"]):
            info = hostnet.find_link(None, end["end"])
            if info is not None:
                return None, info
        if hostnet.netns_exists(end["netns"]):
            info = hostnet.find_link(end["netns"], end["end"])
            if info is not None:
                return end["netns"], info
        return None

    def _converge_node(self, rec: Record, *, macs: dict[str, str] | None = None) -> list[str]:
        """Wire up what is there of a node's network (caller holds the node lock); returns the
        interfaces still waiting for their link; `macs` gets each present interface's MAC
        (by client_id).

        The namespace (links, addresses, routes) is read over netlink in process
        (`hostnet.show`) and one `ip -batch` applies what differs: renames, addresses, up/down
        and the missing routes, so a node converged once per link costs at most one process
        whatever its number of routes (a chain of N routers holds N^2 routes; one process per
        route made N = 100 take minutes)."""
        ns = rec["netns"]
        hostnet.netns_add(ns)
        view = hostnet.show(ns)
        held_down = self.state.held_down({i["end"] for i in rec["interfaces"]})
        pending: list[str] = []
        down: list[str] = []
        cmds: list[list[str]] = []
        cpu = rec.get("control_port")
        for iface in rec["interfaces"]:
            li = next((x for x in view.links if iface["end"] in (x.alias, x.name)), None)
            if li is None and (cpu or not iface.get("linked", True)):
                continue                  # on no link, or its link plugs into the forwarding plane
            if li is None:
                pending.append(iface["name"])
                continue
            name, mac = iface["name"], iface.get("mac")
            new_mac = mac if mac and (li.mac or "").lower() != mac.lower() else None
            if macs is not None and (new_mac or li.mac):
                macs[iface["client_id"]] = new_mac or li.mac
            if li.name != name or new_mac:
                cmds.append(["link", "set", "dev", li.name, "down"])
                cmds.append(["link", "set", "dev", li.name, "name", name, "alias", iface["end"],
                             *(["address", new_mac] if new_mac else [])])
            have = set(view.addresses.get(li.name, ())) if li.name == name else set()
            cmds += [["addr", "replace", cidr, "dev", name]
                     for cidr in iface["cidrs"] if cidr not in have]
            want_up = not rec["stopped"] and iface["end"] not in held_down
            if want_up != li.up or li.name != name or new_mac:
                cmds.append(["link", "set", "dev", name, "up" if want_up else "down"])
            if not want_up:
                down.append(name)
        remote = bool(rec.get("remote_forwarding"))
        if cpu:                            # interfaces first, then the CPU port over them
            self._apply(ns, cmds, 0, tolerate=False)
            cmds = []
            self._converge_control_port(rec, cpu, view.links)
        forward = "1" if rec["router"] and (cpu or not remote) else "0"
        if hostnet.sysctl_get(ns, "net.ipv4.ip_forward") != forward:
            hostnet.sysctl_set(ns, "net.ipv4.ip_forward", forward)
        names = {i["client_id"]: i["name"] for i in rec["interfaces"]}
        first_route = len(cmds)
        for route in () if remote else rec["routes"]:
            dev = names.get(route["interface"]) if route.get("interface") else None
            if rec["stopped"] or (route.get("interface") and dev in pending + down):
                continue           # the kernel drops routes over a down link; back on start
            gateway = route.get("gateway")
            if view.has_route(route["destination"], gateway, dev):
                continue
            cmds.append(["route", "replace", route["destination"],
                         *(["via", gateway] if gateway else []), *(["dev", dev] if dev else [])])
        self._apply(ns, cmds, first_route, tolerate=bool(pending or down))
        return pending

    @staticmethod
    def _apply(ns: str, cmds: list[list[str]], first_route: int, *, tolerate: bool) -> None:
        """Run a convergence's commands in one `ip -batch`; a failed route (from index
        `first_route` on) is tolerated when `tolerate` (its next hop is behind a link not
        here yet), any other failure raises."""
        failed = hostnet.batch(ns, cmds)
        for index, said in sorted(failed.items()):
            if index >= first_route and tolerate:
                continue
            raise hostnet.HostNetError(f"`{hostnet.batch_command(ns, cmds, index)}` failed: "
                                       f"{said}", stderr=said)

    # ---- a hybrid router's control plane on its forwarding plane's CPU port -----------------
    def plug_control_port(self, spec: SliverSpec, wire: str) -> bool:
        """Take the forwarding plane's CPU port (host interface `wire`, e.g. an emulated
        NetFPGA slot's `<prefix>h<slot>`) into a hybrid router's control-plane container as
        `cpu0`, carrying every address of the router: packets the plane punts (to the
        router's own addresses, TTL expired, no route) reach the guest, and what it sends is
        routed by the plane. False when the container is not (yet) here."""
        self._own(spec)
        if not IFNAME_RE.match(wire):
            raise DriverError(f"control port {wire!r} is not an interface name")
        handle = self.naming.node(spec.sliver_urn)
        with self.state.lock(handle):
            rec = self.state.read(handle)
            if rec is None or not rec.get("remote_forwarding"):
                return False
            rec["control_port"] = {"wire": wire, "name": CONTROL_PORT, "netns": rec["netns"],
                                   "end": f"{handle}-cpu", "node_handle": handle}
            self.state.write(handle, rec)
            self._converge_node(rec)
        return True

    def _converge_control_port(self, rec: Record, cpu: Mapping[str, Any],
                               present: list[hostnet.LinkInfo]) -> None:
        """(Caller holds the node lock.) The CPU port in the guest's namespace as `cpu0` with
        the router's addresses, and the control plane's routes over it, so the guest's kernel
        answers for the router and sends ICMP errors for what the plane cannot forward."""
        ns = rec["netns"]
        li = next((x for x in present if cpu["end"] in (x.alias, x.name)), None)
        if li is None:
            if hostnet.find_link(None, cpu["wire"]) is None:
                raise DriverError(f"control port {cpu['wire']} of {rec['client_id']} is not on "
                                  "this host: is its card running?", transient=True)
            hostnet.link_set(None, cpu["wire"], alias=cpu["end"])
            hostnet.link_move(cpu["wire"], ns)
            li = hostnet.find_link(ns, cpu["wire"])
            assert li is not None
        if li.name != cpu["name"]:
            hostnet.link_set(ns, li.name, name=cpu["name"], alias=cpu["end"])
        for iface in rec["interfaces"]:
            for cidr in iface["cidrs"]:
                hostnet.addr_replace(ns, cpu["name"], cidr)
        hostnet.link_set(ns, cpu["name"], up=not rec["stopped"])
        for key in ("all", CONTROL_PORT):     # the plane routes; the guest must not redirect
            hostnet.sysctl_set(ns, f"net.ipv4.conf.{key}.send_redirects", "0")
        if rec["stopped"]:
            return
        hostnet.run(["ip", "-n", ns, "route", "flush", "dev", cpu["name"], "proto", "boot"],
                    missing_ok=True)
        for route in self.routes.get(rec["handle"]) or ():
            if route.gateway:
                try:
                    hostnet.route_replace(ns, route.destination, gateway=route.gateway,
                                          dev=cpu["name"])
                except hostnet.HostNetError as exc:
                    log.warning("control plane %s: route %s via %s: %s", rec["client_id"],
                                route.destination, route.gateway, exc)

    def _limit(self, handle: str, rec: Record) -> None:
        """Create the sliver's cgroups or converge them to the record's limits (a record made
        before the pids limit existed gets today's default)."""
        rec.setdefault("pids_max", self.settings.default_pids_max)
        self.cgroups.create(handle, cpu=rec["cpu"], memory_mb=rec["memory_mb"],
                            pids_max=rec["pids_max"], shares=self.settings.cpu_shares)
        s = self.settings
        if "blkio" in self.cgroups.controllers:
            self.state.root_dir(handle).mkdir(mode=0o700, exist_ok=True)
            self.cgroups.throttle_disk(
                handle, _disk_of(self.state.root_dir(handle)),
                read_bps=int(s.disk_read_mbps * 1e6) if s.disk_read_mbps else None,
                write_bps=int(s.disk_write_mbps * 1e6) if s.disk_write_mbps else None)

    def _start_executes(self, rec: Record) -> None:
        for i, ex in enumerate(rec["executes"]):
            services.start_execute(Execute(ex["shell"], ex["command"]), i, self.guests,
                                   rec["handle"])

    # ---- operational actions ------------------------------------------------------------------
    def perform(self, spec: SliverSpec, action: str) -> OperationalState:
        self._own(spec)
        if action not in self.capabilities.actions:
            raise DriverError(f"action {action!r} is not supported by vserver containers "
                              f"(supported: {', '.join(self.capabilities.actions)})")
        if action == SYNC_ROUTES_ACTION:
            # the forwarding sliver's driver syncs the plane; the control plane holds the set
            return self.status(spec)
        if spec.kind is ResourceKind.LINK:
            return self._perform_link(spec, action)
        handle = self.naming.node(spec.sliver_urn)
        with self.state.lock(handle):
            rec = self.state.read(handle)
            if rec is None or not hostnet.netns_exists(rec["netns"]):
                raise DriverError(f"sliver {spec.sliver_urn} does not exist on this host")
            image_dir = self._image_dir(rec)
            if action == Action.UPDATE_USERS.value:
                self.ssh.check(spec.users)
                running = not rec["stopped"]
                if running:
                    self._ensure_guest(handle, rec, image_dir)
                self.ssh.converge(handle, rec, spec.users, run=running, may_move=False,
                                  image_dir=image_dir)
                self.state.write(handle, rec)
                return OperationalState.NOTREADY if rec["stopped"] else OperationalState.READY
            if action in (Action.STOP.value, Action.RESTART.value):
                rec["stopped"] = True
                self.state.write(handle, rec)
                self.guests.stop(handle, rec)     # every process of the guest, verified gone
                self.state.write(handle, rec)
                self._converge_node(rec)          # links down
            if action == Action.STOP.value:
                return OperationalState.NOTREADY
            rec["stopped"] = False
            self._limit(handle, rec)
            self._converge_node(rec)              # links up
            self._ensure_guest(handle, rec, image_dir)
            self.ssh.apply(handle, rec)
            self._start_executes(rec)
            rec["executes_started"] = True
            self.state.write(handle, rec)
            return OperationalState.READY

    def _perform_link(self, spec: SliverSpec, action: str) -> OperationalState:
        handle = self.naming.link(spec.sliver_urn)
        with self.state.lock(handle):
            rec = self.state.read(handle)
            if rec is None:
                raise DriverError(f"link sliver {spec.sliver_urn} does not exist on this host")
            if action == Action.UPDATE_USERS.value:
                return OperationalState.NOTREADY if rec["stopped"] else OperationalState.READY
            rec["stopped"] = action == Action.STOP.value
            self.state.write(handle, rec)
            self.state.hold((e["end"] for e in rec["ends"]), rec["stopped"])
            for end in rec["ends"]:
                with self.state.lock(end["node_handle"]):
                    where = self._locate(end)
                    if where is None:
                        raise DriverError(f"link end {end['end']} of {spec.client_id} is gone")
                    node = self.state.read(end["node_handle"])
                    if node is not None:
                        self._converge_node(node)     # up/down and the routes over it
                    else:
                        hostnet.link_set(where[0], where[1].name, up=not rec["stopped"])
            if rec["bridge"] and not rec.get("joins"):    # a shared LAN's bridge is its owner's
                hostnet.link_set(None, rec["bridge"], up=not rec["stopped"])
            return OperationalState.NOTREADY if rec["stopped"] else OperationalState.READY

    # ---- status ------------------------------------------------------------------------------
    def status(self, spec: SliverSpec) -> OperationalState:
        if spec.kind is ResourceKind.LINK:
            rec = self.state.read(self.naming.link(spec.sliver_urn))
            if rec is None or any(self._locate(e) is None for e in rec["ends"]) \
                    or (rec["bridge"] and hostnet.find_link(None, rec["bridge"]) is None) \
                    or (rec.get("tunnel") and hostnet.find_link(None, rec["tunnel"]["dev"]) is None):
                return OperationalState.FAILED
        else:
            handle = self.naming.node(spec.sliver_urn)
            rec = self.state.read(handle)
            if rec is None or not hostnet.netns_exists(rec["netns"]) \
                    or not self.cgroups.exists(handle) \
                    or (not rec["stopped"] and not self.guests.alive(handle, rec)):
                return OperationalState.FAILED
        return OperationalState.NOTREADY if rec["stopped"] else OperationalState.READY

    # ---- delete ------------------------------------------------------------------------------
    def delete(self, spec: SliverSpec) -> None:
        if spec.kind is ResourceKind.LINK:
            handle = self.naming.link(spec.sliver_urn)
            rec = self.state.read(handle)
            if rec is None and spec.link is not None and all(e.sliver_urn for e in spec.link.ends):
                rec = _link_record(spec, handle, self.naming)   # names are derived: clean anyway
            if rec is not None:
                self._delete_link(rec)
        else:
            self._delete_node(self.naming.node(spec.sliver_urn))

    def _delete_link(self, rec: Record) -> None:
        with self.state.lock(rec["handle"]):
            if rec.get("stitch"):
                self._unstitch(rec)
            for end in rec["ends"]:
                with self.state.lock(end["node_handle"]):
                    if end.get("wire"):
                        self._return_wire(end)
                        continue
                    where = self._locate(end)
                    if where is not None:
                        hostnet.link_delete(where[0], where[1].name)
                if end.get("port"):
                    hostnet.link_delete(_port_netns(rec), end["port"])
            if rec.get("tunnel"):
                hostnet.link_delete(None, rec["tunnel"]["dev"])
            joined = rec.get("mode") == "join"      # another host's bridge: once nobody is on it
            if rec.get("bridge") and not rec.get("joins") and \
                    (not joined or not hostnet.bridge_ports(rec["bridge"])):
                hostnet.link_delete(None, rec["bridge"])
            self.state.hold((e["end"] for e in rec["ends"]), False)
            self.state.remove(rec["handle"])

    def _delete_node(self, handle: str) -> None:
        with self.state.lock(handle):
            self.guests.stop(handle, self.state.read(handle))
            for rec in self.state.all().values():     # wires go back to their card, unharmed
                for end in rec.get("ends", ()) if rec.get("kind") == "link" else ():
                    if end.get("wire") and end["node_handle"] == handle:
                        self._return_wire(end)
            node = self.state.read(handle) or {}
            if node.get("control_port"):             # and so does a CPU port
                self._return_wire(node["control_port"])
            hostnet.netns_delete(handle)
            self.cgroups.remove(handle, timeout_s=self.settings.kill_timeout_s)
            shutil.rmtree(self.state.root_dir(handle), ignore_errors=True)
            self.state.remove(handle)
            self.routes.drop(handle)

    # ---- reconciliation ------------------------------------------------------------------------
    def observed(self) -> list[ObservedSliver]:
        """What is on the host, owned or not, judged without stopping the jobs that run now.

        Jobs write a sliver's record *before* they make anything of it, under its lock. So
        the substrate is listed first and the records read after: whatever the listing saw
        was made after its record was written, and no namespace, cgroup or interface of a
        sliver being made is taken for debris. A record whose namespace the listing lacks
        is judged again under its lock: a job holding the lock is making (or removing) it
        now, so it is reported as the sliver's, not yet ready; with the lock free, a record
        whose namespace is still missing is debris of a lost sliver."""
        netns = {n for n in hostnet.netns_list() if self.naming.is_node(n)}
        ifnames = {li.name for li in hostnet.links(None) if self.naming.is_ours_ifname(li.name)}
        cgroups = {n for n in self.cgroups.names() if self.naming.is_node(n)}
        records = self.state.all()
        out: list[ObservedSliver] = []
        owned_ns: set[str] = set()
        owned_if: set[str] = set()
        for handle, rec in sorted(records.items()):
            state = OperationalState.NOTREADY if rec.get("stopped") else OperationalState.READY
            if rec.get("kind") == "node":
                owned_ns.add(rec["netns"])
                detail = f"container {handle} ({rec.get('client_id')})"
                verdict = "alive" if rec["netns"] in netns else \
                    self._recheck_node(handle, rec["netns"])
                if verdict == "gone":
                    continue
                if verdict == "busy":
                    out.append(ObservedSliver(handle, rec.get("sliver_urn"),
                                              OperationalState.NOTREADY,
                                              f"{detail}: a job is making or changing it"))
                    continue
                alive = verdict == "alive"
            else:
                ends = rec.get("ends", ())
                owned_ns |= {e["netns"] for e in ends}
                owned_if |= {e["end"] for e in ends} | {e["port"] for e in ends if e.get("port")}
                if rec.get("bridge"):
                    owned_if.add(rec["bridge"])
                if rec.get("tunnel"):
                    owned_if.add(rec["tunnel"]["dev"])
                alive = True
                detail = f"{rec.get('mode')} link {handle} ({rec.get('client_id')})"
            if alive:
                out.append(ObservedSliver(handle, rec.get("sliver_urn"), state, detail))
            else:   # the record outlived its namespace: debris of a lost sliver
                out.append(ObservedSliver(handle, None, OperationalState.FAILED,
                                          f"{detail}: its namespace is gone"))
        for ns in sorted(netns - owned_ns):
            out.append(ObservedSliver(ns, None, None, f"namespace {ns} made by this AM, no sliver"))
        for cg in sorted(cgroups - owned_ns - netns):
            out.append(ObservedSliver(cg, None, None, f"cgroup {cg} made by this AM, no sliver"))
        for name in sorted(ifnames - owned_if):
            out.append(ObservedSliver(name, None, None, f"interface {name} made by this AM, "
                                                        "no sliver"))
        return out

    def _recheck_node(self, handle: str, ns: str) -> str:
        """For `observed`, a node record whose namespace the listing lacked, looked at again:
        "busy" while a job holds its lock (making, changing or removing it), else, under the
        lock, "gone" (its record was removed meanwhile), "alive" or "lost"."""
        with self.state.try_lock(handle) as free:
            if not free:
                return "busy"
            if self.state.read(handle) is None:
                return "gone"
            return "alive" if hostnet.netns_exists(ns) else "lost"

    def release(self, handle: str) -> None:
        rec = self.state.read(handle)
        if rec is not None:
            if rec.get("kind") == "link":
                self._delete_link(rec)
            else:
                self._delete_node(handle)
            return
        if self.naming.is_node(handle):
            self._delete_node(handle)
        elif self.naming.is_ours_ifname(handle):
            hostnet.link_delete(None, handle)
        elif self.naming.is_link_handle(handle):
            self.state.remove(handle)
        else:
            raise DriverError(f"{handle!r} was not made by this vserver driver "
                              f"(prefix {self.settings.name_prefix!r})")

    # ---- routes of hybrid routers' control planes ------------------------------------------------
    def check_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> tuple[Route, ...]:
        """Pure: the routes normalised, or RouteError. Only a hybrid router's control plane
        takes route changes this way (a guest-forwarding container routes for itself)."""
        if not (spec.kind is ResourceKind.NODE and _remote_mode(spec)):
            raise RouteError(f"sliver {spec.client_id} is not the control plane of a router "
                             "forwarding outside its container (forwarding hardware/openflow)")
        routes = normalise_all(routes)
        names = {i.client_id for i in spec.interfaces}
        for r in routes:
            if r.interface and r.interface not in names:
                raise RouteError(f"route to {r.destination} names interface {r.interface!r}, "
                                 "which the node does not have")
        return routes

    def set_routes(self, spec: SliverSpec, routes: Iterable[Route]) -> SyncResult | None:
        """Replace the control plane's route set. Nothing forwards here, so nothing syncs
        (None); the forwarding sliver's driver gets the same set and syncs its plane."""
        self._own(spec)
        try:
            routes = self.check_routes(spec, routes)
        except RouteError as exc:
            raise DriverError(str(exc)) from None
        handle = self.naming.node(spec.sliver_urn)
        with self.state.lock(handle):
            rec = self.state.read(handle)
            if rec is None:
                raise DriverError(f"sliver {spec.sliver_urn} does not exist on this host")
            self.routes.put(handle, routes)
            if rec.get("control_port"):
                self._converge_node(rec)         # the guest's table follows its routes
        return None

    def control_routes(self, spec: SliverSpec) -> tuple[Route, ...]:
        return self.routes.get(self.naming.node(spec.sliver_urn)) or ()

    # ---- helpers -------------------------------------------------------------------------------
    def _own(self, spec: SliverSpec) -> None:
        if self._component_by_urn(spec.component_id) is None:
            raise DriverError(f"component {spec.component_id} is not a vserver node here")

    def operator_shell(self, sliver_urn: str) -> str:
        """The command line that opens a root shell inside a node sliver's guest
        (docs/vserver.md): its init starts the shell with this terminal."""
        return shlex.join(self.sliver_argv(sliver_urn, ["sh", "-l"]))

    def sliver_argv(self, sliver_urn: str, argv: list[str], *, uid: int = 0) -> list[str]:
        """argv running `argv` inside a node sliver's guest (as its root, or guest `uid`),
        with the caller's stdin, stdout and stderr; exits with the command's status."""
        return self.guests.run_argv(self.naming.node(sliver_urn), argv, uid=uid)

    def node_handle(self, sliver_urn: str) -> str:
        return self.naming.node(sliver_urn)

    def link_handle(self, sliver_urn: str) -> str:
        return self.naming.link(sliver_urn)


# ---- records ----------------------------------------------------------------------------------

def _node_record(spec: SliverSpec, handle: str, naming: Naming,
                 settings: VServerSettings) -> Record:
    interfaces = []
    for i, iface in enumerate(spec.interfaces):
        interfaces.append({
            "client_id": iface.client_id, "name": iface.name or f"eth{i + 1}",
            "cidrs": [_cidr(a, m) for a, m in iface.ips], "mac": iface.mac,
            "end": naming.end(spec.sliver_urn, iface.client_id),
            "linked": iface.link_client_id is not None})
    return {
        "kind": "node", "handle": handle, "sliver_urn": spec.sliver_urn,
        "slice_urn": spec.slice_urn, "client_id": spec.client_id, "netns": handle,
        "cpu": (float(spec.cpu) if spec.cpu is not None
                else None if settings.default_cpu is None else float(settings.default_cpu)),
        "memory_mb": int(spec.memory_mb if spec.memory_mb is not None
                         else settings.default_memory_mb),
        "pids_max": settings.default_pids_max,      # a limit, not a resource admission counts
        "router": bool(spec.router), "interfaces": interfaces,
        "remote_forwarding": mode.value if (mode := _remote_mode(spec)) else None,
        "routes": [{"destination": r.destination, "gateway": r.gateway, "interface": r.interface}
                   for r in spec.routes],
        "installs": [[i.url, i.install_path] for i in spec.installs],
        "executes": [{"shell": e.shell, "command": e.command} for e in spec.executes],
    }


def _remote_mode(spec: SliverSpec) -> ForwardingMode | None:
    """The forwarding mode of a hybrid router whose forwarding is another sliver, else None."""
    if spec.router and spec.forwarding in REMOTE_MODES and spec.params.get("forwarding_plane"):
        return spec.forwarding
    return None


def _link_record(spec: SliverSpec, handle: str, naming: Naming) -> Record:
    if spec.link is None:
        raise DriverError(f"link sliver {spec.client_id} has no link spec")
    mode = spec.link.mode
    if mode not in ("veth", "bridge", "wire", "join", "stitch", "tunnel"):
        raise DriverError(f"vserver links are veth pairs, bridges, wires, joins, tunnels or "
                          f"stitched, "
                          f"not {mode!r}")
    if mode == "veth" and len(spec.link.ends) != 2:
        mode = "bridge"
    wires = dict(spec.params.get("wires") or {}) if mode == "wire" else {}
    ends = []
    for e in spec.link.ends:
        if mode == "wire" and e.interface_client_id not in wires:
            continue                      # the card's end: the wire is its port
        if mode in ("join", "tunnel") and e.component_id.lower() != spec.component_id.lower():
            continue                      # the other host's node: on its bridge, or its half
        if not e.sliver_urn:
            raise DriverError(f"link {spec.client_id}: end {e.interface_client_id} names no "
                              "node sliver")
        node = naming.node(e.sliver_urn)
        ends.append({"node_urn": e.sliver_urn, "node_handle": node, "netns": node,
                     "interface": e.interface_client_id,
                     "end": naming.end(e.sliver_urn, e.interface_client_id),
                     "port": naming.port(spec.sliver_urn, e.sliver_urn, e.interface_client_id)
                     if mode in ("bridge", "join", "stitch", "tunnel") else None,
                     **({"wire": wires[e.interface_client_id]} if mode == "wire" else {})})
    lan = spec.params.get("lan_sliver")      # joins the LAN another slice shares
    return {"kind": "link", "handle": handle, "sliver_urn": spec.sliver_urn,
            "slice_urn": spec.slice_urn, "client_id": spec.client_id, "mode": mode,
            "joins": spec.params.get("shared_lan") if lan else None,
            "bridge": naming.bridge(lan or spec.sliver_urn) if mode in ("bridge", "tunnel") else
            str(spec.params["bridge"]) if mode == "join" else None,
            "capacity_kbps": spec.link.capacity_kbps, "ends": ends,
            **({"stitch": _stitch_record(spec)} if mode == "stitch" else {}),
            **({"tunnel": _tunnel_record(spec, naming)} if mode == "tunnel" else {})}


def _tunnel_record(spec: SliverSpec, naming: Naming) -> Record:
    """A tunnel half's VXLAN device: the VNI the store gave the link, this host's address and
    the other's (the inventory's), and the MTU of the link's interfaces."""
    t = dict(spec.params.get("tunnel") or {})
    vni = spec.params.get("vni")
    if not isinstance(vni, int) or not t.get("local") or not t.get("remote"):
        raise DriverError(f"tunnel link {spec.client_id} has no VNI or no host addresses")
    return {"dev": naming.vxlan(spec.sliver_urn), "vni": vni, "local": str(t["local"]),
            "remote": str(t["remote"]), "remote_host": str(t.get("remote_host") or ""),
            "remotes": [str(r) for r in t.get("remotes") or (t["remote"],)],
            "remote_hosts": [str(h) for h in t.get("remote_hosts") or (t.get("remote_host") or "",)],
            "mtu": TUNNEL_MTU}


def _stitch_record(spec: SliverSpec) -> Record:
    """Where a stitched link's port goes: the edge's OVS bridge, its uplink port, the tag, and
    the flow cookie that names the link's flows."""
    p = spec.params
    return {"ovs_db": p.get("ovs_db"), "bridge": p.get("bridge"), "netns": p.get("netns"),
            "edge": p.get("edge"), "edge_port": p.get("edge_port"), "mtu": p.get("mtu"),
            "tag": spec.link.vlan_tag if spec.link else None,
            "cookie": "0x" + hashlib.sha256(spec.sliver_urn.encode()).hexdigest()[:15]}


def _port_netns(rec: Record) -> str | None:
    """The namespace a link's bridge-side ports live in (an edge's vswitchd's for stitched
    links; the root namespace otherwise)."""
    return (rec.get("stitch") or {}).get("netns")


def _cidr(address: str, netmask: str) -> str:
    mask = netmask or "24"
    try:
        iface = ipaddress.IPv4Interface(f"{address}/{mask}")
    except ValueError as exc:
        raise DriverError(f"bad address {address}/{netmask}: {exc}") from None
    return iface.with_prefixlen


def _disk_of(path: Path) -> str:
    """"MAJ:MIN" of the whole disk holding `path` (blkio throttles disks, not partitions)."""
    dev = os.stat(path).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if (sysfs / "partition").exists():
        return (sysfs.resolve().parent / "dev").read_text().strip()
    if not sysfs.exists():
        raise DriverError(f"{path} is on no block device (a tmpfs or overlay?): disk I/O "
                          "cannot be throttled there; unset disk_read_mbps/disk_write_mbps")
    return f"{os.major(dev)}:{os.minor(dev)}"


def _hostname(client_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9-]+", "-", client_id).strip("-")[:63]
    return name or "guest"


def _require_host() -> None:
    """The driver changes the host's namespaces and cgroups: it must be root with iproute2."""
    if os.geteuid() != 0:
        raise DriverError("the vserver driver must run as root (it creates network namespaces, "
                          "veth pairs, bridges and cgroups)")
    missing = hostnet.missing_tools()
    if missing:
        raise DriverError(f"the vserver driver needs {', '.join(missing)} (iproute2, procps) "
                          "on PATH")


__all__ = ["SLIVER_TYPE", "VServerDriver"]
