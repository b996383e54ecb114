"""app_lua: the Lua script's RPC commands (reload, list, api_list) and optional file watching.

The script itself is run by ``ksr.kemi.lua_engine``; this module is always loaded so the
commands exist whatever the configuration lists.
"""

from __future__ import annotations

from typing import Any

from ksr.core.module import ModParams
from ksr.core.rpc import RpcError, rpc
from ksr.core.rpc_merge import EVERY
from ksr.kemi.reload import ScriptModule, api_list


class AppLuaParams(ModParams):
    load: str = ""  # the script (also given with --script)
    reload: int = 1  # 0 refuses app_lua.reload, as Kamailio's modparam
    log_mode: int = 0
    reload_watch: int = 0  # 1 = reload when the file changes (a ksr addition)
    reload_watch_interval: float = 1.0  # seconds between mtime polls


class AppLua(ScriptModule):
    name = "app_lua"
    Params = AppLuaParams
    language = "lua"

    @rpc("app_lua.reload", merge=EVERY)
    def rpc_reload(self, idx: int | str = -1) -> dict[str, Any]:
        """Load the Lua script again, check it, and swap it in; replies {old, new, file, ...}.
        A script that fails to load or check is refused and the running one stays."""
        if str(idx) not in ("-1", "0"):
            raise RpcError(500, "Reload Failed: script index out of range")
        return self.do_reload(bool(self.params.reload))

    @rpc("app_lua.list")
    def rpc_list(self) -> dict[str, Any]:
        """The loaded Lua scripts with their version and load time."""
        return self.list_scripts()

    @rpc("app_lua.api_list")
    def rpc_api_list(self) -> dict[str, Any]:
        """Every KSR function a script can call, with parameter and return types."""
        return api_list(self.server)


MODULE = AppLua
