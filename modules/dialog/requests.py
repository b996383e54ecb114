"""Learning the legs of a dialog from its INVITE and 2xx, and building the BYEs ksr sends.

Route sets (RFC 3261 §12.1): the Record-Route list of the 2xx, in order, is the caller's route
set; reversed, the callee's. ksr keeps only the part beyond its own entry on each side, because
a request ksr sends itself starts at ksr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ksr.sip.headers import header_key, parse_name_addr, split_commas
from ksr.sip.message import Header, Message, Request

from .model import Dialog, Leg


def first_contact(msg: Message) -> str:
    """The URI of the first Contact ("" when there is none or it does not parse)."""
    raw = msg.get("contact")
    if not raw:
        return ""
    if "," not in raw and '"' not in raw:
        # one Contact without a quoted name: its URI read off as parse_name_addr finds it,
        # without parsing its parameters (the INVITE's and the 2xx's, ~4k instructions each)
        v = raw.strip()
        lt = v.find("<")
        if lt < 0:  # addr-spec: everything after the first ';' is a header parameter
            return v.partition(";")[0].strip()
        if lt == 0:
            gt = v.find(">")
            rest = v[gt + 1 :].strip()
            if gt < 0 or (rest and not rest.startswith(";")):
                return ""  # unbalanced <, or something after the address: no Contact
            return v[1:gt]
    try:
        return parse_name_addr(split_commas(raw)[0]).uri_text
    except Exception:
        return ""


RECORD_ROUTE: Final = header_key("Record-Route")


def record_routes(msg: Message) -> list[str]:
    """The Record-Route entries, in order (``get_values``, each stripped): one pass over the
    headers, a value without a comma taken as it is."""
    out: list[str] = []
    for h in msg.headers:
        if h.key == RECORD_ROUTE:
            v = h.value
            if "," in v:
                out.extend([x.strip() for x in split_commas(v) if x])
            else:
                v = v.strip()
                if v:
                    out.append(v)
    return out


def split_route_set(rr: list[str], is_myself: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(entries before ours = toward the caller, entries after ours = toward the callee), each in
    the order a request heading that way lists them in Route."""
    mine = -1
    for i, v in enumerate(rr):
        if v.startswith("<") and v.find(">") == len(v) - 1:
            # <uri> alone (as proxies write it): the URI parse_name_addr finds, read off
            uri = v[1:-1]
        else:
            try:
                uri = parse_name_addr(v).uri_text
            except Exception:
                continue
        if is_myself(uri):
            mine = i
            break
    if mine < 0:
        return [], []
    toward_callee = rr[:mine]  # added by proxies downstream of us, nearest first when reversed
    toward_caller = rr[mine + 1 :]
    return toward_caller, toward_callee[::-1]


def build_bye(dlg: Dialog, to_callee: bool, user_agent: str = "") -> tuple[Request, str] | None:
    """A BYE from ksr to one side of a confirmed dialog (no Via yet: the sender adds it), with
    the URI to send it to (first Route if any, else the contact). None if the side is unknown."""
    target: Leg = dlg.callee if to_callee else dlg.caller
    other: Leg = dlg.caller if to_callee else dlg.callee
    if not target.contact:
        return None
    if to_callee:
        from_hdr = f"<{dlg.from_uri}>;tag={dlg.caller.tag}"
        to_hdr = f"<{dlg.to_uri}>" + (f";tag={dlg.callee.tag}" if dlg.callee.tag else "")
    else:
        from_hdr = f"<{dlg.to_uri}>" + (f";tag={dlg.callee.tag}" if dlg.callee.tag else "")
        to_hdr = f"<{dlg.from_uri}>;tag={dlg.caller.tag}"
    try:
        cseq = int(other.cseq or "0") + 1
    except ValueError:
        cseq = 1
    other.cseq = str(cseq)
    headers = [
        Header("Max-Forwards", "70"),
        Header("From", from_hdr),
        Header("To", to_hdr),
        Header("Call-ID", dlg.callid),
        Header("CSeq", f"{cseq} BYE"),
    ]
    routes = split_commas(target.route_set) if target.route_set else []
    for r in routes:
        headers.append(Header("Route", r))
    if user_agent:
        name, _, value = user_agent.partition(":")
        headers.append(Header(name.strip(), value.strip()))
    headers.append(Header("Content-Length", "0"))
    req = Request("BYE", target.contact, headers)
    next_hop = target.contact
    if routes:
        try:
            na = parse_name_addr(routes[0])
            if "lr" in na.uri.params:
                next_hop = na.uri_text
            else:  # strict router (RFC 3261 §12.2.1.1)
                req.uri = na.uri_text
                req.headers = [h for h in req.headers if h.key != "route"]
                for r in routes[1:] + [f"<{target.contact}>"]:
                    req.headers.insert(-1, Header("Route", r))
                next_hop = na.uri_text
        except Exception:
            pass
    return req, next_hop
