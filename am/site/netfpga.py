"""An emulated NetFPGA card for the default site: the card's register file under
`<site>/netfpga`, and its card process (a private OVS in the card's own namespace compiling the
registers into a pipeline, drivers/netfpga/card.py), started and stopped with the site.

The card's ports are the interfaces `<prefix>p0..p3` on this host and each slot's CPU port is
`<prefix>h<slot>`; a `netfpga-vdp` sliver forwards real packets between whatever is wired to
them. There is no NetFPGA hardware here: the banner and the advertisement say "emulated".
"""
from __future__ import annotations

from typing import Any

from am.site.base import ComponentInfo, Fragment, SiteContext, SiteHelper
from drivers.netfpga.card import CardNames, EmulatedCard
from am.site.switch import ovs_missing

CARD_NAME = "nf1"


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


__all__ = ["EmulatedNetFPGA"]
