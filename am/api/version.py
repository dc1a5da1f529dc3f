"""GetVersion contents (§5.1 of the AM API v3 digest; §10 for v2).

Built once per application: nothing in it changes while the AM runs.
"""
from __future__ import annotations

from typing import Any

from am.api.args import SUPPORTED_RSPEC
from am.config import Settings
from rspec import namespaces as ns

AM_TYPE = "geni-am"


def _am_code() -> str:
    try:
        from importlib.metadata import version
        return version("geni-am")
    except Exception:   # noqa: BLE001 - not installed as a distribution (source checkout)
        return "0.0.0"


def api_urls(settings: Settings) -> dict[str, str]:
    """`geni_api_versions`: keys are strings; v3 at the root URL, v2 under /am/2."""
    base = settings.effective_public_url
    if not base.endswith("/"):
        base += "/"
    return {"3": base, "2": base + "am/2"}


def rspec_versions(kind: str) -> list[dict[str, Any]]:
    """`kind` is "request" or "ad": one struct per supported version."""
    schema = ns.REQUEST_XSD_URL if kind == "request" else ns.AD_XSD_URL
    return [{"type": v.type, "version": v.version, "schema": schema,
             "namespace": ns.RSPEC3, "extensions": list(ns.UNDERSTOOD_EXTENSIONS)}
            for v in SUPPORTED_RSPEC]


CREDENTIAL_TYPES = [
    {"geni_type": "geni_sfa", "geni_version": "3"},
    {"geni_type": "geni_sfa", "geni_version": "2"},
    {"geni_type": "geni_abac", "geni_version": "1"},
]


def version_v3(settings: Settings, stitching: dict[str, Any] | None = None,
               actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`stitching`: what the AM's edge ports offer (`Aggregate.stitching_version`), when it has
    any: GetVersion then says the AM stitches (`geniam_stitching`). `actions`: the operational
    actions PerformOperationalAction takes here, with their options
    (`Aggregate.operational_actions`), listed as `geniam_operational_actions`."""
    extra: dict[str, Any] = {"geniam_stitching": stitching} if stitching else {}
    if actions:
        extra["geniam_operational_actions"] = [dict(a) for a in actions]
    return {
        "geni_api": 3,
        "geni_api_versions": api_urls(settings),
        "geni_request_rspec_versions": rspec_versions("request"),
        "geni_ad_rspec_versions": rspec_versions("ad"),
        "geni_credential_types": [dict(c) for c in CREDENTIAL_TYPES],
        "geni_single_allocation": 0,
        "geni_allocate": "geni_many",
        "geni_update": True,              # the optional Update method (AM API v4) is served
        "geni_am_type": AM_TYPE,
        "geni_am_code": _am_code(),
        "geni_handles_speaksfor": True,
        **extra,
    }


def version_v2(settings: Settings) -> dict[str, Any]:
    return {
        "geni_api": 2,
        "geni_api_versions": api_urls(settings),
        "geni_request_rspec_versions": rspec_versions("request"),
        "geni_ad_rspec_versions": rspec_versions("ad"),
        "geni_credential_types": [dict(c) for c in CREDENTIAL_TYPES],
        "geni_am_type": AM_TYPE,
        "geni_am_code": _am_code(),
        "geni_handles_speaksfor": True,
    }
