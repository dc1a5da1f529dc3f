"""A slice controller for the tests: an os-ken 4.x L2 learning switch that records what it sees.

Run as `python -m tests.drivers.openflow.osken_app <port> <record.jsonl>` (os-ken 4 has no
`osken-manager`). Every event is one JSON line in the record file: `features` (the dpid the
controller was given), `ports` (the port numbers of that switch), `packet_in` (in_port, MACs,
ethertype) and `flow` (each flow it installs), so a test can check what a slice's controller
saw, and what it never saw.
"""
from __future__ import annotations

import json
import os
import sys
import time

RECORD_ENV = "GOF_RECORD"
COOKIE = 0xC0FFEE


def _record(event: dict) -> None:
    path = os.environ[RECORD_ENV]
    event["t"] = time.time()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


from os_ken.lib import hub  # noqa: E402

hub.patch(thread=False)
from os_ken.base import app_manager  # noqa: E402
from os_ken.controller import ofp_event  # noqa: E402
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls  # noqa: E402
from os_ken.lib.packet import ethernet, packet  # noqa: E402
from os_ken.ofproto import ofproto_v1_3  # noqa: E402


class LearningSwitch(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.macs: dict[int, dict[str, int]] = {}

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def features(self, ev):
        dp = ev.msg.datapath
        _record({"event": "features", "dpid": f"{dp.id:016x}"})
        parser, ofp = dp.ofproto_parser, dp.ofproto
        self._flow(dp, 0, parser.OFPMatch(),
                   [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)])
        dp.send_msg(parser.OFPPortDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def ports(self, ev):
        nums = sorted(p.port_no for p in ev.msg.body if p.port_no < 0xFFFFFF00)
        _record({"event": "ports", "dpid": f"{ev.msg.datapath.id:016x}", "ports": nums})

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        parser, ofp = dp.ofproto_parser, dp.ofproto
        in_port = msg.match["in_port"]
        eth = packet.Packet(msg.data).get_protocols(ethernet.ethernet)[0]
        _record({"event": "packet_in", "in_port": in_port, "src": eth.src, "dst": eth.dst,
                 "eth_type": eth.ethertype})
        table = self.macs.setdefault(dp.id, {})
        table[eth.src] = in_port
        out = table.get(eth.dst, ofp.OFPP_FLOOD)
        actions = [parser.OFPActionOutput(out)]
        if out != ofp.OFPP_FLOOD:
            self._flow(dp, 10, parser.OFPMatch(in_port=in_port, eth_dst=eth.dst), actions)
        data = msg.data if msg.buffer_id == ofp.OFP_NO_BUFFER else None
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id, in_port=in_port,
                                        actions=actions, data=data))

    def _flow(self, dp, priority, match, actions):
        parser, ofp = dp.ofproto_parser, dp.ofproto
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, cookie=COOKIE, priority=priority,
                                      match=match, instructions=inst))
        _record({"event": "flow", "priority": priority, "match": str(match.to_jsondict()),
                 "out": [a.port for a in actions]})


def main(argv: list[str]) -> None:
    port, record = argv[0], argv[1]
    os.environ[RECORD_ENV] = record
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager
    import os_ken.controller.controller  # noqa: F401  (registers the ofp options)
    cfg.CONF(args=["--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", port],
             project="os_ken")
    _record({"event": "listening", "port": int(port)})
    AppManager.run_apps(["tests.drivers.openflow.osken_app"])


if __name__ == "__main__":
    main(sys.argv[1:])
