"""app_python3: the Python script's RPC commands and optional file watching.

Kamailio registers the reload command under the legacy ``app_python`` prefix; ksr answers it
there and as ``app_python3.reload``. The script is run by ``ksr.kemi.python_engine``.
"""

from __future__ import annotations

from typing import Any

from ksr.core.module import ModParams
from ksr.core.rpc import rpc
from ksr.core.rpc_merge import EVERY
from ksr.kemi.reload import ScriptModule, api_list


class AppPythonParams(ModParams):
    load: str = ""  # the script (also given with --script)
    reload_watch: int = 0  # 1 = reload when the file changes (a ksr addition)
    reload_watch_interval: float = 1.0


class AppPython3(ScriptModule):
    name = "app_python3"
    Params = AppPythonParams
    language = "python"

    @rpc("app_python.reload", merge=EVERY)
    @rpc("app_python3.reload", merge=EVERY)
    def rpc_reload(self) -> dict[str, Any]:
        """Load the Python script and its helper modules again, check it, swap it in; replies
        {old, new, file, ...}. A script that fails is refused and the running one stays."""
        return self.do_reload()

    @rpc("app_python.list")
    def rpc_list(self) -> dict[str, Any]:
        """The loaded Python script with its version and load time."""
        return self.list_scripts()

    @rpc("app_python.api_list")
    def rpc_api_list(self) -> dict[str, Any]:
        """Every KSR function a script can call, with parameter and return types."""
        return api_list(self.server)


MODULE = AppPython3
