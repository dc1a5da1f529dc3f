"""Dashboard rendering figures: manifest -> SVG for growing slices, and the slice page for a
100-node slice allocated through the real service (SQLite, fake site).

    .venv/bin/python bench/bench_dashboard.py
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from am.web.topology import manifest_to_svg  # noqa: E402

R3 = "http://www.geni.net/resources/rspec/3"


def manifest(n: int) -> str:
    nodes = "".join(f'<node client_id="n{i}"><sliver_type name="xen-vm"/>'
                    f'<interface client_id="n{i}:a"/><interface client_id="n{i}:b"/></node>'
                    for i in range(n))
    links = "".join(f'<link client_id="l{i}"><interface_ref client_id="n{i}:b"/>'
                    f'<interface_ref client_id="n{i + 1}:a"/>'
                    f'<property source_id="n{i}:b" dest_id="n{i + 1}:a" capacity="100000"/></link>'
                    for i in range(n - 1))
    return f'<rspec xmlns="{R3}" type="manifest">{nodes}{links}</rspec>'


def timed(fn, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def main() -> None:
    for n in (10, 100, 1000):
        xml = manifest(n)
        ms = timed(lambda: manifest_to_svg(xml))
        print(f"manifest_to_svg {n:5d} nodes, {n - 1:5d} links: {ms:8.2f} ms "
              f"({len(manifest_to_svg(xml)) / 1024:.0f} KiB of SVG)")

    from am.app import create_app
    from am.service.aggregate import Aggregate
    from am.service.contract import Options, Principal
    from am.store import open_store
    from drivers.fake import make_fake_site
    from am.config import Settings

    class NoQueue:
        def submit(self, job_id: int) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(authority="geni-am:bench", state_dir=tmp, dashboard_token="t" * 32)
        store = open_store(f"sqlite:///{tmp}/am.sqlite", migrate=True)
        site = make_fake_site(20, authority="geni-am:bench")
        service = Aggregate(settings, store, site, NoQueue())
        nodes = "".join(f'<node client_id="n{i}" exclusive="false"><sliver_type name="xen-vm"/>'
                        f'</node>' for i in range(100))
        service.allocate(Principal(urn="urn:publicid:IDN+bench+user+u"),
                         "urn:publicid:IDN+bench+slice+big",
                         f'<rspec xmlns="{R3}" type="request">{nodes}</rspec>', Options())
        for i in range(1000):
            store.audit(caller_urn="urn:publicid:IDN+bench+user+u", method="Status",
                        target=f"t{i}", outcome=0)

        class Authz:
            def identify(self, pem):
                raise AssertionError("token only")

        client = create_app(settings, service, Authz(), call_log=False).test_client()
        headers = {"Authorization": "Bearer " + "t" * 32}
        for path in ("/dashboard/", "/dashboard/slices", "/dashboard/slices/1",
                     "/dashboard/failures", "/dashboard/audit?page=10"):
            assert client.get(path, headers=headers).status_code == 200
            ms = timed(lambda: client.get(path, headers=headers), repeat=7)
            print(f"GET {path:28s} {ms:8.2f} ms")
        site.close()
        store.close()


if __name__ == "__main__":
    main()
