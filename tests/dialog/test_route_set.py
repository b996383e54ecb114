"""dialog's route sets from a 2xx's Record-Route: the same as parsing every entry in full."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ksr.modules.dialog.requests import record_routes, split_route_set
from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.message import Header, Response

MINE = ("sip:127.0.0.1", "sip:127.0.0.1:5060", "sip:proxy.example.com")

RECORD_ROUTES = [
    [],
    ["<sip:127.0.0.1;lr;ftag=abc>"],
    ["<sip:127.0.0.1:5060;lr;ftag=abc;did=1f2.3>"],
    ["<sip:down@192.0.2.9;lr>", "<sip:127.0.0.1;lr>", "<sip:up@192.0.2.1;lr>"],
    ["<sip:down@192.0.2.9;lr>, <sip:127.0.0.1;lr>", " <sip:up@192.0.2.1;lr> "],
    ["<sip:a@192.0.2.9;lr>,<sip:b@192.0.2.8;lr>,<sip:127.0.0.1;lr>"],
    ['"Proxy" <sip:127.0.0.1;lr>', "<sip:up@192.0.2.1;lr>"],
    ["Proxy <sip:127.0.0.1;lr>;foo=bar", "<sip:x@192.0.2.1>"],
    ["<sip:127.0.0.1;lr>;foo", "<sip:x@192.0.2.1>"],
    ["<sip:127.0.0.1;lr", "<sip:x@192.0.2.1>"],
    ["<sip:127.0.0.1;lr>>", "<sip:127.0.0.1:5060;lr>"],
    ["<<sip:127.0.0.1;lr>", "<sip:proxy.example.com;lr>"],
    ["sip:127.0.0.1;lr", "<sip:x@192.0.2.1>"],
    ["<>", "<sip:127.0.0.1;lr>"],
    ["< sip:127.0.0.1;lr >", "<sip:x@192.0.2.1>"],
    ["<sip:x@192.0.2.1;lr>", "<sip:y@192.0.2.2;lr>"],
    [",,", "<sip:127.0.0.1;lr>,"],
]


def is_myself(uri: str) -> bool:
    return uri.split(";")[0].strip() in MINE


def reference_values(values: list[str]) -> list[str]:
    """The entries as before: every header's comma-separated values, each stripped."""
    out: list[str] = []
    for v in values:
        out.extend(x for x in split_commas(v) if x)
    return [v.strip() for v in out]


def reference_split(rr: list[str], mine: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """split_route_set as before: every entry through parse_name_addr."""
    at = -1
    for i, v in enumerate(rr):
        try:
            uri = parse_name_addr(v).uri_text
        except Exception:
            continue
        if mine(uri):
            at = i
            break
    if at < 0:
        return [], []
    return rr[at + 1 :], list(reversed(rr[:at]))


@pytest.mark.parametrize("values", RECORD_ROUTES)
def test_route_sets_as_the_full_parse(values: list[str]) -> None:
    rpl = Response(
        200, "OK", [Header("Via", "SIP/2.0/UDP x")] + [Header("Record-Route", v) for v in values]
    )
    rr = record_routes(rpl)
    assert rr == reference_values(values)
    assert rr == [v.strip() for v in rpl.get_values("record-route")]
    assert split_route_set(rr, is_myself) == reference_split(rr, is_myself)
