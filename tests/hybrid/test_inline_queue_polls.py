"""The hybrid tests' InlineQueue follows a start that is under way (runner.PollLater) as the
worker does: it looks again after the poll delay until the sliver is ready. The fake driver's
`boot_polls` makes each start take that many looks."""
from __future__ import annotations

from am.app import build_runtime
from tests.api.conftest import RSPEC_V, SLICE, ApiClient, code_of
from tests.hybrid.conftest import AM, InlineQueue, manifest_nodes, release_and_close, request
from tests.support import wait_until


def test_inline_queue_polls_a_booting_sliver_to_ready(base_settings, tmp_path, gcf_fixtures, fx):
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[drivers.fake]\nnodes = 1\nboot_polls = 3\nstate_dir = "{tmp_path}/fake"\n')
    queue = InlineQueue()
    rt = build_runtime(base_settings.replace(state_dir=str(tmp_path / "am"), inventory=str(inv)),
                       job_queue=lambda s: (queue, []))
    queue.store, queue.site = rt.store, rt.site
    try:
        am = AM(ApiClient(rt.app.test_client(), (gcf_fixtures / "alice-cert.pem").read_text()),
                rt, [fx.cred("slice-cred-alice")], "")
        alloc = am.allocate(request('<node client_id="a" exclusive="false">'
                                    '<sliver_type name="xen-vm"/></node>'))
        assert code_of(alloc) == 0, alloc
        urn = manifest_nodes(alloc["value"])["a"].get("sliver_id")
        am.ok("Provision", [SLICE], am.cred, {"geni_rspec_version": RSPEC_V})
        wait_until(lambda: am.states([urn]) == {urn: "geni_ready"},
                   "the sliver to be polled to ready", 30)
    finally:
        release_and_close(rt)
