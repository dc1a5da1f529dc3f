"""Fetching an http(s) install without letting a request reach the AM's own services.

An install URL is the experimenter's, and the AM fetches it from the host: left alone, that
is a server-side request forgery (SSRF) hole, since `http://127.0.0.1:6379/` or a host name
that resolves to a private address reaches services only the AM's host can see (Redis,
PostgreSQL, a cloud metadata service on 169.254.169.254). So:

  * the URL's host is resolved once; every address it resolves to must be public: not
    loopback, link-local, private (RFC 1918, unique-local), shared (100.64/10), multicast,
    reserved or unspecified, and not an address of this host's interfaces; an address inside
    a network the operator lists in `install_allow_networks` is allowed all the same (a
    local mirror, the tests' loopback server);
  * the connection goes to that resolved, checked address (the Host header and TLS server
    name stay the URL's), so a DNS answer that changes between the check and the fetch
    (rebinding) changes nothing;
  * redirects are followed by hand (at most `MAX_REDIRECTS`), each new URL checked the same
    way; proxies from the environment are not used.

Refusals raise `InstallRefused` (a DriverError; admission turns it into BADARGS naming the
URL).
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterable, Sequence

from drivers.base import DriverError

MAX_REDIRECTS = 5
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SHARED = ipaddress.ip_network("100.64.0.0/10")     # carrier-grade NAT: not public either


class InstallRefused(DriverError):
    """The install URL may not be fetched here (the message names the URL)."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`install_allow_networks` entries as networks; ValueError names a bad one."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP network (e.g. 127.0.0.0/8)") from None
    return tuple(out)


def host_addresses() -> set[Address]:
    """Every address on this host's interfaces (this network namespace), IPv4 and IPv6."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DriverError(f"cannot list this host's addresses: {exc}", transient=True) from None
    found: set[Address] = set()
    for item in json.loads(out or "[]"):
        for a in item.get("addr_info", ()):
            try:
                found.add(ipaddress.ip_address(a["local"].split("%")[0]))
            except (KeyError, ValueError):
                pass
    return found


def why_internal(addr: Address, own: set[Address]) -> str | None:
    """Why `addr` is not a public address this AM may fetch from, or None."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for test, what in ((addr.is_loopback, "loopback"), (addr.is_unspecified, "unspecified"),
                       (addr.is_link_local, "link-local"),
                       (addr.is_private, "private"), (addr in SHARED if addr.version == 4
                                                      else False, "shared (100.64.0.0/10)"),
                       (addr.is_multicast, "multicast"), (addr.is_reserved, "reserved")):
        if test:
            return what
    if addr in own:
        return "an address of the AM's own host"
    return None


def resolve(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to (once), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InstallRefused(f"host {host!r} does not resolve: {exc}") from None
    out: list[Address] = []
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if addr not in out:
            out.append(addr)
    return out


def checked_address(url: str, allow: Sequence[Network], *,
                    own: set[Address] | None = None) -> tuple[urllib.parse.SplitResult, Address]:
    """The URL (parsed) and the one address to connect to; InstallRefused naming the URL when
    any address its host resolves to is internal and not in `allow`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InstallRefused(f"install URL {url!r}: only http and https are fetched")
    if not parts.hostname:
        raise InstallRefused(f"install URL {url!r} names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InstallRefused(f"install URL {url!r} has a bad port") from None
    addresses = resolve(parts.hostname, port)
    own = host_addresses() if own is None else own
    for addr in addresses:
        reason = why_internal(addr, own)
        if reason and not any(addr in net for net in allow if net.version == addr.version):
            raise InstallRefused(
                f"install URL {url!r}: its host {parts.hostname} is {addr}, {reason}; the AM "
                "does not fetch from internal addresses (an operator may allow networks with "
                "install_allow_networks)")
    if not addresses:
        raise InstallRefused(f"install URL {url!r}: host {parts.hostname} has no address")
    return parts, addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with the URL's host name for SNI and the certificate."""

    def __init__(self, address: str, host: str, port: int, *, timeout: float,
                 context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(url: str, out, *, allow: Sequence[Network], max_bytes: int, timeout_s: float,
          chunk: int = 1 << 16, context: ssl.SSLContext | None = None) -> None:
    """Write the body of `url` to `out` (at most `max_bytes`, within `timeout_s`), connecting
    only to checked addresses."""
    deadline = time.monotonic() + timeout_s
    own = host_addresses()
    for _ in range(MAX_REDIRECTS + 1):
        parts, addr = checked_address(url, allow, own=own)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        left = max(deadline - time.monotonic(), 0.1)
        timeout = min(left, 30)
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = _PinnedHTTPS(
                str(addr), parts.hostname, port, timeout=timeout,
                context=context or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(str(addr), port, timeout=timeout)
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        host_header = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            host_header += f":{parts.port}"
        try:
            conn.request("GET", path, headers={"Host": host_header,
                                               "User-Agent": "geni-am-install"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise DriverError(f"install {url}: redirect without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if resp.status != 200:
                raise DriverError(f"install {url}: HTTP {resp.status} {resp.reason}")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise DriverError(f"install {url}: {int(length)} bytes is more than the "
                                  f"{max_bytes // 2**20} MiB allowed")
            total = 0
            while data := resp.read(chunk):
                total += len(data)
                if total > max_bytes:
                    raise DriverError(f"install {url}: more than the {max_bytes // 2**20} MiB "
                                      "allowed")
                if time.monotonic() > deadline:
                    raise DriverError(f"install {url}: took longer than allowed")
                out.write(data)
            return
        except DriverError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise DriverError(f"install {url}: {exc}", transient=True) from None
        finally:
            conn.close()
    raise DriverError(f"install {url}: more than {MAX_REDIRECTS} redirects")


__all__ = ["InstallRefused", "MAX_REDIRECTS", "checked_address", "fetch", "host_addresses",
           "parse_networks", "resolve", "why_internal"]
