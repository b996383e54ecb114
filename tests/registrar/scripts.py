"""Routing scripts for the registrar tests, the same logic in Lua and Python.

REGISTER -> (auth_check / auth_challenge when AUTH is on) -> save; anything else -> lookup ->
302 listing the contacts, or KSR.forward() when the request asks for it (X-Relay header)."""

from __future__ import annotations

LUA = """
local AUTH = %(auth)s
function ksr_request_route()
  if KSR.is_REGISTER() then
    if AUTH then
      local rc = KSR.auth_db.auth_check(KSR.pv.get("$td"), "subscriber", 1)
      if rc < 0 then
        KSR.auth.auth_challenge(KSR.pv.get("$td"), 1)
        KSR.x.exit()
      end
      KSR.auth.consume_credentials()
    end
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  local rc = KSR.registrar.lookup("location")
  if rc == -2 then
    KSR.sl.sl_send_reply(405, "Method Not Allowed")
    KSR.x.exit()
  elseif rc < 0 then
    KSR.sl.sl_send_reply(404, "Not Found")
    KSR.x.exit()
  end
  if KSR.hdr.is_present("X-Relay") > 0 then
    KSR.forward()
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(302, "Moved Temporarily")
end
"""

PY = """
import KSR

AUTH = %(auth)s

class Router:
    def ksr_request_route(self, msg):
        if KSR.is_REGISTER():
            if AUTH:
                rc = KSR.auth_db.auth_check(KSR.pv.get("$td"), "subscriber", 1)
                if rc < 0:
                    KSR.auth.auth_challenge(KSR.pv.get("$td"), 1)
                    return 1
                KSR.auth.consume_credentials()
            KSR.registrar.save("location", 0)
            return 1
        rc = KSR.registrar.lookup("location")
        if rc == -2:
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        if rc < 0:
            KSR.sl.sl_send_reply(404, "Not Found")
            return 1
        if KSR.hdr.is_present("X-Relay") > 0:
            KSR.forward()
            return 1
        KSR.sl.sl_send_reply(302, "Moved Temporarily")
        return 1

def mod_init():
    return Router()
"""


def script(lang: str, auth: bool = False) -> tuple[str, str]:
    """(suffix, text) of the registrar test script."""
    if lang == "lua":
        return ".lua", LUA % {"auth": "true" if auth else "false"}
    return ".py", PY % {"auth": "True" if auth else "False"}
