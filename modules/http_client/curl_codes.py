"""Kamailio's http_client answers a transport failure with libcurl's error code (below 100)
instead of an HTTP status; ``$curlerror(code)`` names it. The codes (libcurl-errors) and how an
httpx failure maps onto them."""

from __future__ import annotations

import ssl

import httpx

UNSUPPORTED_PROTOCOL = 1
URL_MALFORMAT = 3
COULDNT_RESOLVE_HOST = 6
COULDNT_CONNECT = 7
WEIRD_SERVER_REPLY = 8
TOO_MANY_REDIRECTS = 47
OPERATION_TIMEDOUT = 28
SSL_CONNECT_ERROR = 35
GOT_NOTHING = 52
SEND_ERROR = 55
RECV_ERROR = 56
PEER_FAILED_VERIFICATION = 60

TEXT = {
    0: "No error",
    UNSUPPORTED_PROTOCOL: "Unsupported protocol",
    URL_MALFORMAT: "URL using bad/illegal format or missing URL",
    COULDNT_RESOLVE_HOST: "Couldn't resolve host name",
    COULDNT_CONNECT: "Couldn't connect to server",
    WEIRD_SERVER_REPLY: "Weird server reply",
    OPERATION_TIMEDOUT: "Timeout was reached",
    SSL_CONNECT_ERROR: "SSL connect error",
    TOO_MANY_REDIRECTS: "Number of redirects hit maximum amount",
    GOT_NOTHING: "Server returned nothing (no headers, no data)",
    SEND_ERROR: "Failed sending data to the peer",
    RECV_ERROR: "Failure when receiving data from the peer",
    PEER_FAILED_VERIFICATION: "SSL peer certificate or SSH remote key was not OK",
}


def describe(code: int) -> str:
    """``$curlerror(code)``."""
    if code < 0 or code > 999:
        return "Bad CURL error code"
    if code > 99:
        return "HTTP result code"
    return TEXT.get(code, f"Unknown error ({code})")


def code_of(err: Exception) -> int:
    """The libcurl code for an httpx failure."""
    if isinstance(err, httpx.TimeoutException):
        return OPERATION_TIMEDOUT
    if isinstance(err, httpx.TooManyRedirects):
        return TOO_MANY_REDIRECTS
    if isinstance(err, httpx.UnsupportedProtocol):
        return UNSUPPORTED_PROTOCOL
    if isinstance(err, httpx.InvalidURL | httpx.LocalProtocolError):
        return URL_MALFORMAT
    if isinstance(err, httpx.ConnectError):
        text = str(err).lower()
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ssl.SSLCertVerificationError) or "certificate" in text:
            return PEER_FAILED_VERIFICATION
        if isinstance(cause, ssl.SSLError) or "ssl" in text:
            return SSL_CONNECT_ERROR
        if "name or service" in text or "nodename" in text or "resolve" in text:
            return COULDNT_RESOLVE_HOST
        return COULDNT_CONNECT
    if isinstance(err, httpx.RemoteProtocolError):
        return GOT_NOTHING if "without sending" in str(err) else WEIRD_SERVER_REPLY
    if isinstance(err, httpx.WriteError):
        return SEND_ERROR
    if isinstance(err, httpx.ReadError):
        return RECV_ERROR
    return COULDNT_CONNECT
