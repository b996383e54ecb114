"""The sans-IO SIP core: parsing, serializing and building messages. Never imports trio."""

from .errors import LocalProtocolError, RemoteProtocolError, SipProtocolError
from .headers import NameAddr, Via, parse_name_addr, parse_via
from .message import Header, Message, Request, Response, parse_message_untrusted
from .uri import Uri, parse_uri

__all__ = [
    "Header",
    "LocalProtocolError",
    "Message",
    "NameAddr",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipProtocolError",
    "Uri",
    "Via",
    "parse_message_untrusted",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]
