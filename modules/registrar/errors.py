"""Why a REGISTER was refused: the SIP status and the P-Registrar-Error text (Kamailio's
reply.c names), e.g. ``400`` with ``P-Registrar-Error: Invalid CSeq number``."""

from __future__ import annotations


class RegError(Exception):
    def __init__(self, code: int, info: str, headers: tuple[str, ...] = ()) -> None:
        super().__init__(info)
        self.code = code
        self.info = info
        self.headers = headers  # extra reply header lines (Min-Expires, Retry-After)


def parse_error() -> RegError:
    return RegError(400, "Message parse error")


TO_USER = (400, "No username in To URI")
AOR_PARSE = (400, "Error while parsing AOR")
PARSE_EXP = (400, "Expires parse error")
INV_EXP = (400, "Invalid expires param in contact")
INV_Q = (400, "Invalid q param in contact")
PARSE_CONT = (400, "Contact parse error")
STAR_EXP = (400, "* used in contact and expires is not zero")
STAR_CONT = (400, "* used in contact and more than 1 contact")
INV_CSEQ = (400, "Invalid CSeq number")
CONTACT_LEN = (400, "Contact/received too long")
CALLID_LEN = (400, "Callid too long")
PARSE_PATH = (400, "Path parse error")
INV_REGID = (400, "Invalid Reg-Id")
PATH_UNSUP = (420, "No support for found Path indicated")
LOW_EXP = (423, "Interval too brief")
TOO_MANY = (503, "Too many registered contacts")
UL_FAIL = (500, "usrloc_contact_insert failed")
UL_GET = (500, "usrloc_record_get failed")
UL_DEL = (500, "usrloc_contact_delete failed")


def err(pair: tuple[int, str], *headers: str) -> RegError:
    return RegError(pair[0], pair[1], headers)
