"""The Xen driver's own record of each sliver: one JSON file per domain under its state dir.

With `xen:///system` libvirtd holds the domains and this record only remembers what libvirt
cannot (the Dom0 table a router got, the vifs, the desired power state). With libvirt's
in-process test driver there is no daemon: every process has its own private libvirt, so the
record is the shared truth and each process re-creates the domain from it before acting
(see `XenDriver._converge`). Files are replaced atomically, so readers never see half a record.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

R = TypeVar("R", bound=Any)


@dataclass
class DomainRecord:
    handle: str                       # libvirt domain name
    sliver_urn: str
    host: str                         # component name
    xml: str                          # the domain XML as defined
    running: bool = False             # desired power state
    forwarding: str | None = None     # ForwardingMode value for routers
    table: int | None = None          # Dom0 routing table (dom0 mode)
    vifs: list[str] = field(default_factory=list)
    macs: dict[str, str] = field(default_factory=dict)
    vif_by_client: dict[str, str] = field(default_factory=dict)
    # real guests (a libvirtd URI, not test:): how they boot and what the host made for them
    domain_type: str | None = None    # xen | kvm | qemu
    hostname: str | None = None
    image: str | None = None          # image name and digest it boots
    image_digest: str | None = None
    ssh_port: int | None = None
    bridges: list[str] = field(default_factory=list)            # link bridges its NICs join
    dom0_ports: list[dict] = field(default_factory=list)        # plumbing.Dom0Port fields
    failure: str | None = None        # why the last boot failed
    booting_since: float | None = None  # wall-clock start of a boot not yet seen ready
    # a hybrid router's control plane (forwarding on a NetFPGA slot): no NIC on its links (they
    # plug into the slot); one NIC `cpu0` on a bridge with the slot's CPU port once plugged
    control_plane: bool = False
    control_port: dict | None = None  # wire, mac (the CPU port's), bridge, device (our tap)
    waiting_since: float | None = None  # wall-clock start of a geni_start waiting for the port


class JsonRecords(Generic[R]):
    """One JSON file per record (`<key>.json`), replaced atomically."""

    def __init__(self, directory: Path, cls: type[R], key: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cls, self.key = cls, key

    def _path(self, handle: str) -> Path:
        return self.directory / f"{handle}.json"

    def get(self, handle: str) -> R | None:
        try:
            data = json.loads(self._path(handle).read_text())
        except FileNotFoundError:
            return None
        return self.cls(**data)

    def put(self, rec: R) -> None:
        path = self._path(getattr(rec, self.key))
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(rec)))
        os.replace(tmp, path)

    def drop(self, handle: str) -> None:
        self._path(handle).unlink(missing_ok=True)

    def all(self) -> list[R]:
        out = []
        for p in sorted(self.directory.glob("*.json")):
            rec = self.get(p.stem)
            if rec is not None:
                out.append(rec)
        return out


class RecordStore(JsonRecords[DomainRecord]):
    def __init__(self, directory: Path):
        super().__init__(directory, DomainRecord, "handle")

    def tables_in_use(self) -> set[int]:
        return {r.table for r in self.all() if r.table is not None}
