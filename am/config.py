"""Settings: one immutable object, built once from defaults < TOML file < environment < flags.

No module-level mutable configuration: whoever needs settings is handed a `Settings`.
Every key is documented in docs/configuration.md; the environment variable for key `foo_bar`
is `GENI_AM_FOO_BAR`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class Settings:
    # network
    host: str = "127.0.0.1"
    port: int = 5001
    public_url: str = ""                      # advertised in geni_api_versions; derived if empty
    # identity and trust
    authority: str = "geni-am:localhost"      # URN authority of this AM: urn:publicid:IDN+<authority>+authority+am
    cert: str = ""                            # AM certificate (PEM); dev authority makes one if empty
    key: str = ""
    trust_roots: str = ""                     # directory of PEM trust roots
    crl_dir: str = ""                         # directory of CRLs (*.crl, PEM/DER); empty = trust_roots
    crl_refresh_s: float = 60.0               # re-read changed CRL files at most this often; 0 = never
    trusted_proxies: tuple[str, ...] = ()     # addresses allowed to forward a client certificate header
    proxy_mode: bool = False                  # serve plain HTTP behind a TLS-terminating proxy (nginx)
    operators: tuple[str, ...] = ()           # user URNs allowed to call Shutdown with any credential
    # operator dashboard (am/web; docs/dashboard.md)
    dashboard_users: tuple[str, ...] = ()     # user URNs (besides operators) whose certificate opens the dashboard
    dashboard_token: str = dataclasses.field(default="", repr=False)   # dashboard login token; empty = off
    dashboard_login_attempts: int = 10        # failed token attempts per client address per window
    dashboard_login_global_attempts: int = 100   # failed token attempts from all clients per window
    dashboard_login_window_s: float = 300.0   # the sliding window of those two limits
    # state
    state_dir: str = ""                       # where the SQLite file, dev authority and job files live
    database_url: str = ""                    # empty = sqlite:///<state_dir>/geni-am.sqlite
    broker_url: str = ""                      # empty = embedded, server-free broker and worker
    inventory: str = ""                       # site inventory (TOML); empty = built-in fake inventory
    fake_nodes: int = 0                       # > 0: serve over that many fake nodes
    # policy
    allocation_ttl_s: int = 600               # how long an unprovisioned allocation lives
    max_lease_s: int = 7 * 24 * 3600          # longest sliver lifetime from now
    max_request_bytes: int = 4 * 1024 * 1024  # XML-RPC bodies above this are refused unparsed
    tls_handshake_timeout_s: float = 5.0      # direct TLS: a handshake not done by then is dropped
    max_connections_per_client: int = 128     # direct TLS: open connections per client address
    client_idle_timeout_s: float = 10.0       # socket timeout: idle kept-alive or stalled connection
    reaper_interval_s: float = 30.0
    start_on_provision: bool = True           # a provisioned sliver boots to geni_ready without geni_start
    route_sync_interval_s: float = 60.0       # periodic re-sync of hybrid routers' forwarding planes; 0 = off
    # workers
    worker_concurrency: int = 2
    host_heartbeat_s: float = 5.0             # a site of many hosts: each host's worker beats this often
    host_down_after_s: float = 20.0           # a host silent this long is down (docs/hosts.md)

    # ---- derived -------------------------------------------------------------------------
    @property
    def am_urn(self) -> str:
        return f"urn:publicid:IDN+{self.authority}+authority+am"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir or default_state_dir()).expanduser()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_path / 'geni-am.sqlite'}"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"https://{self.host}:{self.port}/"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def default_state_dir() -> str:
    return os.environ.get("GENI_AM_STATE_DIR") or str(Path.home() / ".local/state/geni-am")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


#: Numeric settings for which 0 is meaningless (0 is allowed elsewhere: port 0 = any free port,
#: an interval of 0 = off).
_POSITIVE = frozenset({"allocation_ttl_s", "max_lease_s", "max_request_bytes",
                       "tls_handshake_timeout_s", "max_connections_per_client",
                       "client_idle_timeout_s",
                       "reaper_interval_s", "worker_concurrency", "dashboard_login_attempts",
                       "host_heartbeat_s", "host_down_after_s",
                       "dashboard_login_global_attempts", "dashboard_login_window_s"})


def _coerce(name: str, value: Any) -> Any:
    """Convert a file/env/flag value to the field's type, or raise ConfigError naming the key."""
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            if isinstance(value, bool):
                return value
            raise ValueError(value)
        if isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(value)
            number = type(default)(value)
            if number != number or number < 0 or (name in _POSITIVE and number == 0):
                raise ValueError(value)     # NaN, negative, or zero where zero makes no sense
            if math.isinf(number) or (
                    isinstance(number, int) and isinstance(value, float) and value != number):
                raise ValueError(value)     # infinite, or a fraction given for a whole number
                                            # (a TOML `10.5` is refused, not cut to 10)
            return number
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            return tuple(str(v) for v in value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError, OverflowError):     # OverflowError: int(inf)
        raise ConfigError(f"setting {name!r}: cannot use {value!r}") from None


def load_settings(config_file: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings: defaults, then the TOML file (its top level or an `[am]` table), then
    `GENI_AM_*` environment variables, then explicit overrides (command-line flags; None values
    are ignored)."""
    values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        except OSError as exc:   # a directory, unreadable, ...: a clear error, not a traceback
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        table = data.get("am", data)
        for key, value in table.items():
            if isinstance(value, dict):
                continue   # other tables (e.g. [logging]) belong to others
            if key not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, value)
    env = os.environ if env is None else env
    for key in _FIELDS:
        var = f"GENI_AM_{key.upper()}"
        if var in env:
            values[key] = _coerce(key, env[var])
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, value)
    return Settings(**values)


__all__ = ["ConfigError", "Settings", "load_settings", "default_state_dir"]
