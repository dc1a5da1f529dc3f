"""Every XML namespace the rspec library reads or writes, in one place."""
from __future__ import annotations

RSPEC3 = "http://www.geni.net/resources/rspec/3"
PROTOGENI2 = "http://www.protogeni.net/resources/rspec/2"   # same schema, older namespace
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OPENFLOW3 = "http://www.geni.net/resources/rspec/ext/openflow/3"
OPENFLOW4 = "http://www.geni.net/resources/rspec/ext/openflow/4"
OPSTATE = "http://www.geni.net/resources/rspec/ext/opstate/1"
USER = "http://www.geni.net/resources/rspec/ext/user/1"
SHARED_VLAN = "http://www.geni.net/resources/rspec/ext/shared-vlan/1"
SHARED_VLAN_PG = "http://www.protogeni.net/resources/rspec/ext/shared-vlan/1"
EMULAB = "http://www.protogeni.net/resources/rspec/ext/emulab/1"
STITCH2 = "http://www.geni.net/resources/rspec/ext/stitch/2/"
STITCH01 = "http://hpn.east.isi.edu/rspec/ext/stitch/0.1/"   # read in requests too
GENIAM = "http://geni-am.org/resources/rspec/ext/geniam/1"

SCHEMA_BASE = "http://www.geni.net/resources/rspec/3"
REQUEST_XSD_URL = f"{SCHEMA_BASE}/request.xsd"
AD_XSD_URL = f"{SCHEMA_BASE}/ad.xsd"
MANIFEST_XSD_URL = f"{SCHEMA_BASE}/manifest.xsd"
OPSTATE_XSD_URL = "http://www.geni.net/resources/rspec/ext/opstate/1/ad.xsd"
USER_XSD_URL = "http://www.geni.net/resources/rspec/ext/user/1/manifest.xsd"
OPENFLOW_AD_XSD_URL = "http://www.geni.net/resources/rspec/ext/openflow/3/of-ad.xsd"
GENIAM_XSD_URL = "http://geni-am.org/resources/rspec/ext/geniam/1/geniam.xsd"

# Prefixes used when we write documents.
PREFIXES: dict[str, str] = {
    "xsi": XSI,
    "openflow": OPENFLOW3,
    "opstate": OPSTATE,
    "ssh-user": USER,
    "sharedvlan": SHARED_VLAN,
    "geniam": GENIAM,
}

# Extension namespaces this AM understands (for GetVersion).
UNDERSTOOD_EXTENSIONS: tuple[str, ...] = (OPENFLOW3, OPSTATE, USER, SHARED_VLAN, EMULAB, GENIAM,
                                           STITCH2)


def q(ns: str, local: str) -> str:
    """Clark notation `{ns}local`, as lxml names elements."""
    return f"{{{ns}}}{local}"
