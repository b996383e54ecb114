"""auth_db: digest authentication against the subscriber table in the configured database.
KSR.auth_db."""

from __future__ import annotations

import logging
from typing import Any

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.db import DEFAULT_DB_URL, DbError, Row, store_for
from ksr.kemi.registry import kemi
from ksr.modules.auth.api import AUTH_ERROR, PROXY, WWW, AuthApi, Pending
from ksr.sip.digest import compute_ha1
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.uri import parse_uri

from .subscribers import Subscribers

log = logging.getLogger("ksr.auth_db")


class AuthDbParams(ModParams):
    db_url: str = DEFAULT_DB_URL
    calculate_ha1: int = 0
    password_column: str = "ha1"
    password_column_2: str = "ha1b"
    user_column: str = "username"
    domain_column: str = "domain"
    use_domain: int = 0
    load_credentials: str = ""
    version_table: int = 1


class DbUnreachable(Exception):
    pass


class AuthDb(Module):
    name = "auth_db"
    Params = AuthDbParams
    depends = ("auth",)

    def __init__(self, server: Any, params: AuthDbParams) -> None:
        super().__init__(server, params)
        self.params: AuthDbParams = params
        self.tables: dict[str, Subscribers] = {}
        self.load = _parse_load_credentials(params.load_credentials)

    def init(self) -> None:
        self.auth = self.require("auth", AuthApi)

    def table(self, name: str) -> Subscribers:
        t = self.tables.get(name)
        if t is None:
            store = store_for(self.server, self.params.db_url)
            extra = tuple(col for _, col in self.load)
            if self.params.calculate_ha1:
                extra += (self.params.password_column,)
            t = self.tables[name] = Subscribers(store, name, extra)
        return t

    def find(self, table: str, user: str, domain: str) -> Row | None:
        """The subscriber row, None if unknown; DbUnreachable when the database fails."""
        try:
            return self.table(table).lookup(user, domain if self.params.use_domain else None)
        except DbError as err:
            log.error("auth_db: subscriber lookup failed: %s", err)
            raise DbUnreachable(str(err)) from None

    def _ha1(self, row: Row, pend: Pending) -> str | None:
        p = self.params
        cred = pend.cred.params
        user, realm = cred["username"], cred.get("realm", "")
        if p.calculate_ha1:
            col = p.password_column if p.password_column not in ("ha1", "ha1b") else "password"
            pw = row.get(col)
            return None if pw is None else compute_ha1(pend.algorithm, user, realm, str(pw))
        if pend.algorithm.startswith("SHA-256"):
            v = row.get("ha1_sha256")
            if v is None and row.get("password") is not None:
                return compute_ha1(pend.algorithm, user, realm, str(row["password"]))
            return None if v is None else str(v)
        col = p.password_column_2 if "@" in user else p.password_column
        v = row.get(col)
        return None if v is None else str(v)

    def _check(
        self,
        ctx: MsgContext,
        realm: str,
        table: str,
        flags: int,
        kind: tuple[str, str, int],
        method: str | None = None,
    ) -> int:
        loaded: dict[str, Row] = {}

        def ha1_of(pend: Pending) -> str | None:
            user = pend.cred.params["username"]
            domain = pend.cred.params.get("realm", "")
            if "@" in user:
                user, _, domain = user.partition("@")
            row = self.find(table, user, domain)
            if row is None:
                return None
            loaded["row"] = row
            return self._ha1(row, pend)

        try:
            rc = self.auth.authenticate(ctx, realm, kind[0], ha1_of, flags & 1, method)
        except DbUnreachable:
            self.server.send_reply_any(ctx, 500, "Server Internal Error")
            return AUTH_ERROR
        if rc == 1 and "row" in loaded:
            for avp, col in self.load:
                v = loaded["row"].get(col)
                if v is not None:
                    ctx.avps.setdefault(avp, []).append(v if isinstance(v, int | str) else str(v))
        return rc

    @kemi(suspends=True)
    def auth_check(self, ctx: MsgContext, realm: str, table: str, flags: int) -> int:
        """auth_check(realm, table, flags): Authorization for REGISTER, Proxy-Authorization
        otherwise, against the subscriber table. 1 ok; -1 error, -2 bad password, -3 unknown
        user, -4 stale nonce, -5 no credentials, -6 nonce reused, -8 user mismatch (flags 1)."""
        kind = WWW if ctx.method == "REGISTER" else PROXY
        return self._check(ctx, realm, table, flags, kind)

    @kemi(suspends=True)
    def www_authenticate(self, ctx: MsgContext, realm: str, table: str) -> int:
        """www_authenticate(realm, table): check the Authorization header."""
        return self._check(ctx, realm, table, 0, WWW)

    @kemi(suspends=True)
    def www_authenticate_method(self, ctx: MsgContext, realm: str, table: str, method: str) -> int:
        """www_authenticate_method(realm, table, method): as www_authenticate, digest over method."""
        return self._check(ctx, realm, table, 0, WWW, method)

    @kemi(suspends=True)
    def is_subscriber(self, ctx: MsgContext, uri: str, table: str, flags: int) -> int:
        """is_subscriber(uri, table, flags): 1 if the URI's user (and domain with use_domain)
        is in the table, -1 if not, -2 on a database error."""
        try:
            text = str(self.server.pv.expand(ctx, uri)) if "$" in uri else uri
            u = parse_uri(text.strip("<>"))
        except RemoteProtocolError:
            return -1
        if not u.user:
            return -1
        try:
            row = self.find(table, u.user, u.host)
        except DbUnreachable:
            return -2
        if row is None:
            return -1
        if flags & 1:
            for avp, col in self.load:
                v = row.get(col)
                if v is not None:
                    ctx.avps.setdefault(avp, []).append(v if isinstance(v, int | str) else str(v))
        return 1


def _parse_load_credentials(spec: str) -> list[tuple[str, str]]:
    """``$avp(email)=email_address; rpid`` -> [("email", "email_address"), ("rpid", "rpid")]."""
    out: list[tuple[str, str]] = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, col = part.partition("=")
        name = name.strip()
        if name.startswith("$avp(") and name.endswith(")"):
            name = name[5:-1]
        out.append((name, (col if eq else name).strip()))
    return out


MODULE = AuthDb
