"""Client settings from flags and an omni-style config file (the subset `geni-am serve` prints).

    [omni]
    default_cf = portal            # the section with cert and key
    users = alice                  # user sections; the first one's urn/keys are used
    aggregates = https://localhost:5001/     # default AM (URL or nickname), comma-separated

    [portal]
    type = chapi                   # ignored: this client talks to the AM only
    cert = ~/.gcf/alice-cert.pem
    key = ~/.gcf/alice-key.pem
    # geni-am client extensions (omni ignores them):
    ca = ~/.gcf/ca-cert.pem        # CA that signed the AM's certificate
    credentials = ~/.gcf/alice-cred.xml, ~/.gcf/myslice-cred.xml
    slice_authority = geni-am

    [alice]
    urn = urn:publicid:IDN+geni-am+user+alice
    keys = ~/.ssh/id_rsa.pub       # public keys sent with provision (geni_users)

    [aggregate_nicknames]
    local = urn:publicid:IDN+geni-am:localhost+authority+am,https://localhost:5001/

Paths expand `~` and environment variables, as omni does.
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from am.client.errors import ClientConfigError

DEFAULT_OMNI_CONFIG = "~/.gcf/omni_config"


@dataclass(frozen=True)
class ClientProfile:
    url: str = ""
    cert: str = ""
    key: str = ""
    ca: str = ""
    credentials: tuple[str, ...] = ()
    slice_authority: str = ""
    user_urn: str = ""
    ssh_key_files: tuple[str, ...] = ()
    nicknames: dict[str, str] = field(default_factory=dict)   # nickname -> URL

    def resolve_url(self, url_or_nickname: str) -> str:
        if url_or_nickname in self.nicknames:
            return self.nicknames[url_or_nickname]
        return url_or_nickname

    def merged(self, **flags: object) -> "ClientProfile":
        """Flags (non-empty values) override the file."""
        changes = {k: v for k, v in flags.items() if v not in (None, "", (), [])}
        if "credentials" in changes:
            changes["credentials"] = tuple(changes["credentials"])   # type: ignore[arg-type]
        profile = replace(self, **changes)   # type: ignore[arg-type]
        return replace(profile, url=profile.resolve_url(profile.url))


def _path(value: str) -> str:
    return os.path.expanduser(os.path.expandvars(value.strip()))


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]


def load_omni_config(path: str | os.PathLike[str]) -> ClientProfile:
    """Read the supported subset of an omni_config (see module docstring)."""
    file = Path(_path(os.fspath(path)))
    parser = configparser.RawConfigParser()
    try:
        with file.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise ClientConfigError(f"omni config {file} does not exist (--omni-config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"cannot read omni config {file}: {exc}") from None
    except configparser.Error as exc:
        raise ClientConfigError(f"omni config {file} is not an INI file: {exc}") from None
    if not parser.has_section("omni"):
        raise ClientConfigError(f"omni config {file} has no [omni] section")
    omni = parser["omni"]
    cf_name = omni.get("default_cf", "").strip()
    if not cf_name:
        raise ClientConfigError(f"omni config {file}: [omni] has no default_cf")
    if not parser.has_section(cf_name):
        raise ClientConfigError(f"omni config {file}: default_cf = {cf_name} but there is no "
                                f"[{cf_name}] section")
    cf = parser[cf_name]
    for needed in ("cert", "key"):
        if not cf.get(needed, "").strip():
            raise ClientConfigError(f"omni config {file}: [{cf_name}] has no {needed}")
    nicknames: dict[str, str] = {}
    if parser.has_section("aggregate_nicknames"):
        for nick, value in parser["aggregate_nicknames"].items():
            parts = _list(value)
            if len(parts) != 2:
                raise ClientConfigError(f"omni config {file}: [aggregate_nicknames] {nick} must "
                                        "be 'URN,URL'")
            nicknames[nick] = parts[1]
    aggregates = _list(omni.get("aggregates", ""))
    url = aggregates[0] if aggregates else ""
    user_urn, key_files = "", []
    users = _list(omni.get("users", ""))
    if users:
        if not parser.has_section(users[0]):
            raise ClientConfigError(f"omni config {file}: users = {users[0]} but there is no "
                                    f"[{users[0]}] section")
        user = parser[users[0]]
        user_urn = user.get("urn", "").strip()
        key_files = [_path(k) for k in _list(user.get("keys", ""))]
    return ClientProfile(
        url=nicknames.get(url, url), cert=_path(cf["cert"]), key=_path(cf["key"]),
        ca=_path(cf.get("ca", "")) if cf.get("ca", "").strip() else "",
        credentials=tuple(_path(c) for c in _list(cf.get("credentials", ""))),
        slice_authority=cf.get("slice_authority", "").strip(),
        user_urn=user_urn, ssh_key_files=tuple(key_files), nicknames=nicknames)


def read_ssh_keys(files: tuple[str, ...]) -> list[str]:
    keys = []
    for name in files:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ClientConfigError(f"SSH public key file {path} does not exist "
                                    "(--ssh-key, or keys = in the omni config)") from None
        except OSError as exc:
            raise ClientConfigError(f"cannot read SSH public key {path}: {exc.strerror}") from None
        if "PRIVATE KEY" in text:
            raise ClientConfigError(f"{path} is a private key: give the .pub file")
        keys.extend(line for line in text.splitlines() if line.strip())
    return keys
