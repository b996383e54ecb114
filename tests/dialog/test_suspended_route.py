"""A dialog made by dlg_manage in a route that then waits on I/O (a registrar lookup on usrloc
db_mode 3, docs/suspend.md) is kept: its INVITE gets a transaction when the route resumes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ksr.db import open_store
from tests import services
from tests.dialog.ua import Ua
from tests.registrar.helpers import exchange, register
from tests.support import make_config, running_server, udp_addr, write_script

pytestmark = pytest.mark.postgres

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    return 1
  end
  if KSR.is_INVITE() and KSR.pv.get("$tt") == nil then
    KSR.dialog.dlg_manage()
    if KSR.registrar.lookup("location") < 0 then
      KSR.sl.sl_send_reply(404, "Not Found")
      return 1
    end
  end
  KSR.tm.t_relay()
end
"""


async def test_dialog_survives_a_waiting_lookup(tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    pg = f"{services.pg_url()}?prefix={prefix}"
    cfg = make_config(
        ["sl", "tm", "usrloc", "registrar", "dialog"],
        {"usrloc": {"db_url": pg, "db_mode": 3}},
    )
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
            rpl = await exchange(b.peer, udp_addr(server), register(b.peer.port, "bob"))
            assert rpl.status == 200
            await a.invite_via(udp_addr(server), b, "waits-1", ruri="sip:bob@127.0.0.1")
            inv = await b.expect_request("INVITE")
            await b.answer(inv, 200, udp_addr(server))
            await a.expect_reply(200)
            (dlg,) = server.module("dialog").mgr.table
            assert dlg.callid == "waits-1"
            assert dlg.state == 3  # answered: tracked through the waiting lookup
    finally:
        a.close()
        b.close()
        store = open_store(pg)
        store.drop("location")
        store.drop("version")
        store.close()
