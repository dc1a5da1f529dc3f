"""A store populated through the real service on a fake site, for the dashboard tests.

Slice "demo": a Xen VM, a container and a NetFPGA node, a 100 Mb/s point-to-point link and a
three-ended LAN; provisioned, its jobs run by `am.jobs.runner.run_job`, which also start the
slivers (start_on_provision, the default): geni_ready.
Slice "broken": one node whose provision job fails (the fake driver's failure injection), so
the sliver is geni_failed with the driver's reason and its job is failed.
Slice "hostile": a node whose client_id is markup, allocated only (geni_pending_allocation).
The audit log gets entries through `Store.audit`, the writer the API layer uses.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from am.auth import Authorizer
from am.config import Settings
from am.jobs.runner import run_job
from am.service.aggregate import Aggregate
from am.service.contract import Options, Principal
from am.store import Store, open_store
from drivers.fake import make_fake_site
from tests.support import slice_urn

AUTH = "geni-am:test"
AM = f"urn:publicid:IDN+{AUTH}+authority+am"
RSPEC = 'xmlns="http://www.geni.net/resources/rspec/3"'
ALICE_URN = "urn:publicid:IDN+geni:gpo:gcf+user+alice"     # gcf alice: the operator here
OWNER = Principal(urn="urn:publicid:IDN+geni-am:test:sa+user+owner")
TOKEN = "dashboard-token-0123456789abcdef"
HOSTILE_ID = '<script>alert("x")</script>&amp;'
AUDIT_ENTRIES = 120
FAIL_REASON = "injected failure in fake provision"


def _node(client_id: str, stype: str, ifaces: tuple[str, ...] = ()) -> str:
    from xml.sax.saxutils import quoteattr
    inner = "".join(f"<interface client_id={quoteattr(i)}/>" for i in ifaces)
    return (f'<node client_id={quoteattr(client_id)} component_manager_id="{AM}" '
            f'exclusive="false"><sliver_type name="{stype}"/>{inner}</node>')


def _request(*elements: str) -> str:
    return f'<rspec {RSPEC} type="request">{"".join(elements)}</rspec>'


DEMO_REQUEST = _request(
    _node("vm1", "xen-vm", ("vm1:if0", "vm1:if1")),
    _node("ct1", "vserver-container", ("ct1:if0", "ct1:if1")),
    _node("fpga1", "netfpga-vdp", ("fpga1:if0",)),
    '<link client_id="p2p"><interface_ref client_id="vm1:if0"/>'
    '<interface_ref client_id="ct1:if0"/>'
    '<property source_id="vm1:if0" dest_id="ct1:if0" capacity="100000"/>'
    '<property source_id="ct1:if0" dest_id="vm1:if0" capacity="100000"/></link>',
    '<link client_id="lan0"><interface_ref client_id="vm1:if1"/>'
    '<interface_ref client_id="ct1:if1"/><interface_ref client_id="fpga1:if0"/></link>',
)


class CollectingQueue:
    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


@dataclass
class Populated:
    settings: Settings
    store: Store
    site: object
    service: Aggregate
    authorizer: Authorizer
    slice_ids: dict[str, int]

    def close(self) -> None:
        self.site.close()
        self.store.close()


def settings_for(tmp_path: Path, gcf: Path, **changes) -> Settings:
    trust = tmp_path / "trust-roots"
    trust.mkdir(exist_ok=True)
    shutil.copy(gcf / "ca-cert.pem", trust / "ca-cert.pem")
    base = Settings(authority=AUTH, state_dir=str(tmp_path / "state"), trust_roots=str(trust),
                    operators=(ALICE_URN,), dashboard_token=TOKEN)
    return base.replace(**changes)


def populate(tmp_path: Path, gcf: Path, **setting_changes) -> Populated:
    settings = settings_for(tmp_path, gcf, **setting_changes)
    store = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
    site = make_fake_site(4, authority=AUTH, state_dir=str(tmp_path / "fake"))
    queue = CollectingQueue()
    service = Aggregate(settings, store, site, queue)

    def run_jobs() -> None:
        while queue.submitted:
            run_job(store, site, queue.submitted.pop(0), worker_id="dashboard-test")

    opts = Options()
    demo = slice_urn("demo")
    service.allocate(OWNER, demo, DEMO_REQUEST, opts)
    service.provision(OWNER, [demo], opts)
    run_jobs()   # start_on_provision (the default): provisioned and started, geni_ready

    broken = slice_urn("broken")
    service.allocate(OWNER, broken, _request(_node("doomed", "xen-vm")), opts)
    service.provision(OWNER, [broken], opts)
    driver = site.drivers["fake"]
    driver.settings["failure_rate"] = 1.0
    try:
        run_jobs()
    finally:
        driver.settings["failure_rate"] = 0.0

    hostile = slice_urn("hostile")
    service.allocate(OWNER, hostile, _request(_node(HOSTILE_ID, "vserver-container")), opts)

    for i in range(AUDIT_ENTRIES):
        store.audit(caller_urn=OWNER.urn, method="Status" if i % 2 else "Describe",
                    target=f"{demo} #{i}", outcome=0 if i % 3 else 12,
                    message=f"entry {i} <b>not bold</b>", duration_ms=1.5)
    with store.read() as session:
        from sqlalchemy import select
        from am.store import Slice
        ids = {s.urn.rsplit("+", 1)[-1]: s.id for s in session.scalars(select(Slice))}
    authorizer = Authorizer.from_settings(settings)
    return Populated(settings, store, site, service, authorizer, ids)
