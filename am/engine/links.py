"""Turning request links into concrete connections once their end nodes are placed.

All ends on one host: a veth pair (two ends) or a bridge (more), realised by the host's driver.
Two ends, one of them on a component whose ports are plain host interfaces (an emulated
NetFPGA card: `extra["wires"]`): a *wire* link, realised by the other end's host driver taking
that interface into its sliver (`Capabilities.wires`), as a cable plugged into the card. A card
interface on a VLAN (the link's `vlan_tag` hint) takes the port's breakout wire for that VLAN
(`extra["vlan_wires"]`: the tag popped and pushed by the card, as an access switch port).
Two ends on two components of this machine, one a VM host whose interfaces are taps on a host
bridge (`Capabilities.bridge_ports`), the other a host whose driver can join such a bridge
(`joins_bridges`, containers): a *join* link, realised by the joining driver plugging its
node's end into the VM's bridge.
Ends on two or more hosts of the site (`[hosts]`, each with an address, one component per
host), every driver able to tunnel (`Capabilities.tunnels`): a *tunnel* link, one link sliver
("half") per host, on that host's component, so each is built by its own host's worker: a
bridge with that host's ends and a VXLAN device from this host's address to the others' (one
remote for two hosts; a full mesh for a LAN over three or more). The store gives all halves
one VNI at Allocate (am.store.tunnels); the manifest shows them as one link.
A link that names an OpenFlow switch (`<geniam:link switch="..."/>`): a *switch* link, carried
through that switch. Each end's NIC becomes a port of the switch: one link sliver on the switch
(mode "switch": a veth pair per attachment, its switch end a port of the physical bridge, flows
between the link's ports) and per end host a *wire* link sliver taking the attachment's host
end (a VM host: one attachment, joined to its link bridge beside the VM taps; a container host:
one per container interface, taken into the container as the interface).
Ends on several hosts otherwise: a VLAN through a switch every end host is wired to (site links), with a
tag free on that switch and the link's capacity admitted against each wired switch port
(`kbps:<port>` capacity). Only single-switch paths are planned: hosts that share no switch get
a refusal naming them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from am.engine.ledger import Ledger
from am.engine.nodes import NodeRecord
from am.engine.plan import Refusal
from drivers.base import (
    Admission,
    Component,
    IsolationClass,
    LinkEnd,
    LinkSpec,
    PortRef,
    ResourceKind,
    SliverSpec,
)
from drivers.registry import Site
from rspec.model import RequestLink

PLAIN_LINK_TYPES = {None, "", "lan", "vlan", "l2", "link"}
TUNNEL_MODE = "tunnel"
DEFAULT_VLAN_RANGE = (1, 4094)


@dataclass
class LinkRecord:
    link: RequestLink
    component: Component
    driver: str
    spec: SliverSpec           # sliver URNs not yet minted; ends filled at assembly
    demand: dict[str, float]
    claims: tuple[str, ...]
    ends: list[tuple[str, str]]   # (node client_id, interface client_id)


def is_switch(comp: Component) -> bool:
    return bool(comp.extra.get("switch")) or comp.isolation is IsolationClass.FLOWSPACE \
        or comp.dpid is not None


class LinkPlacer:
    def __init__(self, site: Site, ledger: Ledger, slice_urn: str,
                 shared_lans: Mapping[str, Any] | None = None,
                 planes: Mapping[str, NodeRecord] | None = None):
        self.site = site
        self.planes = planes or {}     # hybrid router client_id -> its forwarding plane
        self.ledger = ledger
        self.slice_urn = slice_urn
        self.shared_lans = shared_lans or {}
        self._order = {c.component_id: i for i, c in enumerate(site.components)}

    def place(self, link: RequestLink, ends: list[tuple[str, str]],
              records: Mapping[str, NodeRecord]) -> LinkRecord | list[LinkRecord] | Refusal:
        """`ends` are (node client_id, interface client_id), all of placed nodes."""
        cid = link.client_id
        if link.link_type not in PLAIN_LINK_TYPES:
            return Refusal(cid, "UNSUPPORTED", f"link type {link.link_type!r} is not offered here "
                                               "(plain layer-2 links only)")
        hosts = {records[n].component.component_id: records[n].component for n, _ in ends}
        if link.switch:
            return self._through_switch(link, ends, records)
        if link.shared_vlan:
            return self._join(link, ends, hosts, records)
        if len(hosts) == 2 and len(ends) == 2 and \
                any(records[n].component.extra.get("wires") for n, _ in ends):
            return self._wire(link, ends, records)
        if len(hosts) == 1:
            return self._local(link, ends, next(iter(hosts.values())), records)
        if len(hosts) == 2:
            joined = self._bridge_join(link, ends, records, list(hosts.values()))
            if joined is not None:
                return joined
        halves = self._tunnel(link, ends, records, list(hosts.values()))
        if halves is not None:
            return halves
        return self._vlan(link, ends, records)

    def _tunnel(self, link: RequestLink, ends: list[tuple[str, str]],
                records: Mapping[str, NodeRecord], comps: list[Component]
                ) -> list[LinkRecord] | Refusal | None:
        """Ends on components of two or more different hosts with addresses (one component
        per host), every driver able to tunnel: one half per host (mode "tunnel"), each with
        this host's ends, admitted (capacity shaped at every end) on its own component. Two
        hosts: a point-to-point VXLAN device; more (a LAN spanning hosts): a full mesh, each
        half's VXLAN device flooding to every other host of the link (head-end replication,
        one VNI). None: not such a set (a switch may still join them)."""
        where = [self.site.host_of(c.component_id) for c in comps]
        decls = [self.site.hosts.get(h) if h else None for h in where]
        if len(comps) < 2 or None in where or len(set(where)) != len(where) or \
                any(d is None or not d.address for d in decls) or \
                not all(self.site.drivers[c.driver].capabilities.tunnels for c in comps):
            return None
        halves: list[LinkRecord] = []
        for i, comp in enumerate(comps):
            local = decls[i]
            others = [d for k, d in enumerate(decls) if k != i]
            assert local is not None and all(d is not None for d in others)
            spec = self._spec(link, comp, ends, records, TUNNEL_MODE,
                              params={"tunnel": {"half": i, "local": local.address,
                                                 "remote": others[0].address,
                                                 "local_host": local.name,
                                                 "remote_host": others[0].name,
                                                 "remotes": [d.address for d in others],
                                                 "remote_hosts": [d.name for d in others]}})
            adm = self._admit(comp, spec)
            if not adm.ok:
                return Refusal(link.client_id, adm.reason_code or "INSUFFICIENT_BANDWIDTH",
                               adm.reason or f"component {comp.component_id} refused its half "
                                             f"of link {link.client_id}")
            halves.append(LinkRecord(link, comp, comp.driver, spec, dict(adm.demand),
                                     adm.claims, ends))
        for half in halves:
            self.ledger.commit(half.component, half.spec, half.demand)
        return halves

    def _through_switch(self, link: RequestLink, ends: list[tuple[str, str]],
                        records: Mapping[str, NodeRecord]) -> list[LinkRecord] | Refusal:
        """A link the request carries through an OpenFlow switch: the switch's sliver (its
        ports and flows) and a wire sliver per end host (module docstring)."""
        cid, wanted = link.client_id, link.switch or ""
        sw = self.site.component(wanted) or next(
            (c for c in self.site.components if c.name == wanted), None)
        switches = sorted(c.name for c in self.site.components if is_switch(c)
                          and self.site.drivers[c.driver].capabilities.links_through_switch)
        if sw is None or sw.name not in switches:
            return Refusal(cid, "BADARGS", f"link {cid}: {wanted!r} is not an OpenFlow switch "
                                           f"of this aggregate (switches: "
                                           f"{', '.join(switches) or 'none'})")
        attach: list[tuple[Component, list[str]]] = []   # (host, interfaces) per attachment
        cabled: list[str] = []               # switch ports of card ports' site cables
        cable_from: dict[str, str] = {}      # switch port -> the card port it is cabled to
        cable_claims: list[str] = []
        for node_id, iface_id in ends:
            host = records[node_id].component
            if host.extra.get("wires"):      # a card: on the switch by its port's cable
                found = self._cabled_end(cid, sw, records[node_id], node_id, iface_id)
                if isinstance(found, Refusal):
                    return found
                cabled.append(found[0])
                cable_claims += found[1]
                cable_from[found[0]] = found[2]
                continue
            caps = self.site.drivers[host.driver].capabilities
            if is_switch(host) or not caps.wires:
                return Refusal(cid, "UNSUPPORTED", f"link {cid}: node {node_id} is on "
                                                   f"{host.name}, which cannot put an interface "
                                                   f"on switch {sw.name}")
            shared = caps.bridge_ports and next(
                (a for a in attach if a[0].component_id == host.component_id), None)
            if shared:
                shared[1].append(iface_id)       # a VM host: its link bridge is one port
            else:
                attach.append((host, [iface_id]))
        wires = self.site.drivers[sw.driver].switch_wires(self.slice_urn, cid, len(attach))
        spec = self._spec(link, sw, ends, records, "switch",
                          params={"attachments": wires, "switch": sw.name,
                                  **({"cable_ports": cabled, "cable_from": cable_from}
                                     if cabled else {})})
        # the capacity is enforced on the switch (a meter per port) and at the hosts' ends
        out = []
        adm = self._admit(sw, spec)
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"switch {sw.name} refused link {cid}")
        out.append(LinkRecord(link, sw, sw.driver, spec, dict(adm.demand),
                              tuple(dict.fromkeys((*adm.claims, *cable_claims))), ends))
        hosts = {h.component_id: h for h, _ in attach}
        for host in hosts.values():
            mine = {i: w for (h, ifaces), w in zip(attach, wires)
                    if h.component_id == host.component_id for i in ifaces}
            spec = self._spec(link, host, ends, records, "wire",
                              params={"wires": mine, "switch": sw.name})
            adm = self._admit(host, spec)
            if not adm.ok:
                return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                               adm.reason or f"component {host.name} refused link {cid}")
            out.append(LinkRecord(link, host, host.driver, spec, dict(adm.demand), adm.claims,
                                  ends))
        for rec in out:
            self.ledger.commit(rec.component, rec.spec, rec.demand)
        return out

    def _cabled_end(self, cid: str, sw: Component, card_rec: NodeRecord, node_id: str,
                    iface_id: str) -> tuple[str, list[str], str] | Refusal:
        """A card interface on a link through `sw`: the switch port its card port's site
        cable plugs into, and the claims on that cable and port; or why it cannot be."""
        card = card_rec.component
        port = _card_port(card_rec, iface_id)
        if port is None:
            return Refusal(cid, "BADARGS", f"interface {iface_id} of {node_id} is on no port "
                                           f"of {card.name}")
        if card_rec.interfaces[iface_id].vlan_tag:
            return Refusal(cid, "UNSUPPORTED", f"link {cid}: interface {iface_id} is on a VLAN "
                                               f"of {card.name} port {port}; a cable into "
                                               f"switch {sw.name} carries it untagged only")
        far = self._cable_of(card, port)
        if far is None or far.component_id.lower() != sw.component_id.lower():
            return Refusal(cid, "UNSUPPORTED",
                           f"link {cid}: {card.name} port {port} (interface {iface_id}) is not "
                           f"cabled to switch {sw.name}, so it cannot be on a link through it"
                           " (bind the interface to a card port the site cables there)")
        return (far.port, [f"wire:{card.name}:{port}", f"cable:{card.name}:{port}"],
                f"{_card_is(card)} port {port}")

    def _spec(self, link: RequestLink, comp: Component, ends: list[tuple[str, str]],
              records: Mapping[str, NodeRecord], mode: str, tag: int | None = None,
              params: Mapping | None = None) -> SliverSpec:
        link_ends = tuple(LinkEnd(sliver_urn="", node_client_id=n, interface_client_id=i,
                                  component_id=records[n].component.component_id)
                          for n, i in ends)
        latencies = [p.latency_ms for p in link.properties if p.latency_ms is not None]
        losses = [p.packet_loss for p in link.properties if p.packet_loss is not None]
        spec = LinkSpec(ends=link_ends, capacity_kbps=link.capacity_kbps,
                        latency_ms=max(latencies) if latencies else None,
                        packet_loss=max(losses) if losses else None, vlan_tag=tag, mode=mode)
        return SliverSpec(sliver_urn="", slice_urn=self.slice_urn, client_id=link.client_id,
                          kind=ResourceKind.LINK, component_id=comp.component_id, link=spec,
                          params=dict(params or {}))

    def _join(self, link: RequestLink, ends: list[tuple[str, str]],
              hosts: Mapping[str, Component], records: Mapping[str, NodeRecord]
              ) -> LinkRecord | Refusal:
        """A link joining the LAN another slice shares under the token `link.shared_vlan`
        (ProtoGENI's `link_shared_vlan`): a bridge port per end, on the LAN's own bridge."""
        cid, token = link.client_id, link.shared_vlan
        ref = self.shared_lans.get(token)
        if ref is None:
            return Refusal(cid, "SEARCHFAILED", f"link {cid}: no LAN is shared under the name "
                                                f"{token!r} here (a wrong token, or unshared)")
        if ref.slice_urn == self.slice_urn:
            return Refusal(cid, "BADARGS", f"link {cid}: LAN {token!r} is this slice's own; "
                                           "add the interfaces to it instead")
        lan_host = self.site.component(ref.component_id)
        away = sorted(n for n, _ in ends
                      if records[n].component.component_id.lower() != ref.component_id.lower())
        if lan_host is None or away:
            return Refusal(cid, "UNSUPPORTED", self._elsewhere(cid, token, ref.component_id,
                                                               away, records))
        driver = self.site.drivers[lan_host.driver]
        if not driver.capabilities.links:
            return Refusal(cid, "UNSUPPORTED", f"component {lan_host.component_id} cannot "
                                               "link its slivers")
        spec = self._spec(link, lan_host, ends, records, "bridge",
                          params={"shared_lan": token, "lan_sliver": ref.lan_sliver_urn})
        adm = self._admit(lan_host, spec)
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"component {lan_host.component_id} refused link {cid}")
        self.ledger.commit(lan_host, spec, adm.demand)
        return LinkRecord(link, lan_host, lan_host.driver, spec, dict(adm.demand), adm.claims,
                          ends)

    def _elsewhere(self, cid: str, token: str, lan_comp: str, away: list[str],
                   records: Mapping[str, NodeRecord]) -> str:
        """Why a joining node not on the shared LAN's component is refused: a shared LAN is
        joined only by nodes of its own component (its bridge); across hosts of the site it
        is not extended (its owner's LAN is not re-cut into tunnel halves for a foreign slice).
        Names the LAN, its component and host, and each node's component and host."""
        lan_hosts = self.site.hosts_of(lan_comp)

        def where(comp_id: str, hosts: tuple[str, ...]) -> str:
            return f"{comp_id}" + (f" (host {', '.join(hosts)})" if hosts else "")

        nodes = "; ".join(
            f"node {n} is on " + where(records[n].component.component_id,
                                       self.site.hosts_of(records[n].component.component_id))
            for n in away)
        other = {h for n in away for h in self.site.hosts_of(records[n].component.component_id)}
        across = bool(lan_hosts) and bool(other) and not other <= set(lan_hosts)
        why = ("a shared LAN is not extended across hosts: join it from a node on host "
               f"{', '.join(lan_hosts)}" if across else
               "a shared LAN is joined only by nodes on its own component")
        return (f"link {cid}: shared LAN {token!r} is a bridge on {where(lan_comp, lan_hosts)}; "
                f"{nodes}; {why} (the nodes are elsewhere)")

    def _admit(self, comp: Component, spec: SliverSpec) -> Admission:
        return self.site.drivers[comp.driver].admit(spec, self.ledger.usage(comp))

    def _local(self, link: RequestLink, ends: list[tuple[str, str]], host: Component,
               records: Mapping[str, NodeRecord]) -> LinkRecord | Refusal:
        driver = self.site.drivers[host.driver]
        if not driver.capabilities.links:
            return Refusal(link.client_id, "UNSUPPORTED",
                           f"component {host.component_id} cannot link its slivers")
        # a LAN (link_type "lan", or more than two ends) is a bridge: it can be shared
        mode = "veth" if len(ends) == 2 and link.link_type != "lan" else "bridge"
        spec = self._spec(link, host, ends, records, mode)
        adm = self._admit(host, spec)
        if not adm.ok:
            return Refusal(link.client_id, adm.reason_code or "INSUFFICIENT_BANDWIDTH",
                           adm.reason or f"component {host.component_id} refused link")
        self.ledger.commit(host, spec, adm.demand)
        return LinkRecord(link, host, host.driver, spec, dict(adm.demand), adm.claims, ends)

    def _wire(self, link: RequestLink, ends: list[tuple[str, str]],
              records: Mapping[str, NodeRecord]) -> LinkRecord | Refusal:
        """One end on a card whose ports are host interfaces, the other on a host whose driver
        takes such a wire into its sliver."""
        cid = link.client_id
        (card_node, card_if), (host_node, host_if) = sorted(
            ends, key=lambda e: not records[e[0]].component.extra.get("wires"))
        card, host = records[card_node].component, records[host_node].component
        plane = self.planes.get(host_node)
        if plane is not None and is_switch(plane.component):
            return self._cable(link, ends, records, (card_node, card_if), (host_node, host_if),
                               plane)
        if host.extra.get("wires"):
            return Refusal(cid, "UNSUPPORTED", f"link {cid} joins two cards ({card.name}, "
                                               f"{host.name}); wire a host or switch between")
        driver = self.site.drivers[host.driver]
        if not driver.capabilities.wires:
            return Refusal(cid, "UNSUPPORTED", f"component {host.name} (node {host_node}) cannot "
                                               f"take a wire of {card.name} into its sliver")
        iface = records[card_node].interfaces[card_if]
        port = _card_port(records[card_node], card_if)
        wire = card.extra["wires"].get(port) if port else None
        if wire is None:
            return Refusal(cid, "BADARGS", f"interface {card_if} of {card_node} is on no port "
                                           f"of {card.name}")
        cabled = self._cable_of(card, port)
        if cabled is not None:
            return Refusal(cid, "UNSUPPORTED",
                           f"link {cid}: {card.name} port {port} is cabled to "
                           f"{cabled.component_id.rsplit('+', 1)[-1]} port {cabled.port}; "
                           f"it links only to a router forwarding there, or on a link through "
                           f"that switch (<geniam:link switch=...>)")
        what = f"wire:{card.name}:{port}"
        if iface.vlan_tag:      # the port's VLAN with the tag popped by the card's breakout
            pattern = (card.extra.get("vlan_wires") or {}).get(port)
            if pattern is None:
                return Refusal(cid, "UNSUPPORTED",
                               f"interface {card_if} is on VLAN {iface.vlan_tag} of {card.name} "
                               f"port {port}, which has no untagged breakout; a node on "
                               f"{host.name} cannot tag: link it through a VLAN switch")
            wire = pattern.format(vlan=iface.vlan_tag)
            what += f":vlan:{iface.vlan_tag}"
        spec = self._spec(link, host, ends, records, "wire",
                          params={"wires": {host_if: wire}, "card": card.name, "port": port})
        adm = self._admit(host, spec)
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"component {host.component_id} refused link {cid}")
        claims = tuple(dict.fromkeys((*adm.claims, what)))
        self.ledger.commit(host, spec, adm.demand)
        return LinkRecord(link, host, host.driver, spec, dict(adm.demand), claims, ends)

    def _cable(self, link: RequestLink, ends: list[tuple[str, str]],
               records: Mapping[str, NodeRecord], card_end: tuple[str, str],
               router_end: tuple[str, str], plane: NodeRecord) -> LinkRecord | Refusal:
        """A card interface linked to a hybrid router whose forwarding plane is an OpenFlow
        datapath: the link is the site's cable between that card port and the datapath port
        the router's interface owns (its i-th interface is the datapath's i-th port). Nothing
        is plugged: the cable is there; the link sliver (on the datapath) claims it, so no
        container takes the card port's wire and no second slice the cable."""
        cid = link.client_id
        (card_node, card_if), (router_node, router_if) = card_end, router_end
        card, sw = records[card_node].component, plane.component
        iface = records[card_node].interfaces[card_if]
        port = _card_port(records[card_node], card_if)
        if port is None:
            return Refusal(cid, "BADARGS", f"interface {card_if} of {card_node} is on no port "
                                           f"of {card.name}")
        if iface.vlan_tag:
            return Refusal(cid, "UNSUPPORTED",
                           f"link {cid}: interface {card_if} is on VLAN {iface.vlan_tag} of "
                           f"{card.name} port {port}, but router {router_node} forwards on "
                           f"datapath {sw.name} untagged: a cable to a switch carries the "
                           "card port untagged only")
        names = [i.client_id for i in plane.spec.interfaces]
        owned = [p for p in sw.ports if p.num is not None]
        index = names.index(router_if) if router_if in names else len(owned)
        if index >= len(owned):
            return Refusal(cid, "BADARGS", f"link {cid}: interface {router_if} of router "
                                           f"{router_node} owns no port of datapath {sw.name}")
        sw_port = owned[index].name
        far = self._cable_of(card, port)
        if far is None or far.component_id.lower() != sw.component_id.lower():
            return Refusal(cid, "UNSUPPORTED",
                           f"link {cid}: {card.name} port {port} is not cabled to datapath "
                           f"{sw.name}, so interface {card_if} cannot reach router "
                           f"{router_node}'s forwarding plane there")
        if far.port != sw_port:
            return Refusal(cid, "BADARGS",
                           f"link {cid}: {card.name} port {port} is cabled to {sw.name} port "
                           f"{far.port}, but {router_node}'s interface {router_if} is port "
                           f"{sw_port} (a router's i-th interface is the datapath's i-th port)")
        spec = self._spec(link, sw, ends, records, "cable",
                          params={"card": card.name, "port": port, "switch_port": sw_port,
                                  "cable_ports": [far.port], "card_is": _card_is(card)})
        adm = self._admit(sw, spec)
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"datapath {sw.component_id} refused link {cid}")
        claims = tuple(dict.fromkeys((*adm.claims, f"wire:{card.name}:{port}")))
        self.ledger.commit(sw, spec, adm.demand)
        return LinkRecord(link, sw, sw.driver, spec, dict(adm.demand), claims, ends)

    def _cable_of(self, card: Component, port: str) -> PortRef | None:
        """The far end of the site cable plugged into a card's port, if any."""
        return next((far for _l, mine, far in
                     self.site.links_by_component.get(card.component_id.lower(), ())
                     if mine.port == port), None)

    def _bridge_join(self, link: RequestLink, ends: list[tuple[str, str]],
                     records: Mapping[str, NodeRecord], comps: list[Component]
                     ) -> LinkRecord | Refusal | None:
        """Two components of this machine, one whose nodes' interfaces are ports of a host
        bridge (VM taps: `Capabilities.bridge_ports`) and one whose driver plugs its nodes'
        ends into such a bridge (`joins_bridges`, e.g. containers): the joining driver
        realises the link (mode "join") on the other's bridge. None: not such a pair."""
        caps = {c.component_id: self.site.drivers[c.driver].capabilities for c in comps}
        owners = [c for c in comps if caps[c.component_id].bridge_ports]
        joiners = [c for c in comps if caps[c.component_id].joins_bridges and c not in owners]
        if len(owners) != 1 or len(joiners) != 1:
            return None
        owner, joiner = owners[0], joiners[0]
        bridge = self.site.drivers[owner.driver].shared_bridge(self.slice_urn, link.client_id)
        if not bridge:
            return None
        spec = self._spec(link, joiner, ends, records, "join",
                          params={"bridge": bridge, "bridge_host": owner.name})
        adm = self._admit(joiner, spec)
        if not adm.ok:
            return Refusal(link.client_id, adm.reason_code or "UNSUPPORTED",
                           adm.reason or f"component {joiner.component_id} refused link "
                                         f"{link.client_id}")
        self.ledger.commit(joiner, spec, adm.demand)
        return LinkRecord(link, joiner, joiner.driver, spec, dict(adm.demand), adm.claims, ends)

    def _wires(self, host: Component, port_urn: str | None) -> list[tuple[Component, PortRef, PortRef]]:
        """(switch, host end, switch end) for each wire from `host` to a switch."""
        out = []
        for sitelink, mine, far in self.site.links_by_component.get(host.component_id.lower(), ()):
            if port_urn and mine.interface_id.lower() != port_urn.lower():
                continue
            sw = self.site.component(far.component_id)
            if sw is not None and is_switch(sw):
                out.append((sw, mine, far))
        return out

    def _vlan(self, link: RequestLink, ends: list[tuple[str, str]],
              records: Mapping[str, NodeRecord]) -> LinkRecord | Refusal:
        cid = link.client_id
        # For each end: the wires from its host to switches (restricted to a port it names).
        per_end: list[list[tuple[Component, PortRef, PortRef]]] = []
        for node_id, iface_id in ends:
            rec = records[node_id]
            wires = self._wires(rec.component, rec.interfaces[iface_id].port)
            if not wires:
                return Refusal(cid, "UNSUPPORTED",
                               f"component {rec.component.component_id} (node {node_id}) is not "
                               "wired to a switch, so link ends on other hosts cannot reach it")
            per_end.append(wires)
        common = set.intersection(*({w[0].component_id for w in wires} for wires in per_end))
        if not common:
            names = ", ".join(sorted({records[n].component.name for n, _ in ends}))
            return Refusal(cid, "UNSUPPORTED", f"hosts {names} share no switch for link {cid}")
        kbps = link.capacity_kbps or 0
        last: Refusal | None = None
        for sw_id in sorted(common, key=self._order.__getitem__):
            result = self._on_switch(link, ends, records, per_end, self.site.component(sw_id), kbps)
            if isinstance(result, LinkRecord):
                return result
            last = last or result
        assert last is not None
        return last

    def _on_switch(self, link, ends, records, per_end, sw: Component,
                   kbps: int) -> LinkRecord | Refusal:
        cid = link.client_id
        demand: dict[str, float] = {}
        host_ports: dict[str, str] = {}
        switch_ports: dict[str, str] = {}
        # a wire carrying a stitched link is the node's whole (am.engine.stitch)
        stitched = {s.params.get("switch_port") for s in self.ledger.usage(sw).slivers
                    if s.link is not None and s.link.mode == "stitch"}
        for (node_id, iface_id), wires in zip(ends, per_end):
            choice = None
            shortfall = None
            for w_sw, mine, far in wires:
                if w_sw.component_id != sw.component_id or far.port in stitched:
                    continue
                res = f"kbps:{far.port}"
                if kbps == 0 or res in demand:    # unshaped, or a wire this link already uses
                    choice = (mine, far)
                    break
                free = self.ledger.free(sw, res)
                if free is None or free >= kbps:
                    choice = (mine, far)
                    break
                shortfall = shortfall or (mine, far, free)
            if choice is None:
                if shortfall is not None:
                    mine, far, free = shortfall
                    host = records[node_id].component.name
                    return Refusal(cid, "INSUFFICIENT_BANDWIDTH",
                                   f"link {cid} needs {kbps} kbps on wire {host}:{mine.port} - "
                                   f"{sw.name}:{far.port}, {max(free, 0):g} kbps free")
                return Refusal(cid, "UNSUPPORTED", f"node {node_id} has no wire to {sw.name}")
            mine, far = choice
            if kbps and sw.capacity.get(f"kbps:{far.port}") is not None:
                demand[f"kbps:{far.port}"] = float(kbps)
            host_ports[iface_id] = mine.interface_id
            switch_ports[iface_id] = far.port
        tag = self._tag(link, sw)
        if isinstance(tag, Refusal):
            return tag
        spec = self._spec(link, sw, ends, records, "vlan", tag,
                          {"switch_ports": switch_ports, "host_ports": host_ports})
        adm = self._admit(sw, spec)
        if not adm.ok:
            return Refusal(cid, adm.reason_code or "VLAN_UNAVAILABLE",
                           adm.reason or f"switch {sw.component_id} refused link {cid}")
        total = dict(demand)
        for res, amount in adm.demand.items():
            total[res] = total.get(res, 0.0) + float(amount)
        claims = tuple(dict.fromkeys((f"vlan:{tag}",) + tuple(adm.claims)))
        self.ledger.commit(sw, spec, total)
        for node_id, iface_id in ends:
            rec = records[node_id]
            rec.interfaces[iface_id] = replace(rec.interfaces[iface_id], vlan_tag=tag,
                                               port=host_ports[iface_id])
        return LinkRecord(link, sw, sw.driver, spec, total, claims, ends)

    def _tag(self, link: RequestLink, sw: Component) -> int | Refusal:
        lo, hi = sw.extra.get("vlan_range", DEFAULT_VLAN_RANGE)
        taken = {s.link.vlan_tag for s in self.ledger.usage(sw).slivers
                 if s.link is not None and s.link.vlan_tag is not None}
        if link.vlan_tag is not None:
            if not lo <= link.vlan_tag <= hi:
                return Refusal(link.client_id, "VLAN_UNAVAILABLE",
                               f"VLAN {link.vlan_tag} is outside {sw.name}'s range {lo}-{hi}")
            if link.vlan_tag in taken:
                return Refusal(link.client_id, "VLAN_UNAVAILABLE",
                               f"VLAN {link.vlan_tag} is already in use on {sw.name}")
            return link.vlan_tag
        for tag in range(lo, hi + 1):
            if tag not in taken:
                return tag
        return Refusal(link.client_id, "VLAN_UNAVAILABLE",
                       f"all VLAN tags {lo}-{hi} on {sw.name} are in use")


def _card_is(card: Component) -> str:
    """What a card is, as statuses say it: an emulated card says so."""
    emulated = str(card.extra.get("emulation", "")).startswith("emulated")
    return f"{'emulated ' if emulated else ''}NetFPGA card {card.name}"


def _card_port(record: NodeRecord, iface_id: str) -> str | None:
    """The card port an interface of a card node is on: the port its component_id names,
    else the card's i-th port for the node's i-th interface."""
    card = record.component
    iface = record.interfaces[iface_id]
    if iface.port:
        return {p.component_id.lower(): p.name for p in card.ports}.get(iface.port.lower())
    index = list(record.interfaces).index(iface_id)
    return card.ports[index].name if index < len(card.ports) else None
