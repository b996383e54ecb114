# ksr default routing script (Python). Same logic as scripts/default.lua.
import KSR


class Router:
    def ksr_request_route(self, msg):
        if KSR.is_OPTIONS():
            KSR.sl.sl_send_reply(200, "Keepalive")
            return 1
        KSR.sl.sl_send_reply(404, "Not Found")
        return 1


def mod_init():
    return Router()
