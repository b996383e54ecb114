"""A module folder of the user's own (``mpath``) loads next to the bundled ``ksr.modules`` and
can use a bundled module's API through that import name; the same file runs from the wheel
(tests/packaging/test_wheel.py)."""

from __future__ import annotations

from pathlib import Path

from ksr.core.config import Config
from tests.support import UdpPeer, running_server, sip_request, udp_addr, write_script

USER_MODULE = '''
"""greeter: a user's module, outside ksr, using a bundled module's API."""

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import kemi
from ksr.modules.sl import Sl  # the bundled modules' import name


class GreeterParams(ModParams):
    word: str = "Hello"


class Greeter(Module):
    name = "greeter"
    Params = GreeterParams
    depends = ("sl",)

    @kemi()
    def greet(self, ctx: MsgContext) -> int:
        sl = self.server.module("sl")
        assert isinstance(sl, Sl)
        return sl.sl_send_reply(ctx, 200, self.params.word + " from " + __name__)


MODULE = Greeter
'''

ROUTE = "function ksr_request_route() KSR.greeter.greet() end\n"


def user_module(folder: Path) -> Path:
    (folder / "greeter").mkdir(parents=True)
    (folder / "greeter" / "__init__.py").write_text(USER_MODULE)
    return folder


async def test_user_module_from_mpath(tmp_path: Path) -> None:
    mods = user_module(tmp_path / "mods")
    cfg = Config.model_validate(
        {
            "loadmodule": ["sl", "greeter"],
            "mpath": [str(mods)],
            "core": {"listen": ["udp:127.0.0.1:0"]},
            "modparam": {"greeter": {"word": "Hi"}},
        }
    )
    async with running_server(cfg, write_script(tmp_path, ROUTE)) as server:
        peer = await UdpPeer().bind()
        await peer.send(sip_request("OPTIONS", port=peer.port), udp_addr(server))
        rpl = await peer.recv_reply()
        assert (rpl.status, rpl.reason) == (200, "Hi from ksr_usermod_greeter")
