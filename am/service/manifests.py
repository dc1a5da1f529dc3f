"""Stored slivers -> manifest RSpec entries (the AM facts the manifest builder annotates)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from am.store import Sliver, spec_from_dict
from drivers.base import ResourceKind, UserKeys
from rspec.manifest import (
    InterfaceFacts,
    ManifestLink,
    ManifestNode,
    ManifestOpenFlow,
    ManifestUser,
    SliverState,
    build_manifest,
)
from rspec.model import Login
from rspec.stitching import ManifestPath


def manifest_for(slivers: Iterable[Sliver], *, am_urn: str, users: Sequence[UserKeys] = (),
                 foreign_xml: Iterable[str] = (), expires: datetime | None = None) -> str:
    """The manifest of `slivers`. `users` (the slice's geni_users) are listed on provisioned
    nodes, with the login each has there."""
    nodes: list[ManifestNode] = []
    links: list[ManifestLink] = []
    flows: list[ManifestOpenFlow] = []
    paths: list[ManifestPath] = []
    for row in slivers:
        spec = spec_from_dict(row.spec)
        facts = row.facts or {}
        state = SliverState(allocation=row.allocation_state, operational=row.operational_state,
                            error=row.error or None,
                            resource_status=row.resource_status or None)
        macs = facts.get("macs", {})
        if spec.kind is ResourceKind.NODE:
            provisioned = row.allocation_state == "geni_provisioned"
            nodes.append(ManifestNode(
                client_id=row.client_id, sliver_id=row.urn, component_manager_id=am_urn,
                component_id=row.component_id, element_xml=row.element_xml or None,
                interfaces=tuple(InterfaceFacts(client_id=i.client_id, component_id=i.port,
                                                mac=macs.get(i.client_id) or i.mac)
                                 for i in spec.interfaces),
                logins=tuple(Login(authentication="ssh-keys", hostname=l.get("hostname"),
                                   port=l.get("port"), username=l.get("username"))
                             for l in facts.get("logins", ())) if provisioned else (),
                users=tuple(ManifestUser(login=u.login, user_urn=u.urn, public_keys=u.keys)
                            for u in users) if provisioned else (),
                sliver_type=spec.sliver_type, disk_image=spec.disk_image, state=state))
        elif spec.kind is ResourceKind.LINK:
            if spec.link is not None and (spec.link.mode == "tunnel" or
                                          spec.params.get("switch")) and \
                    any(link.client_id == row.client_id for link in links):
                continue       # another part of a cross-host or switch link: shown once
            if spec.link is not None and spec.link.mode == "wire" and \
                    spec.params.get("stitched"):
                continue       # a stitched link's host half: its switch half stands for it
            if spec.link is not None and spec.link.vlan_tag is not None \
                    and spec.params.get("path_xml"):   # stitched: its path, with the tag chosen
                paths.append(ManifestPath(spec.params["path_xml"],
                                          tuple(h[1] for h in spec.params.get("hops", ())),
                                          spec.link.vlan_tag))
            links.append(ManifestLink(
                client_id=row.client_id, sliver_id=row.urn,
                vlantag=spec.link.vlan_tag if spec.link else None,
                component_manager_id=am_urn, element_xml=row.element_xml or None, state=state))
        else:
            flows.append(ManifestOpenFlow(sliver_id=row.urn, request=spec.openflow,
                                          element_xml=row.element_xml or None, state=state))
    return build_manifest(nodes, links, openflow=flows, foreign_xml=foreign_xml, expires=expires,
                          stitching=paths)
