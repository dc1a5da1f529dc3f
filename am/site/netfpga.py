"""An emulated NetFPGA card for the default site: the card's register file under
`<site>/netfpga`, and its card process (a private OVS in the card's own namespace compiling the
registers into a pipeline, drivers/netfpga/card.py), started and stopped with the site.

The card's ports are the interfaces `<prefix>p0..p3` on this host and each slot's CPU port is
`<prefix>h<slot>`; a `netfpga-vdp` sliver forwards real packets between whatever is wired to
them. There is no NetFPGA hardware here: the banner and the advertisement say "emulated".
"""
from __future__ import annotations

from typing import Any

import subprocess

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteError, SiteHelper
from am.site.switch import (
    BRIDGE,
    SWITCH_NAME,
    ovs_missing,
    switch_client,
    switch_netns,
    wait_for_datapath,
)
from drivers import hostnet
from drivers.netfpga.card import CardNames, EmulatedCard

CARD_NAME = "nf1"
CABLED_PORT = 3                 # nf3: nf0..nf2 stay wires that slices plug into their nodes
SWITCH_PORT = "port3"           # its name (and OpenFlow port number) on the switch
SWITCH_PORT_NUM = 3
CABLE_NAME = f"{CARD_NAME}-{SWITCH_NAME}"


class EmulatedNetFPGA(SiteHelper):
    name = "emulated netfpga card"
    letters = "n"

    def _config(self, ctx: SiteContext) -> tuple[dict[str, Any], dict[str, Any]]:
        """The driver table and the card's component table."""
        root = ctx.dir("netfpga")
        prefix = ctx.prefix("n")
        driver = {"state_dir": str(root), "card_process": True}
        comp = {"name": CARD_NAME, "driver": "netfpga",
                "extra": {"iface_prefix": prefix, "card_file": str(root / f"{CARD_NAME}.card"),
                          "card_rundir": str(root / f"{CARD_NAME}.run")}}
        return driver, comp

    def _card(self, ctx: SiteContext) -> EmulatedCard:
        _driver, comp = self._config(ctx)
        extra = comp["extra"]
        return EmulatedCard(extra["card_file"], extra["card_rundir"], extra["iface_prefix"])

    def missing(self, ctx: SiteContext) -> list[str]:
        return ovs_missing()

    def start(self, ctx: SiteContext) -> Fragment:
        from drivers.netfpga import NetFPGADriver

        driver_cfg, comp_cfg = self._config(ctx)
        driver = NetFPGADriver(driver_cfg, [comp_cfg], authority=ctx.authority)
        try:
            comp = driver.inventory()[0]
            card = driver.emulated_card(comp)        # creates the card file, its geometry
            names = CardNames(comp.extra["iface_prefix"])
            ctx.record.note("netns", names.netns)
            card.start()
            ports = ", ".join(names.wire(p) for p in range(len(comp.ports)))
            return Fragment(
                drivers={"netfpga": driver_cfg}, components=[comp_cfg],
                info=[ComponentInfo(CARD_NAME, "netfpga", "emulated",
                                    f"emulated NetFPGA card ({len(comp.ports)} ports: {ports}; "
                                    f"{comp.extra['slots']} slots, CPU ports "
                                    f"{names.control(0)}..): registers compiled into an Open "
                                    f"vSwitch userspace pipeline in namespace {names.netns}")])
        finally:
            driver.close()

    def stop(self, ctx: SiteContext) -> None:
        card = self._card(ctx)
        card.stop()
        card.cleanup()
        ctx.record.forget("netns", card.names.netns)

    def markers(self, ctx: SiteContext) -> list[str]:
        return [self._config(ctx)[1]["extra"]["card_rundir"]]


class CardSwitchCable(SiteHelper):
    """The emulated card's port nf3 cabled into the site's OpenFlow switch: the card's wire
    `<prefix>p3` becomes the switch's `port3` (OpenFlow port 3), as an operator plugs a cable,
    and the inventory declares it (`[[links]]` nf1:nf3 - ovs1:port3), so ListResources
    advertises it and the engine routes a slot on nf3 to a router forwarding on ovs1 over it
    (docs/netfpga.md, "Cabling a card port into an OpenFlow switch"). Runs after both."""

    name = "netfpga cable"

    def missing(self, ctx: SiteContext) -> list[str]:
        return []

    def start(self, ctx: SiteContext) -> Fragment:
        swns = switch_netns(ctx)
        names = CardNames(ctx.prefix("n"))
        wire = names.wire(CABLED_PORT)
        if hostnet.find_link(swns, SWITCH_PORT) is None:
            if hostnet.find_link(None, wire) is None:
                raise SiteError(f"the emulated card's port nf{CABLED_PORT} ({wire}) is not on "
                                "this host: is its card process running?")
            hostnet.link_move(wire, swns)
            hostnet.link_set(swns, wire, name=SWITCH_PORT)
        hostnet.link_set(swns, SWITCH_PORT, up=True)
        # TCP through the userspace datapath needs TX checksums computed in software
        subprocess.run(["ip", "netns", "exec", swns, "ethtool", "-K", SWITCH_PORT, "tx", "off"],
                       capture_output=True, check=False, timeout=10)
        client = switch_client(ctx)
        client.vsctl("--may-exist", "add-port", BRIDGE, SWITCH_PORT, "--", "set", "interface",
                     SWITCH_PORT, f"ofport_request={SWITCH_PORT_NUM}")
        wait_for_datapath(client, BRIDGE, [SWITCH_PORT])
        return Fragment(
            links=[{"name": CABLE_NAME, "ends": [f"{CARD_NAME}:nf{CABLED_PORT}",
                                                 f"{SWITCH_NAME}:{SWITCH_PORT}"]}],
            ports={SWITCH_NAME: [{"name": SWITCH_PORT, "num": SWITCH_PORT_NUM}]},
            info=[ComponentInfo(CABLE_NAME, "cable", "emulated",
                                f"emulated NetFPGA card {CARD_NAME} port nf{CABLED_PORT} "
                                f"(its wire {wire}) cabled into {SWITCH_NAME} {SWITCH_PORT} "
                                f"(OpenFlow port {SWITCH_PORT_NUM})")])

    def stop(self, ctx: SiteContext) -> None:
        """Nothing of its own: the cable goes with the card's namespace (its veth's other end)
        and the switch's."""


__all__ = ["CABLE_NAME", "CardSwitchCable", "EmulatedNetFPGA"]
