"""The periodic route sync on the job timer (embedded broker): a hybrid router's forwarding
table flushed behind the AM's back comes back within one `route_sync_interval_s`, through
the `geni_am.sync_routes` task the timer queues, without any API call."""
from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from am.config import Settings
from am.jobs.celery_queue import SYNC_ROUTES
from am.jobs.embedded import periodic_tasks
from am.service.contract import Options
from am.store import Sliver, spec_from_dict
from tests.hybrid.conftest import node, request
from tests.jobs.conftest import AUTHORITY, USER, build_stack, slice_urn
from tests.support import wait_until

CARD = f"urn:publicid:IDN+{AUTHORITY}+node+nf1"
INTERVAL_S = 1.0


def _settings(tmp: Path, **overrides: object) -> Settings:
    inventory = tmp / "inventory.toml"
    inventory.write_text(f'''
[site]
name = "route-sync-test"

[drivers.netfpga]
card_process = false    # register model only: these tests check route registers
state_dir = "{tmp / 'netfpga'}"
slots = 4
route_table_size = 32

[[components]]
name = "nf1"
driver = "netfpga"
''')
    return Settings(state_dir=str(tmp), authority=AUTHORITY, inventory=str(inventory),
                    reaper_interval_s=30.0, **overrides)


def test_flushed_routes_come_back_within_an_interval(tmp_path: Path):
    stack = build_stack(_settings(tmp_path, route_sync_interval_s=INTERVAL_S))
    try:
        xml = request(node("dp1", CARD, sliver_type="netfpga-vdp",
                           ifaces=(("if0", "10.95.1.1"), ("if1", "10.95.2.1")),
                           routes=(("10.210.0.0/16", "10.95.1.254"),
                                   ("10.211.0.0/16", "10.95.2.254"))))
        stack.aggregate.allocate(USER, slice_urn("router"), xml, Options())
        stack.provision("router")      # start_on_provision: the job boots it, routes go in
        (urn,) = stack.wait_ops("router", {"geni_ready"}, timeout=20)
        with stack.store.read() as session:
            spec = spec_from_dict(session.scalars(select(Sliver.spec)
                                                  .where(Sliver.urn == urn)).one())
        plane = stack.site.drivers["netfpga"].plane(spec)
        installed = plane.read()
        assert {e.prefix for e in installed} == {"10.210.0.0/16", "10.211.0.0/16"}

        plane.clear()                  # an operator reset the slot's table
        assert plane.read() == set()
        flushed = time.monotonic()
        wait_until(lambda: plane.read() == installed, "the periodic sync to restore the routes",
              timeout=3 * INTERVAL_S + 2)
        assert time.monotonic() - flushed <= 2 * INTERVAL_S + 1.5
        # the sync repairs the data plane only: the sliver's state never moved
        assert stack.status("router") == {urn: ("geni_provisioned", "geni_ready", "")}
    finally:
        stack.close()


def test_route_sync_interval_zero_turns_the_timer_task_off(tmp_path: Path):
    class Queue:
        def send_periodic(self, name: str) -> bool:
            return True

    on = periodic_tasks(_settings(tmp_path, route_sync_interval_s=7.5), Queue())
    assert [(t.name, t.period_s) for t in on if t.name == "sync_routes"] == [("sync_routes", 7.5)]
    off = periodic_tasks(_settings(tmp_path, route_sync_interval_s=0.0), Queue())
    assert "sync_routes" not in {t.name for t in off}
    assert SYNC_ROUTES == "geni_am.sync_routes"
