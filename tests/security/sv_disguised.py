"""Run Debian's sipvicious tools (svcrack, svwar, svmap) as an attacker who changed two things:
the User-Agent (instead of 'friendly-scanner') and the source address ($KSR_SV_BIND; svcrack
0.3.3 ignores its own -b option).

    python3 sv_disguised.py USER-AGENT TOOL ARGS...
"""

from __future__ import annotations

import os
import sys
from typing import Any

SIPVICIOUS = "/usr/share/sipvicious"  # where Debian's package keeps the modules


def set_default(fn: Any, name: str, value: object) -> None:
    """Change the default of one keyword parameter of ``fn``."""
    code = fn.__code__
    names = code.co_varnames[: code.co_argcount]
    defaults = list(fn.__defaults__)
    defaults[names.index(name) - (len(names) - len(defaults))] = value
    fn.__defaults__ = tuple(defaults)


def main() -> None:
    sys.path.insert(0, SIPVICIOUS)
    from sipvicious.libs import svhelper  # type: ignore[import-not-found]

    ua, tool = sys.argv[1], sys.argv[2]
    del sys.argv[1:3]
    set_default(svhelper.makeRequest, "useragent", ua)
    mod = __import__(f"sipvicious.{tool}", fromlist=["main"])
    bind = os.environ.get("KSR_SV_BIND")
    if bind:
        for cls in vars(mod).values():
            code = getattr(getattr(cls, "__init__", None), "__code__", None)
            if isinstance(cls, type) and code is not None and "bindingip" in code.co_varnames:
                set_default(cls.__init__, "bindingip", bind)
    sys.argv[0] = tool
    mod.main()


if __name__ == "__main__":
    main()
