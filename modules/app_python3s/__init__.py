"""app_python3s: Python routing scripts with module-level route functions (no mod_init).

Loading this module (``loadmodule = [..., "app_python3s"]``) makes a ``.py`` script run the way
Kamailio's app_python3s runs it: ``ksr_request_route()`` and the other routes are plain
functions of the script called without a ``msg`` argument (event routes get the event name).
The engine is ``ksr.kemi.python_engine`` with ``flat=True``.
"""

from __future__ import annotations

from typing import Any

from ksr.core.module import ModParams
from ksr.core.rpc import rpc
from ksr.kemi.reload import ScriptModule, api_list


class AppPython3sParams(ModParams):
    load: str = ""  # the script (also given with --script)
    script_init: str = ""  # function run once when the script is loaded
    script_child_init: str = ""  # function run once with the rank (0) after script_init
    reload_watch: int = 0  # 1 = reload when the file changes (a ksr addition)
    reload_watch_interval: float = 1.0


class AppPython3s(ScriptModule):
    name = "app_python3s"
    Params = AppPython3sParams
    language = "python"

    @rpc("app_python3s.reload")
    def rpc_reload(self) -> dict[str, Any]:
        """Load the Python script again, check it, swap it in; a script that fails is refused
        and the running one stays."""
        return self.do_reload()

    @rpc("app_python3s.api_list")
    def rpc_api_list(self) -> dict[str, Any]:
        """Every KSR function a script can call, with parameter and return types."""
        return api_list(self.server)


MODULE = AppPython3s
