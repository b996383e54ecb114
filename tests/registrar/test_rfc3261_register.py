"""RFC 3261 §10.3 REGISTER processing, table-driven, through a real server over UDP."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ksr.sip.message import Response
from tests.registrar.helpers import contacts_of, exchange, invite, register
from tests.registrar.scripts import script
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

A = "<sip:alice@127.0.0.1:5555>"
B = "<sip:alice@127.0.0.1:6666>"


@dataclass
class Step:
    kw: dict[str, Any]  # register() arguments, or {"invite": True}
    status: int
    contacts: list[str] | None = None  # regexes, in order, for the reply's Contact values
    headers: dict[str, str] = field(default_factory=dict)  # header -> expected value
    check: Callable[[Response], None] | None = None


def reg(
    status: int, want: list[str] | None = None, headers: dict[str, str] | None = None, **kw: Any
) -> Step:
    """A REGISTER step; ``want`` are regexes for the reply's Contact values."""
    return Step(kw, status, want, headers or {})


def lookup(status: int, contacts: list[str] | None = None) -> Step:
    return Step({"invite": True}, status, contacts)


def err(info: str) -> dict[str, str]:
    return {"P-Registrar-Error": info}


CASES: dict[str, tuple[dict[str, Any], list[Step]]] = {
    "default expires and lookup": (
        {},
        [
            reg(200, [r"<sip:alice@127\.0\.0\.1:5555>;expires=3600$"], contacts=[A]),
            lookup(302, [r"<sip:alice@127\.0\.0\.1:5555>"]),
        ],
    ),
    "Expires header": (
        {},
        [reg(200, [r";expires=120$"], contacts=[A], extra=["Expires: 120"])],
    ),
    "contact expires wins over header": (
        {},
        [reg(200, [r";expires=300$"], contacts=[A + ";expires=300"], extra=["Expires: 120"])],
    ),
    "below min_expires is raised": (
        {"min_expires": 60},
        [reg(200, [r";expires=60$"], contacts=[A], extra=["Expires: 30"])],
    ),
    "min_expires_mode 1 answers 423": (
        {"min_expires": 60, "min_expires_mode": 1},
        [reg(423, headers={"Min-Expires": "60"}, contacts=[A], extra=["Expires: 30"]), lookup(404)],
    ),
    "max_expires clamps": (
        {"max_expires": 600},
        [reg(200, [r";expires=600$"], contacts=[A], extra=["Expires: 7200"])],
    ),
    "bad Expires header": (
        {},
        [
            reg(400, headers=err("Expires parse error"), contacts=[A], extra=["Expires: soon"]),
            lookup(404),
        ],
    ),
    "bad contact expires": (
        {},
        [
            reg(400, headers=err("Invalid expires param in contact"), contacts=[A + ";expires=x"]),
            lookup(404),
        ],
    ),
    "malformed Contact": (
        {},
        [
            reg(400, headers=err("Contact parse error"), contacts=["<sip:alice@127.0.0.1:5555"]),
            lookup(404),
        ],
    ),
    "malformed second Contact stores nothing": (
        {},
        [reg(400, headers=err("Contact parse error"), contacts=[A, '"x <sip:b@h>']), lookup(404)],
    ),
    "bad q": (
        {},
        [reg(400, headers=err("Invalid q param in contact"), contacts=[A + ";q=1.5"]), lookup(404)],
    ),
    "star with Expires 0 removes all": (
        {},
        [
            reg(200, contacts=[A, B], call_id="c1"),
            reg(200, [], contacts=["*"], extra=["Expires: 0"], call_id="c1", cseq=2),
            lookup(404),
        ],
    ),
    "star without Expires 0": (
        {},
        [
            reg(200, contacts=[A]),
            reg(
                400,
                headers=err("* used in contact and expires is not zero"),
                contacts=["*"],
                extra=["Expires: 10"],
                cseq=2,
            ),
            lookup(302),
        ],
    ),
    "star with another contact": (
        {},
        [
            reg(
                400,
                headers=err("* used in contact and more than 1 contact"),
                contacts=["*", A],
                extra=["Expires: 0"],
            )
        ],
    ),
    "lower CSeq same Call-ID": (
        {},
        [
            reg(200, contacts=[A], cseq=5),
            reg(400, headers=err("Invalid CSeq number"), contacts=[A + ";expires=0"], cseq=4),
            lookup(302),
        ],
    ),
    "same CSeq is a retransmission": (
        {},
        [
            reg(200, contacts=[A], cseq=5),
            reg(200, [r"<sip:alice@127\.0\.0\.1:5555>"], contacts=[A], cseq=5),
        ],
    ),
    "new Call-ID may use a lower CSeq": (
        {},
        [
            reg(200, contacts=[A], cseq=5, call_id="x1"),
            reg(200, contacts=[A], cseq=1, call_id="x2"),
        ],
    ),
    "max_contacts": (
        {"max_contacts": 1, "retry_after": 30},
        [
            reg(200, contacts=[A], call_id="m1"),
            reg(
                503,
                headers={**err("Too many registered contacts"), "Retry-After": "30"},
                contacts=[B],
                call_id="m2",
            ),
            lookup(302, [r"5555"]),
        ],
    ),
    "q ordering": (
        {},
        [reg(200, contacts=[A + ";q=0.2", B + ";q=0.9"]), lookup(302, [r"6666", r"5555"])],
    ),
    "contact expires=0 removes one": (
        {},
        [
            reg(200, contacts=[A, B]),
            reg(200, [r"6666"], contacts=[A + ";expires=0"], cseq=2),
            lookup(302, [r"6666"]),
        ],
    ),
    "no Contact lists bindings": (
        {},
        [reg(200, contacts=[A]), reg(200, [r"5555.*;expires="], contacts=[], cseq=2)],
    ),
    "Path stored and echoed": (
        {"use_path": 1},
        [
            reg(
                200,
                headers={"Path": "<sip:edge.example.com;lr>"},
                contacts=[A],
                extra=["Path: <sip:edge.example.com;lr>", "Supported: path"],
            )
        ],
    ),
    "Path without Supported path (path_mode 2)": (
        {"use_path": 1},
        [
            reg(
                420,
                headers=err("No support for found Path indicated"),
                contacts=[A],
                extra=["Path: <sip:edge.example.com;lr>"],
            ),
            lookup(404),
        ],
    ),
    "method filtering": (
        {"method_filtering": 1},
        [reg(200, contacts=[A], extra=["Allow: MESSAGE, OPTIONS"]), lookup(405)],
    ),
    "instance and reg-id replace the binding": (
        {},
        [
            reg(200, contacts=[A + ';+sip.instance="<urn:uuid:1>";reg-id=1'], call_id="o1"),
            reg(
                200,
                [r"6666.*\+sip\.instance=\"<urn:uuid:1>\";reg-id=1"],
                contacts=[B + ';+sip.instance="<urn:uuid:1>";reg-id=1'],
                call_id="o2",
            ),
            lookup(302, [r"6666"]),
        ],
    ),
    "q in 200 OK": ({}, [reg(200, [r";q=0\.5"], contacts=[A + ";q=0.5"])]),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_register(tmp_path: Path, name: str) -> None:
    params, steps = CASES[name]
    suffix, text = script("lua")
    cfg = make_config(["sl", "usrloc", "registrar"], {"registrar": params})
    async with running_server(cfg, write_script(tmp_path, text, suffix)) as server:
        peer = await UdpPeer().bind()
        addr = udp_addr(server)
        for i, st in enumerate(steps):
            if st.kw.get("invite"):
                msg = invite(peer.port, "sip:alice@127.0.0.1", call_id=f"inv{i}")
            else:
                msg = register(peer.port, **st.kw)
            rpl = await exchange(peer, addr, msg)
            where = f"{name} step {i}"
            assert rpl.status == st.status, (
                f"{where}: {rpl.status} {rpl.reason} {rpl.get('P-Registrar-Error')}"
            )
            for h, v in st.headers.items():
                assert rpl.get(h) == v, f"{where}: {h}: {rpl.get(h)!r}"
            if st.contacts is not None:
                got = contacts_of(rpl)
                assert len(got) == len(st.contacts), f"{where}: {got}"
                for pat, value in zip(st.contacts, got, strict=True):
                    assert re.search(pat, value), f"{where}: {value!r} !~ {pat}"
        peer.close()
