"""dialog's first_contact: the URI a leg's requests go to, read off the first Contact."""

from __future__ import annotations

import pytest

from ksr.modules.dialog.requests import first_contact
from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.message import Header, Request

CONTACTS = [
    "sip:sipp@127.0.0.1:5061;transport=UDP",
    "<sip:127.0.0.1:5062;transport=UDP>",
    "  <sip:b@192.0.2.7:5070>;expires=60 ",
    '<sip:b@192.0.2.7>;+sip.instance="<urn:uuid:1>"',
    "Bob <sip:b@192.0.2.7>",
    '"Bob, B." <sip:b@192.0.2.7>',
    "<sip:a@x>, <sip:b@y>",
    "sip:a@x , sip:b@y",
    "<sip:a@x",
    "<sip:a@x> garbage",
    "<sip:a@x>;",
    "<>",
    "sip:a@x;lr;",
    "   ",
    "*",
]


def reference(value: str) -> str:
    """What first_contact answered by parsing every Contact in full."""
    try:
        return parse_name_addr(split_commas(value)[0]).uri_text
    except Exception:
        return ""


@pytest.mark.parametrize("value", CONTACTS)
def test_first_contact_as_the_full_parse(value: str) -> None:
    req = Request("INVITE", "sip:b@y", [Header("Contact", value)])
    assert first_contact(req) == reference(value)


def test_first_contact_without_contact() -> None:
    assert first_contact(Request("INVITE", "sip:b@y", [])) == ""
