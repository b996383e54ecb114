"""An ended dialog leaves dlg.list once the transaction of its BYE is over (Kamailio's
view, what kamcli users count calls from); a late retransmitted BYE changes nothing."""

from __future__ import annotations

from pathlib import Path

import trio

from .test_calls import call_setup, cid, establish, events


async def test_dialog_leaves_dlg_list_when_its_bye_transaction_ends(tmp_path: Path) -> None:
    async with call_setup(tmp_path, tm={"wt_timer": 300}) as (server, a, b, proxy):
        call_id = cid()
        await establish(a, b, proxy, call_id)
        await a.in_dialog("BYE", proxy)
        bye = await b.expect_request("BYE")
        await b.answer(bye, 200, proxy)
        await a.expect_reply(200, "BYE")
        # the BYE transaction still absorbs retransmissions: listed as ended (state 5)
        (d,) = server.rpc.call("dlg.list", [])
        assert (d["call-id"], d["state"]) == (call_id, 5)
        await trio.sleep(0.8)  # wt_timer 300 ms: the BYE transaction is freed
        assert server.rpc.call("dlg.list", []) == []
        assert server.rpc.call("dlg.list_ctx", []) == []
        assert server.rpc.call("dlg.dlg_list", [call_id]) == []
        assert server.module("dialog").mgr.table.count_states()[5] == 1  # still matched
        late = a._req(
            "BYE", a.remote_target, a.cseq, f"<{b.local_uri}>;tag={b.local_tag}", a.route_set
        )
        await a.peer.send(late, proxy)  # a late BYE: nothing is counted twice
        await trio.sleep(0.2)
        assert events(server) == {"dialog:start": 1, "dialog:end": 1}
        assert server.rpc.call("dlg.list", []) == []
