"""First run with no configuration: a development authority, the AM's TLS certificate, and
ready-to-use client settings (omni_config, geni-lib context), all under `<state_dir>/authority`.

A second run finds the files and reuses them. Only what is missing from the settings is filled
in: an operator who configured cert/key/trust_roots gets no authority at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from am.config import Settings
from am.fileperms import private_dir, write_private

DEV_USER = "alice"


@dataclass(frozen=True)
class DevFiles:
    authority_dir: Path
    trust_roots: Path
    am_cert: Path
    am_key: Path
    user_cert: Path
    user_key: Path
    user_credential: Path
    created: bool


def needs_dev_authority(settings: Settings) -> bool:
    return not (settings.cert and settings.key and settings.trust_roots)


def ensure_dev_authority(settings: Settings) -> tuple[Settings, DevFiles]:
    """Create (or reuse) the development authority and return settings pointing at it."""
    from credentials.authority import DevAuthority

    directory = settings.state_path / "authority"
    created = not (directory / "ca-key.pem").exists()
    if created:
        top = settings.authority.split(":", 1)[0]
        authority = DevAuthority.init(directory, authority=top)
    else:
        authority = DevAuthority(directory)
    if not (directory / f"{DEV_USER}-cert.pem").exists():
        authority.user(DEV_USER)
    if not (directory / "am-cert.pem").exists():
        hosts = ["localhost", "127.0.0.1"]
        if settings.host not in hosts and settings.host not in ("0.0.0.0", "::", ""):
            hosts.append(settings.host)
        authority.server_cert(settings.authority, hosts)
    files = DevFiles(
        authority_dir=directory,
        trust_roots=directory / "trust-roots",
        am_cert=directory / "am-cert.pem", am_key=directory / "am-key.pem",
        user_cert=directory / f"{DEV_USER}-cert.pem", user_key=directory / f"{DEV_USER}-key.pem",
        user_credential=directory / f"{DEV_USER}-cred.xml", created=created)
    updated = settings.replace(cert=settings.cert or str(files.am_cert),
                               key=settings.key or str(files.am_key),
                               trust_roots=settings.trust_roots or str(files.trust_roots))
    return updated, files


def omni_config(settings: Settings, files: DevFiles) -> str:
    """An omni_config for the development user against this AM."""
    return f"""[omni]
default_cf = portal
users = {DEV_USER}
aggregates = {settings.effective_public_url}

[portal]
type = chapi
# The development authority has no clearinghouse: use the files below directly, e.g.
#   omni -V 3 --usercredfile {files.user_credential} -a {settings.effective_public_url} listresources
cert = {files.user_cert}
key = {files.user_key}

[{DEV_USER}]
urn = urn:publicid:IDN+{settings.authority.split(':', 1)[0]}+user+{DEV_USER}
keys = ~/.ssh/id_rsa.pub
"""


def genilib_dir(files: DevFiles) -> Path:
    """geni-lib reads the user credential from `<datadir>/<framework>-<user>-usercred.xml`."""
    directory = files.authority_dir / "geni-lib"
    target = directory / f"geni-am-{DEV_USER}-usercred.xml"
    if not target.exists():
        private_dir(directory)
        write_private(target, files.user_credential.read_bytes())
    return directory


def genilib_context(settings: Settings, files: DevFiles) -> str:
    """A geni-lib snippet building a context for the development user and this AM."""
    return f"""from geni.aggregate.context import Context
from geni.aggregate.core import AM
from geni.aggregate.frameworks import Framework
from geni.aggregate.user import User

framework = Framework("geni-am")
framework.cert = "{files.user_cert}"
framework.key = "{files.user_key}"
user = User()
user.name = "{DEV_USER}"
user.urn = "urn:publicid:IDN+{settings.authority.split(':', 1)[0]}+user+{DEV_USER}"
context = Context()
context.cf = framework
context.uname = "{DEV_USER}"
context.datadir = "{genilib_dir(files)}"
context.addUser(user)
am = AM("geni-am", "{settings.effective_public_url}", "amapiv3", "geni-am")
# e.g. am.listresources(context)
"""


def site_lines(settings: Settings, running=None) -> list[str]:
    """The banner's account of what this AM serves: each component, its driver, and whether
    it is real or emulated (`running`: an `am.site.RunningSite` for the default site)."""
    if running is not None:
        lines = [f"  site: the default site on this host (inventory {running.inventory}; "
                 "stopped with serve)"]
        width = max((len(c.name) for c in running.components), default=4)
        lines += [f"    {c.name:<{width}}  {c.driver:<9} {c.kind:<9} {c.detail}"
                  for c in running.components]
        return lines
    if settings.inventory:
        extra = f" plus {settings.fake_nodes} fake nodes" if settings.fake_nodes else ""
        return [f"  site: inventory {settings.inventory}{extra}"]
    from drivers.registry import DEFAULT_FAKE_NODES
    return [f"  site: {settings.fake_nodes or DEFAULT_FAKE_NODES} fake nodes (mocked drivers: "
            "nothing runs; drop --fake for the real site)"]


def banner(settings: Settings, files: DevFiles | None, running=None) -> str:
    """What `geni-am serve` prints when it starts."""
    lines = [f"geni-am serving AM API v3 at {settings.effective_public_url} "
             f"(v2 at {settings.effective_public_url.rstrip('/')}/am/2)",
             *site_lines(settings, running),
             f"  trust roots:     {settings.trust_roots}",
             f"  AM certificate:  {settings.cert}",
             f"  database:        {settings.effective_database_url}"]
    if files is not None:
        lines += [
            f"  development authority {'created' if files.created else 'reused'} in "
            f"{files.authority_dir}",
            f"  user certificate: {files.user_cert}",
            f"  user key:         {files.user_key}",
            f"  user credential:  {files.user_credential}",
            "", "--- omni_config ---", omni_config(settings, files),
            "--- geni-lib context ---", genilib_context(settings, files)]
    return "\n".join(lines)
