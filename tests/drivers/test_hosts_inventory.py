"""Hosts in the inventory: `[hosts.<name>]`, `host = ...` on components, and a host's part of
the site as its `geni-am worker --host` loads it (its components, its driver settings)."""
from __future__ import annotations

import pytest

from am.errors import GeniCode, GeniError
from am.jobs.hosts import SITE_QUEUE, JobRouter, host_queue
from drivers.inventory import InventoryError, parse_inventory
from drivers.registry import load_site

AUTH = "geni-am:hosts-test"


def _text(tmp_path) -> str:
    return f"""
[drivers.fake]
state_dir = "{tmp_path / 'site'}"

[hosts.hostA]
address = "192.0.2.1"
[hosts.hostA.drivers.fake]
state_dir = "{tmp_path / 'a'}"

[hosts.hostB]
address = "192.0.2.2"
[hosts.hostB.drivers.fake]
state_dir = "{tmp_path / 'b'}"

[[components]]
name = "pcA"
driver = "fake"
host = "hostA"
ports = ["eth0"]

[[components]]
name = "pcB"
driver = "fake"
host = "hostB"
ports = ["eth0"]

[[components]]
name = "fabric"
driver = "fake"
isolation = "flowspace"
host = ["hostA", "hostB"]
ports = ["p1", "p2"]

[[links]]
ends = ["pcA:eth0", "fabric:p1"]
[[links]]
ends = ["pcB:eth0", "fabric:p2"]
"""


def urn(name: str) -> str:
    return f"urn:publicid:IDN+{AUTH}+node+{name}"


def test_a_hosts_worker_loads_its_part_with_its_settings(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(_text(tmp_path))
    whole = load_site(str(path), authority=AUTH)
    part = load_site(str(path), authority=AUTH, host="hostA")
    try:
        assert sorted(whole.hosts) == ["hostA", "hostB"]
        assert whole.hosts["hostA"].address == "192.0.2.1"
        assert whole.host_of(urn("pcA")) == "hostA" and whole.host_of(urn("pcB")) == "hostB"
        assert whole.hosts_of(urn("fabric")) == ("hostA", "hostB")
        assert whole.host_of(urn("fabric")) is None        # spans two: site-wide work
        # hostA's worker: its own components (and the fabric it is on), its own state dir
        assert sorted(c.name for c in part.components) == ["fabric", "pcA"]
        assert str(part.drivers["fake"].state_dir) == str(tmp_path / "a")
        assert part.host == "hostA" and part.host_of(urn("pcB")) == "hostB"
        assert [tuple(e.component_id for e in link.ends) for link in part.links] == \
            [(urn("pcA"), urn("fabric"))]
    finally:
        whole.close()
        part.close()


def test_a_host_the_inventory_does_not_name_is_refused(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(_text(tmp_path))
    with pytest.raises(InventoryError, match=r"host 'hostZ' is not named in the inventory "
                                             r"\(hosts: hostA, hostB\)"):
        load_site(str(path), authority=AUTH, host="hostZ")


@pytest.mark.parametrize("text, message", [
    ('[[components]]\nname = "x"\ndriver = "fake"\nhost = "nowhere"\n',
     "table [components[0]], key 'host': host 'nowhere' is not named in [hosts] (named: none)"),
    ('[hosts.a]\naddress = "not-an-ip"\n', "table [hosts.a], key 'address': 'not-an-ip' is not "
                                           "an IP address"),
    ('[hosts.a]\nwhat = 1\n', "table [hosts.a], key 'what': unknown key"),
    ('[hosts.a]\n[[components]]\nname = "x"\ndriver = "fake"\nhost = ["a", "a"]\n',
     "key 'host': must be a host name or a list of distinct host names"),
])
def test_bad_host_tables_are_named(text, message):
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, known_drivers={"fake"})
    assert message in str(err.value)


def test_jobs_are_routed_to_their_hosts_queue(tmp_path):
    from am.service.contract import Options, Principal
    from am.service.aggregate import Aggregate
    from am.config import Settings
    from am.store import Job, open_store

    path = tmp_path / "site.toml"
    path.write_text(_text(tmp_path))
    site = load_site(str(path), authority=AUTH)
    store = open_store(f"sqlite:///{tmp_path / 'am.sqlite'}", migrate=True)
    settings = Settings(state_dir=str(tmp_path), authority=AUTH, inventory=str(path))
    try:
        class Nowhere:
            def submit(self, job_id):
                pass
        agg = Aggregate(settings, store, site, Nowhere())
        nodes = "".join(f'<node client_id="{n}" component_manager_id="{settings.am_urn}" '
                        f'component_id="{urn(n)}" exclusive="false"/>' for n in ("pcA", "pcB"))
        user = Principal(urn=f"urn:publicid:IDN+{AUTH}+user+alice")
        with pytest.raises(GeniError) as err:     # no host agent has reported yet
            agg.allocate(user, f"urn:publicid:IDN+{AUTH}+slice+s", '<rspec type="request" '
                         f'xmlns="http://www.geni.net/resources/rspec/3">{nodes}</rspec>',
                         Options())
        assert err.value.code == GeniCode.UNAVAILABLE
        assert "host hostA unreachable (its worker has never reported)" in err.value.message
        from am.store.hosts import HostRepository
        for host in ("hostA", "hostB"):       # their agents are up
            HostRepository(store).beat(host)
        agg.hosts._read_at = -1e9             # past the API's 1 s view of the hosts
        agg.allocate(user, f"urn:publicid:IDN+{AUTH}+slice+s", '<rspec type="request" xmlns='
                     f'"http://www.geni.net/resources/rspec/3">{nodes}</rspec>', Options())
        agg.provision(user, [f"urn:publicid:IDN+{AUTH}+slice+s"], Options())
        with store.read() as session:
            jobs = [j.id for j in session.query(Job).order_by(Job.id)]
        routed = JobRouter(store, site)(jobs)
        assert sorted(routed) == [host_queue("hostA"), host_queue("hostB")]
        assert sorted(routed[host_queue("hostA")] + routed[host_queue("hostB")]) == jobs
        assert host_queue(None) == SITE_QUEUE

        # on hostB's worker: hostA's job is refused and re-sent to hostA's queue; the next
        # look of a job under way (a poll) goes to its host's queue, not the site queue
        from am.jobs.hosts import HostGuard
        from am.jobs.task import PollLater
        from am.jobs.tasks import JobRuntime, _refused, _send_poll

        class Broker:           # records what the worker sends (the broker's side)
            def __init__(self):
                self.sent = []

            def send_task(self, name, args=(), **options):
                self.sent.append((args, options.get("queue")))
        (job_a,) = routed[host_queue("hostA")]
        (job_b,) = routed[host_queue("hostB")]
        rt = JobRuntime(store, site, agg, Nowhere(), "w",
                        guard=HostGuard(JobRouter(store, site), "hostB"))
        app = Broker()
        assert _refused(app, rt, job_a) and not _refused(app, rt, job_b)
        _send_poll(app, PollLater(job_a, 1.0), rt)
        assert app.sent == [((job_a,), host_queue("hostA")), ((job_a,), host_queue("hostA"))]
    finally:
        store.close()
        site.close()
