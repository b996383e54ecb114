"""tls: certificates and verification for ``tls:`` and ``wss:`` listeners and outbound TLS.

Kamailio's tls module parameters, simplified to one profile for every TLS socket (no tls.cfg
domains): ``certificate``, ``private_key``, ``ca_list``, ``verify_certificate``,
``require_certificate``, ``tls_method``, ``cipher_list``, ``server_name``.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from ksr.core.config import ConfigError
from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.rpc import rpc
from ksr.kemi.registry import kemi
from ksr.transport.hooks import hooks
from ksr.transport.tls import peer_certificate

log = logging.getLogger("ksr.tls")

# tls_method → (minimum, maximum) protocol version; "+" means "or newer".
METHODS: dict[str, tuple[ssl.TLSVersion, ssl.TLSVersion]] = {
    "TLSv1": (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1),
    "TLSv1+": (ssl.TLSVersion.TLSv1, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    "TLSv1.1": (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1),
    "TLSv1.1+": (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    "TLSv1.2": (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
    "TLSv1.2+": (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    "TLSv1.3": (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
    "TLSv1.3+": (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    "SSLv23": (ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.MAXIMUM_SUPPORTED),
}


class TlsParams(ModParams):
    tls_method: str = "TLSv1.2+"
    certificate: str = ""  # PEM file (server and client certificate)
    private_key: str = ""  # PEM file; empty = the key is in the certificate file
    ca_list: str = ""  # PEM file of trusted CAs (peer verification)
    ca_path: str = ""  # folder of trusted CAs
    crl: str = ""  # accepted for Kamailio configs; not checked
    verify_certificate: int = 0  # verify the server's certificate when ksr connects out
    verify_depth: int = 9  # accepted; OpenSSL's default chain depth applies
    require_certificate: int = 0  # ask TLS clients for a certificate and refuse those without
    cipher_list: str = ""
    server_name: str = ""  # SNI sent on outbound connections (default: the target host name)
    connection_timeout: int = 600  # accepted; tcp_connection_lifetime applies
    config: str = ""  # Kamailio's tls.cfg is not read by ksr


class Tls(Module):
    name = "tls"
    Params = TlsParams

    def init(self) -> None:
        if self.params.config:
            log.warning(
                "tls: the 'config' file (tls.cfg) is not read by ksr; use the module parameters"
            )
        self._server_ctx: ssl.SSLContext | None = None
        self._client_ctx: ssl.SSLContext | None = None
        try:
            self._client_ctx = self._make(server=False)
            if self.params.certificate:
                self._server_ctx = self._make(server=True)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise ConfigError(f"[modparam.tls]: {err}", self.server.config.source) from None
        hooks(self.server).tls = self

    def _path(self, p: str) -> str:
        return str(self.server.config.resolve(p))

    def _make(self, server: bool) -> ssl.SSLContext:
        p = self.params
        if p.tls_method not in METHODS:
            raise ValueError(f"unknown tls_method {p.tls_method!r} (one of {', '.join(METHODS)})")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version, ctx.maximum_version = METHODS[p.tls_method]
        if p.cipher_list:
            ctx.set_ciphers(p.cipher_list)
        if p.certificate:
            ctx.load_cert_chain(
                self._path(p.certificate), self._path(p.private_key) if p.private_key else None
            )
        if p.ca_list or p.ca_path:
            ctx.load_verify_locations(
                cafile=self._path(p.ca_list) if p.ca_list else None,
                capath=self._path(p.ca_path) if p.ca_path else None,
            )
        elif not server:
            ctx.load_default_certs()
        if server:
            ctx.verify_mode = (
                ssl.CERT_REQUIRED
                if p.require_certificate
                else (
                    ssl.CERT_OPTIONAL
                    if p.verify_certificate and (p.ca_list or p.ca_path)
                    else ssl.CERT_NONE
                )
            )
        else:
            # SIP peers are mostly addressed by IP: the chain is verified, not the host name
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_REQUIRED if p.verify_certificate else ssl.CERT_NONE
        return ctx

    def server_name(self) -> str:
        return self.params.server_name

    def server_context(self) -> ssl.SSLContext:
        if self._server_ctx is None:
            raise OSError("tls: no 'certificate' set: TLS listeners need one")
        return self._server_ctx

    def client_context(self) -> ssl.SSLContext:
        assert self._client_ctx is not None
        return self._client_ctx

    def _conn_cert(self, ctx: MsgContext) -> dict[str, Any] | None:
        t = self.server.transports.get(ctx.proto)
        conn = t.connection(ctx.conn_id) if t is not None and ctx.conn_id else None
        return peer_certificate(conn.stream) if conn is not None else None

    @kemi()
    def is_peer_verified(self, ctx: MsgContext) -> int:
        """1 if the message came over TLS from a peer whose certificate was verified."""
        if ctx.proto not in ("tls", "wss"):
            return -1
        return 1 if self._conn_cert(ctx) else -1

    @rpc("tls.info")
    def rpc_info(self) -> dict[str, int]:
        """Counts of TLS connections."""
        n = 0
        for proto in ("tls", "wss"):
            t = self.server.transports.get(proto)
            if t is not None:
                n = sum(1 for c in t.table.by_id.values() if c.proto in ("tls", "wss"))
        return {
            "max_connections": self.server.config.core.tcp_max_connections,
            "opened_connections": n,
            "clear_text_write_queued_bytes": 0,
        }


MODULE = Tls
