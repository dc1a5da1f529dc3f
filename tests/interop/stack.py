"""The real AM stack for interop and fault tests: `build_runtime` (SQLite store, fake site, the
embedded Celery worker `geni-am serve` runs) behind the real cheroot TLS server, on a free
loopback port, with a development authority's AM certificate (SAN localhost/127.0.0.1, so
clients can verify host names) and trust roots = the gcf CA + the development CA.

Celery keeps worker state per process, so at most one `LiveAM` runs at a time: fixtures using
it are module-scoped and stop it before the next module starts.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from am.client import AMClient
from am.config import Settings
from credentials.authority import DevAuthority
from tests.support import slice_urn, wait_until

AM_AUTHORITY = "geni-am:interop"
DEV_AUTHORITY = "geni-am"
GCF_SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
GCF_EXPIRED_SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+expired"
GCF_ALICE = "urn:publicid:IDN+geni:gpo:gcf+user+alice"
GCF_BOB = "urn:publicid:IDN+geni:gpo:gcf+user+bob"
GCF_TOOL = "urn:publicid:IDN+geni:gpo:gcf+user+tool"
RSPEC_V = {"type": "GENI", "version": "3"}
GENI3 = "http://www.geni.net/resources/rspec/3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(client_id: str, *, sliver_type: str = "xen-vm", component: str | None = None,
         exclusive: bool = False, am_urn: str | None = None) -> str:
    attrs = f'client_id="{client_id}" exclusive="{str(exclusive).lower()}"'
    if component:
        attrs += f' component_id="{component}"'
    if am_urn:
        attrs += f' component_manager_id="{am_urn}"'
    return f'<node {attrs}><sliver_type name="{sliver_type}"/></node>'


def request(*nodes: str) -> str:
    return f'<rspec xmlns="{GENI3}" type="request">{"".join(nodes)}</rspec>'


def component_urn(name: str) -> str:
    return f"urn:publicid:IDN+{AM_AUTHORITY}+node+{name}"


@dataclass
class LiveAM:
    """A running AM and what clients need to talk to it."""

    url: str
    port: int
    ca: Path                 # what clients verify the AM's certificate with
    gcf: Path                # the gcf fixtures directory
    dev: DevAuthority        # development authority (trusted by the AM)
    runtime: Any             # am.app.Runtime
    settings: Settings

    def gcf_client(self, who: str = "alice", credentials: Sequence[str | Path] = (),
                   **kw: Any) -> AMClient:
        """AMClient with a gcf fixture certificate; credentials are fixture file names."""
        return AMClient(self.url, self.gcf / f"{who}-cert.pem", self.gcf / f"{who}-key.pem",
                        ca=self.ca, credentials=[self.gcf / c for c in credentials], **kw)

    def dev_client(self, who: str, credentials: Sequence[str | Path] = (), **kw: Any) -> AMClient:
        return AMClient(self.url, self.dev.dir / f"{who}-cert.pem", self.dev.dir / f"{who}-key.pem",
                        ca=self.ca, credentials=list(credentials), **kw)

    def dev_slice(self, name: str, owner: str = "carol") -> tuple[str, Path]:
        """(slice URN, slice credential of `owner`) from the development authority."""
        path = self.dev.dir / f"{name}-slice-cred-{owner}.xml"
        if not path.exists():
            path = self.dev.slice(name, owner)
        return slice_urn(name, DEV_AUTHORITY), path


def make_dev_authority(directory: Path) -> DevAuthority:
    dev = DevAuthority.init(directory, authority=DEV_AUTHORITY)
    dev.user("carol")
    dev.server_cert(AM_AUTHORITY, ["localhost", "127.0.0.1"])
    return dev


def trust_roots(directory: Path, gcf: Path, dev: DevAuthority) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(gcf / "ca-cert.pem", directory / "gcf-ca-cert.pem")
    shutil.copy(dev.files["ca_cert"], directory / "dev-ca-cert.pem")
    return directory


def am_settings(tmp: Path, gcf: Path, dev: DevAuthority, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        host="127.0.0.1", port=port, public_url=f"https://localhost:{port}/",
        authority=AM_AUTHORITY, cert=str(dev.dir / "am-cert.pem"),
        key=str(dev.dir / "am-key.pem"), trust_roots=str(trust_roots(tmp / "trust", gcf, dev)),
        state_dir=str(tmp / "state"), fake_nodes=4, max_request_bytes=256 * 1024)
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def live_am(tmp: Path, gcf: Path, **overrides: Any) -> Iterator[LiveAM]:
    """Start the real runtime (embedded worker) behind the real TLS server; stop it after."""
    from am.app import build_runtime
    from am.jobs.runtime import serve_job_queue
    from am.server import AmServer, ServerOptions

    dev = make_dev_authority(tmp / "authority")
    port = free_port()
    settings = am_settings(tmp, gcf, dev, port, **overrides)
    runtime = build_runtime(settings, job_queue=serve_job_queue)
    try:
        server = AmServer(runtime.app, ServerOptions(
            host="127.0.0.1", port=port, threads=16, cert=settings.cert, key=settings.key,
            trust_roots=settings.trust_roots, max_request_bytes=settings.max_request_bytes))
        server.start()
        try:
            yield LiveAM(url=f"https://localhost:{port}/", port=port,
                         ca=dev.files["ca_cert"], gcf=gcf, dev=dev, runtime=runtime,
                         settings=settings)
        finally:
            server.stop()
    finally:
        runtime.close()


def ensure_pkg_resources() -> None:
    """geni-lib 0.9.9.4 reads its own version with `pkg_resources`, which setuptools >= 81 no
    longer ships. Give it the one function it calls, answered by importlib.metadata."""
    try:
        import pkg_resources  # noqa: F401
        return
    except ImportError:
        pass
    from importlib import metadata

    shim = types.ModuleType("pkg_resources")

    class _Dist:
        def __init__(self, name: str):
            self.project_name = name
            self.version = metadata.version(name)

    shim.require = lambda name: [_Dist(name)]   # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim


def poll_status(client: AMClient, urns: Any, done, timeout: float = 20.0) -> dict:
    """Status every 50 ms until `done(slivers)` holds; the last Status value (or AssertionError)."""
    def settled():
        value = client.status(urns)
        return value if done(value["geni_slivers"]) else None
    return wait_until(settled, "Status to settle", timeout)


def all_in(*states: str):
    return lambda slivers: all(s.get("geni_operational_status") in states for s in slivers)
