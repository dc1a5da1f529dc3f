"""A Python 3 client for GENI AM API v3 (`AMClient`) and the `geni-am client` command."""
from am.client.config import ClientProfile, load_omni_config
from am.client.core import AMClient, Backoff
from am.client.credentials import load_credential, load_credentials
from am.client.errors import (
    AMBusy,
    AMError,
    ClientConfigError,
    ClientError,
    ClientTLSError,
    ClientTransportError,
)
from am.client.wait import NeedsStart, NotProvisioned, Progress, WaitResult, wait_for_slivers

__all__ = ["AMBusy", "AMClient", "AMError", "Backoff", "ClientConfigError", "ClientError",
           "ClientProfile", "ClientTLSError", "ClientTransportError", "NeedsStart", "NotProvisioned",
           "Progress", "WaitResult", "load_credential", "load_credentials", "load_omni_config",
           "wait_for_slivers"]
