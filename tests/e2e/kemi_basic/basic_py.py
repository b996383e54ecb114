"""The app_python3 flavour of basic_3s.py (mod_init, an object whose methods take msg): the
same routes, reached through the object as Kamailio's app_python3 calls them."""

import basic_3s as routes
import KSR


class Routes:
    def __init__(self):
        KSR.info("routes object created\n")

    def child_init(self, rank):
        return 0

    def __getattr__(self, name):
        fn = getattr(routes, name)  # on_branch, on_reply... named by t_on_*()

        def method(msg, *args):
            return fn(*args)

        return method

    def ksr_request_route(self, msg):
        return routes.ksr_request_route()

    def ksr_reply_route(self, msg):
        return routes.ksr_reply_route()


def mod_init():
    return Routes()
