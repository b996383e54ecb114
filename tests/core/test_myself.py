"""The "myself" checks (ksr/core/myself.py) against their definition, for listeners with and
without advertised addresses, IPv6, aliases with and without a port, every port/proto form."""

from __future__ import annotations

import itertools

from ksr.core.context import SocketInfo
from ksr.core.listen import parse_listen
from ksr.core.server import Server
from tests.support import make_config

LISTEN = [
    "udp:127.0.0.1:5060",
    "tcp:127.0.0.1:5062",
    "udp:10.0.0.5:5070 advertise 203.0.113.9:15070",
    "tls:[2001:db8::1]:5061",
    "udp:Host.Example",
]
ALIAS = ["proxy.example.com", "edge.example.com:5080", "10.9.9.9:5090"]


def defined(
    listeners: list[SocketInfo],
    aliases: set[tuple[str, int | None]],
    host: str,
    port: int | None,
    proto: str | None,
) -> bool:
    """is_myself_addr as documented, one listener and alias at a time."""
    h = host.lower().strip("[]")
    for s in listeners:
        if (h == s.ip or h == s.adv_ip) and (port is None or port in (s.port, s.adv_port)):
            if proto is None or proto == s.proto:
                return True
    for ah, ap in aliases:
        if h == ah and (ap is None or port is None or port == ap):
            return True
    return False


HOSTS = [
    "127.0.0.1",
    "10.0.0.5",
    "203.0.113.9",
    "[2001:db8::1]",
    "2001:DB8::1",
    "2001:db8::1",
    "Host.Example",
    "host.example",
    "proxy.example.com",
    "PROXY.example.com",
    "edge.example.com",
    "10.9.9.9",
    "192.0.2.1",
    "",
]
PORTS = [None, 0, 5060, 5061, 5062, 5070, 15070, 5080, 5090, 9999]
PROTOS = [None, "udp", "tcp", "tls", "ws"]


def test_every_address_port_and_proto_as_defined() -> None:
    server = Server(make_config(modules=[], listen=LISTEN, alias=ALIAS))
    mine = 0
    for host, port, proto in itertools.product(HOSTS, PORTS, PROTOS):
        want = defined(server.listeners, server.aliases, host, port, proto)
        assert server.is_myself_addr(host, port, proto) is want, (host, port, proto)
        mine += want
    assert mine > 50  # the grid does name this server, in many ways
    for host, port in itertools.product(HOSTS, PORTS):
        want = defined(server.listeners, server.aliases, host, port or 5060, None) or defined(
            server.listeners, server.aliases, host, port, None
        )
        assert server.is_myself_via(host, port) is want, (host, port)


def test_a_few_by_hand() -> None:
    server = Server(make_config(modules=[], listen=LISTEN, alias=ALIAS))
    assert server.is_myself_addr("203.0.113.9", 5070, "udp")  # advertised host, real port
    assert not server.is_myself_addr("127.0.0.1", 5062, "udp")  # that port is tcp's
    assert server.is_myself_addr("edge.example.com", 5080, "ws")  # aliases: any transport
    assert not server.is_myself_addr("edge.example.com", 5060)
    assert server.is_myself_addr("proxy.example.com", 1234, "tcp")
    assert not server.is_myself_addr("host.example", 5060)  # a listener's name as written
    assert server.is_myself_via("127.0.0.1", None)  # no port: 5060
    assert server.is_myself_text("sip:alice@proxy.example.com")
    assert server.is_myself_text("<sips:[2001:db8::1]>")
    assert not server.is_myself_text("sip:alice@edge.example.com")  # 5060 is not its port
    assert server.is_local_ip("10.0.0.5")
    assert not server.is_local_ip("203.0.113.9")


def test_the_checks_follow_the_listeners_the_server_opens() -> None:
    """serve() replaces the configured listeners by the opened sockets (a port 0 becomes the
    port the kernel chose): the answers change with them."""
    server = Server(make_config(modules=[], listen=["udp:127.0.0.1:0"], alias=["a.example:7"]))
    assert server.is_myself_addr("127.0.0.1", 0)
    assert not server.is_myself_addr("127.0.0.1", 40000)
    assert not server.is_local_ip("192.0.2.7")
    server.listeners = [parse_listen("udp:127.0.0.1:40000"), parse_listen("tcp:192.0.2.7:5060")]
    assert server.is_myself_addr("127.0.0.1", 40000, "udp")
    assert not server.is_myself_addr("127.0.0.1", 0)
    assert server.is_myself_addr("192.0.2.7", None, "tcp")
    assert server.is_local_ip("192.0.2.7")
    server.aliases = {("b.example", None)}
    assert server.is_myself_addr("b.example", 1)
    assert not server.is_myself_addr("a.example", 7)
    for host, port, proto in itertools.product(HOSTS + ["192.0.2.7"], PORTS, PROTOS):
        want = defined(server.listeners, server.aliases, host, port, proto)
        assert server.is_myself_addr(host, port, proto) is want, (host, port, proto)


def test_uri_text_with_parameters_answers_as_a_full_parse() -> None:
    """is_myself_text keeps its answers for URIs with parameters by scheme:hostport: the
    answer is the one of the URI parsed whole, for plain and odd texts, and it follows the
    listeners when serve() replaces them."""
    server = Server(make_config(modules=[], listen=LISTEN, alias=ALIAS))
    texts = [
        "sip:127.0.0.1:5060;lr;ftag=a1",
        "sip:127.0.0.1:5060;lr;ftag=b2",
        "<sip:127.0.0.1;lr>",
        "sip:127.0.0.1:5062;transport=tcp;lr",
        "sips:[2001:db8::1];lr",
        "sip:proxy.example.com:9;lr",
        "sip:edge.example.com;lr",
        "sip:edge.example.com:5080;lr",
        "sip:alice;x@127.0.0.1;lr",  # a ';' in the userinfo
        "sip:127.0.0.1;lr?h=v",  # headers
        "sip:127.0.0.1;lr;bad<",  # refused by parse_uri
        "sip:127.0.0.1;lr;ctl\x01",  # not printable, yet accepted by parse_uri
        "sip:;lr",
    ]
    want = [True, True, True, True, True, True, False, True, True, True, False, True, False]
    for _ in range(2):  # the second time from what was kept
        assert [server.is_myself_text(t) for t in texts] == want
    server.listeners = [parse_listen("udp:127.0.0.1:40000")]
    assert not server.is_myself_text("sip:127.0.0.1:5060;lr;ftag=c3")
    assert server.is_myself_text("sip:127.0.0.1:40000;lr;ftag=c3")
