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
    user_urn = dev_user_urn(settings)
    updated = settings.replace(cert=settings.cert or str(files.am_cert),
                               key=settings.key or str(files.am_key),
                               trust_roots=settings.trust_roots or str(files.trust_roots),
                               # the development user may open this AM's dashboard
                               dashboard_users=tuple(dict.fromkeys(
                                   (*settings.dashboard_users, user_urn))))
    return updated, files


def dev_user_urn(settings: Settings) -> str:
    return f"urn:publicid:IDN+{settings.authority.split(':', 1)[0]}+user+{DEV_USER}"


def browser_bundle(files: DevFiles) -> Path:
    """The development user's certificate and key as PKCS#12 (password = the user's name), to
    import into a browser: the AM asks every TLS client for a certificate, the dashboard too."""
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        load_pem_private_key,
        pkcs12,
    )
    from cryptography.x509 import load_pem_x509_certificates

    target = files.authority_dir / f"{DEV_USER}.p12"
    if not target.exists():
        certs = load_pem_x509_certificates(files.user_cert.read_bytes())
        key = load_pem_private_key(files.user_key.read_bytes(), password=None)
        data = pkcs12.serialize_key_and_certificates(
            DEV_USER.encode(), key, certs[0], certs[1:] or None,
            BestAvailableEncryption(DEV_USER.encode()))
        write_private(target, data)
    return target


def dashboard_lines(settings: Settings, files: DevFiles) -> list[str]:
    url = settings.effective_public_url.rstrip("/") + "/dashboard/"
    ca = files.trust_roots / "ca-cert.pem"
    return [f"  dashboard:       {url}",
            f"    log in with {DEV_USER}'s certificate: import {browser_bundle(files)} into the "
            f"browser (password {DEV_USER!r}) and trust {ca},",
            f"    or: curl --cacert {ca} --cert {files.user_cert} --key {files.user_key} {url}"]


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
    """geni-lib code building a context for the development user (`context`)."""
    return f"""from geni.aggregate.context import Context
from geni.aggregate.frameworks import Framework
from geni.aggregate.user import User

framework = Framework("geni-am")
framework.cert = "{files.user_cert}"
framework.key = "{files.user_key}"
user = User()
user.name = "{DEV_USER}"
user.urn = "{dev_user_urn(settings)}"
context = Context()
context.cf = framework
context.uname = "{DEV_USER}"
context.datadir = "{genilib_dir(files)}"
context.addUser(user)
"""


#: geni-lib 0.9.9.4 imports pkg_resources, which setuptools >= 81 no longer ships.
GENILIB_SHIM = """import sys, types, warnings
from importlib import metadata
try:
    import pkg_resources  # noqa: F401
except ImportError:   # geni-lib 0.9.9.4 needs it; setuptools >= 81 no longer ships it
    sys.modules["pkg_resources"] = types.SimpleNamespace(require=lambda name: [
        types.SimpleNamespace(project_name=name, version=metadata.version(name))])
warnings.simplefilter("ignore")   # geni-lib's deprecation and TLS warnings
"""


def genilib_script(settings: Settings, files: DevFiles) -> str:
    """A geni-lib script that runs as printed: the context, then GetVersion and ListResources
    at this AM. geni-lib's AM API v3 wrapper has no ListResources (only Allocate, Provision,
    Delete, POA), so the script reads the advertisement through AM API v2 (`/am/2`), which
    serves the same site; the "opengeni" type parses GENI v3 advertisements."""
    v2 = settings.effective_public_url.rstrip("/") + "/am/2"
    return (GENILIB_SHIM + genilib_context(settings, files) + f"""
from geni.aggregate.core import AM
am = AM("geni-am", "{v2}", "amapiv2", "opengeni")
print("AM API versions:", am.getversion(context)["geni_api_versions"])
advertisement = am.listresources(context)
for node in advertisement.nodes:
    print("node", node.name, node.component_id)
""")


def write_genilib_script(settings: Settings, files: DevFiles) -> Path:
    """The script, also as a file beside the geni-lib credential (`python <path>`)."""
    return write_private(genilib_dir(files) / "listresources.py",
                         genilib_script(settings, files).encode())


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
    if files is None:
        lines.append(f"  dashboard:       {settings.effective_public_url.rstrip('/')}/dashboard/ "
                     "(operators' and dashboard_users' certificates"
                     + (", or the dashboard token)" if settings.dashboard_token else ")"))
    if files is not None:
        lines += [
            f"  development authority {'created' if files.created else 'reused'} in "
            f"{files.authority_dir}",
            f"  user certificate: {files.user_cert}",
            f"  user key:         {files.user_key}",
            f"  user credential:  {files.user_credential}",
            *dashboard_lines(settings, files),
            "", "--- omni_config ---", omni_config(settings, files),
            "--- geni-lib context ---",
            f"# python {write_genilib_script(settings, files)} runs the same script",
            genilib_script(settings, files), "--- end ---"]
    return "\n".join(lines)
