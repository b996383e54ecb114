"""auth: digest authentication (RFC 7616/2617) for SIP — challenges, nonces and the checks
a password source (auth_db, or the script with pv_*) builds on. KSR.auth."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.db.url import parse_db_url
from ksr.kemi.registry import kemi
from ksr.modules.htable.api import HtableApi
from ksr.sip.auth_header import Credentials, format_challenge, parse_credentials
from ksr.sip.digest import (
    canonical_algorithm,
    compute_ha1,
    compute_response,
    parse_nc,
    responses_equal,
)
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Header, Message

from .cluster_nc import ClusterNonceCounts
from .failures import FailureBook, Verdict
from .nonces import NonceBook, NonceState

if TYPE_CHECKING:
    from .api import AuthApi

log = logging.getLogger("ksr.auth")

# Return codes shared with auth_db (Kamailio's auth_api.h).
AUTH_OK = 1
AUTH_ERROR = -1
AUTH_INVALID_PASSWORD = -2
AUTH_USER_UNKNOWN = -3
AUTH_STALE_NONCE = -4
AUTH_NO_CREDENTIALS = -5
AUTH_NONCE_REUSED = -6
AUTH_USER_MISMATCH = -8

# failed checks that count towards slowing and banning, with the reason logged for each (a
# reused nonce is not one: its response was right, it is a retransmission or a replay)
FAILURE_REASONS = {
    AUTH_INVALID_PASSWORD: "wrong password",
    AUTH_USER_UNKNOWN: "unknown user",
    AUTH_USER_MISMATCH: "user mismatch",
}

WWW = ("authorization", "WWW-Authenticate", 401)
PROXY = ("proxy-authorization", "Proxy-Authenticate", 407)


class AuthParams(ModParams):
    secret: str = ""  # share it between nodes so each accepts the others' nonces
    nonce_expire: int = 300
    nonce_count: int = 1  # track nonce-counts: replays get -6 (Kamailio's default is 0)
    one_time_nonce: int = 0
    qop: str = ""
    algorithm: str = "MD5"
    realm_prefix: str = ""
    force_stateless_reply: int = 0
    protect_contacts: int = 0
    nid_pool_no: int = 1
    nc_array_size: int = 1048576
    otn_in_flight_no: int = 1048576
    auth_checks_register: int = 0
    auth_checks_no_dlg: int = 0
    auth_checks_in_dlg: int = 0
    add_authinfo_hdr: int = 0
    use_next_nonce: int = 0
    disable_nonce_check: int = 0
    # ksr: failed authentications (docs/modules/auth.md)
    failed_auth_log: int = 1  # one log line per failed authentication
    failed_auth_window: int = 60  # seconds over which failures are counted
    failed_auth_slow: int = 3  # failures (per source IP or user) after which answers are delayed
    failed_auth_delay: int = 2000  # milliseconds the challenge after a failure is held back
    failed_auth_ban: int = 10  # failures after which the source IP / the user is banned; 0 never
    failed_auth_ban_time: int = 300  # seconds a ban lasts
    failed_auth_ban_htable: str = "ipban"  # banned source IPs are also put in this htable

    @field_validator("algorithm")
    @classmethod
    def _alg(cls, v: str) -> str:
        if canonical_algorithm(v) is None:
            raise ValueError(
                "unsupported digest algorithm (MD5, SHA-256, SHA-512-256, -sess variants)"
            )
        return v


@dataclass(slots=True)
class Pending:
    """Credentials that passed the syntax and nonce checks; the password check comes next."""

    cred: Credentials
    header_key: str
    header_value: str
    algorithm: str
    nc: int | None


class Auth(Module):
    name = "auth"
    Params = AuthParams

    def api(self) -> AuthApi:
        from .api import AuthApi

        return AuthApi(self)

    def may_wait(self, name: str) -> bool:
        """The pv_* checks wait only for nonce-counts on the cluster's Redis (cluster_nc.py)."""
        return self.cluster_nc is not None

    def __init__(self, server: Any, params: AuthParams) -> None:
        super().__init__(server, params)
        self.params: AuthParams = params
        self.now: Callable[[], float] = time.time
        # without auth.secret, worker processes share the supervisor's (docs/workers.md)
        # in a cluster, [cluster] secret: every node accepts the others' nonces
        cluster = server.config.cluster
        secret = (
            params.secret.encode()
            or cluster.secret.encode()
            or getattr(server, "shared_secret", None)
        )
        self.nonces = NonceBook(secret, params.nonce_expire)
        self.share("auth:nonces", self.nonces)  # worker processes: one record for all
        # nonce-counts across nodes: an atomic check-and-set on the cluster's Redis
        self.cluster_nc: ClusterNonceCounts | None = None
        if cluster.redis_url and (params.nonce_count or params.one_time_nonce):
            if not (params.secret or cluster.secret):
                log.warning(
                    "auth: [cluster] without a secret (auth secret or [cluster] secret): "
                    "the other nodes refuse this node's nonces"
                )
            self.cluster_nc = ClusterNonceCounts(
                cluster.redis_url,
                parse_db_url(cluster.redis_url).prefix,
                params.nonce_expire,
                server.stats,
            )
        self.algorithm = canonical_algorithm(params.algorithm) or "MD5"
        self.failures = FailureBook(
            params.failed_auth_window,
            params.failed_auth_slow,
            params.failed_auth_delay / 1000,
            params.failed_auth_ban,
            params.failed_auth_ban_time,
        )
        self.share("auth:failures", self.failures)  # every worker counts every failure

    # -- API for auth_db and the pv_* functions ----------------------------------------------
    def default_realm(self, ctx: MsgContext, realm: str) -> str:
        if realm:
            return realm
        try:
            hdr = ctx.msg.to if ctx.method == "REGISTER" else ctx.msg.from_
            host = hdr.uri.host
        except RemoteProtocolError:
            return ""
        p = self.params.realm_prefix
        return host[len(p) :] if p and host.startswith(p) else host

    def find_credentials(
        self, ctx: MsgContext, realm: str, hkey: str
    ) -> tuple[str, Credentials] | None:
        for value in ctx.msg.get_all(hkey):
            try:
                cred = parse_credentials(value)
            except RemoteProtocolError:
                continue
            if cred.scheme.lower() == "digest" and cred.params.get("realm") == realm:
                return value, cred
        return None

    def pre_auth(self, ctx: MsgContext, realm: str, hkey: str) -> Pending | int:
        """Find and check the credentials for ``realm``: a Pending, or a return code (after
        answering 400 itself for malformed credentials, as Kamailio does)."""
        found = self.find_credentials(ctx, realm, hkey)
        if found is None:
            return AUTH_NO_CREDENTIALS
        value, cred = found
        p = cred.params
        alg = canonical_algorithm(p.get("algorithm"))
        qop = p.get("qop")
        nc = parse_nc(p.get("nc", "")) if qop else None
        required = ("username", "nonce", "uri", "response")
        if (
            alg is None
            or any(not p.get(k) for k in required)
            or (
                qop is not None
                and (qop not in ("auth", "auth-int") or nc is None or not p.get("cnonce"))
            )
        ):
            self.server.send_reply_any(ctx, 400, "Bad Request")
            return AUTH_ERROR
        if not self.params.disable_nonce_check:
            state = self.nonces.check(p["nonce"], self.now())
            if state is not NonceState.OK:
                ctx.extra["auth_stale"] = True
                return AUTH_STALE_NONCE
        return Pending(cred, hkey, value, alg, nc)

    def check_response(
        self, ctx: MsgContext, pend: Pending, ha1: str, method: str | None = None
    ) -> bool:
        p = pend.cred.params
        body = ctx.msg.body if p.get("qop") == "auth-int" else b""
        expected = compute_response(
            pend.algorithm,
            ha1,
            p["nonce"],
            method or ctx.method,
            p["uri"],
            p.get("qop"),
            p.get("nc", ""),
            p.get("cnonce", ""),
            body,
        )
        return responses_equal(expected, p["response"])

    def post_auth(self, ctx: MsgContext, pend: Pending) -> int:
        """After a correct response: refuse replays, remember the header for consume_credentials."""
        if self.params.nonce_count or self.params.one_time_nonce:
            nonce = pend.cred.params["nonce"]
            now = self.now()
            state = self.nonces.use(nonce, pend.nc, now)  # this node's (and workers') book
            if self.cluster_nc is not None:
                info = self.nonces.codec.parse_untrusted(nonce)
                shared = self.cluster_nc.use(nonce, pend.nc, info.created if info else now, now)
                state = shared or state  # the cluster decides when its Redis answers
            if state is NonceState.REUSED:
                return AUTH_NONCE_REUSED
        ctx.extra["auth_used"] = (pend.header_key, pend.header_value)
        return AUTH_OK

    def user_matches(self, ctx: MsgContext, pend: Pending) -> bool:
        """The auth username is the user of To (REGISTER) or From (other requests)."""
        user = pend.cred.params.get("username", "").split("@", 1)[0]
        try:
            hdr = ctx.msg.to if ctx.method == "REGISTER" else ctx.msg.from_
            return (hdr.uri.user or "") == user
        except RemoteProtocolError:
            return False

    def authenticate(
        self,
        ctx: MsgContext,
        realm: str,
        hkey: str,
        ha1_of: Callable[[Pending], str | None],
        checks: int = 0,
        method: str | None = None,
    ) -> int:
        """The whole check with a password source: ``ha1_of`` gives the HA1 for the pending
        credentials or None for an unknown user."""
        pend = self.pre_auth(ctx, self.default_realm(ctx, realm), hkey)
        if isinstance(pend, int):
            # a source that failed often waits for fresh challenges too: asking for a new
            # one instead of waiting for the answer to the last guess gains nothing
            ctx.extra["auth_delay"] = self.failures.slowed([f"ip:{ctx.src_ip}"], self.now())
            return pend
        keys = self.failure_keys(ctx, pend)
        now = self.now()
        if any(self.failures.banned_until(k, now) is not None for k in keys):
            # banned: no password check; the answer is the same as for a wrong password
            self.log_failure(ctx, pend, "banned", self.failures.failures(keys[0], now))
            ctx.extra["auth_delay"] = self.failures.delay
            return AUTH_INVALID_PASSWORD
        rc = self._authenticate(ctx, pend, ha1_of, checks, method)
        if rc in FAILURE_REASONS:
            self.failed(ctx, pend, keys, FAILURE_REASONS[rc])
        return rc

    def _authenticate(
        self,
        ctx: MsgContext,
        pend: Pending,
        ha1_of: Callable[[Pending], str | None],
        checks: int,
        method: str | None,
    ) -> int:
        if checks & 1 and not self.user_matches(ctx, pend):
            return AUTH_USER_MISMATCH
        ha1 = ha1_of(pend)
        if ha1 is None:
            # spend the same work as for a known user: the reply timing must not tell
            self.check_response(ctx, pend, "0" * 32, method)
            return AUTH_USER_UNKNOWN
        if not self.check_response(ctx, pend, ha1, method):
            return AUTH_INVALID_PASSWORD
        return self.post_auth(ctx, pend)

    # -- failed authentications: log, slow down, ban -----------------------------------------
    def failure_keys(self, ctx: MsgContext, pend: Pending) -> list[str]:
        p = pend.cred.params
        user = p.get("username", "")
        if "@" not in user:
            user = f"{user}@{p.get('realm', '')}"
        return [f"ip:{ctx.src_ip}", f"user:{user}"]

    def failed(self, ctx: MsgContext, pend: Pending, keys: list[str], reason: str) -> None:
        """Count a failed check: log it, delay the next challenge, ban when too many."""
        now = self.now()
        p = pend.cred.params
        fingerprint = f"{ctx.src_ip} {p.get('nonce', '')} {p.get('response', '')}"
        if self.failures.repeated(fingerprint, now):  # a retransmission: counted already
            ctx.extra["auth_delay"] = self.failures.slowed(keys, now)
            return
        verdict = self.failures.fail(keys, now)
        self.log_failure(ctx, pend, reason, verdict.failures)
        ctx.extra["auth_delay"] = verdict.delay
        self.apply_bans(verdict)

    def apply_bans(self, verdict: Verdict) -> None:
        """Say so in the log and put banned source IPs in the htable (shared by workers)."""
        p = self.params
        for key in verdict.banned:
            kind, _, what = key.partition(":")
            if kind == "ip":
                log.warning(
                    "auth ban: src=%s for %d s after %d failed authentications in %d s",
                    what,
                    p.failed_auth_ban_time,
                    verdict.failures,
                    p.failed_auth_window,
                )
                self._ban_in_htable(what)
            else:
                log.warning(
                    "auth ban: user=%s for %d s after %d failed authentications in %d s",
                    _quote(what),
                    p.failed_auth_ban_time,
                    verdict.failures,
                    p.failed_auth_window,
                )

    def _ban_in_htable(self, ip: str) -> None:
        name = self.params.failed_auth_ban_htable
        ht = self.optional("htable", HtableApi) if name else None
        table = ht.table(name) if ht is not None else None
        if table is not None:
            table.set(ip, 1, self.params.failed_auth_ban_time)

    def log_failure(self, ctx: MsgContext, pend: Pending, reason: str, failures: int) -> None:
        if not self.params.failed_auth_log:
            return
        p = pend.cred.params
        # one line, the source first: the user and realm are the sender's text, quoted
        log.warning(
            "auth failure: src=%s port=%d proto=%s user=%s realm=%s method=%s reason=%s failures=%d",
            ctx.src_ip,
            ctx.src_port,
            ctx.proto,
            _quote(p.get("username", "")),
            _quote(p.get("realm", "")),
            _quote(ctx.method),
            _quote(reason),
            failures,
        )

    def challenge_value(self, ctx: MsgContext, realm: str, flags: int) -> str:
        params: list[tuple[str, str, bool]] = [
            ("realm", self.default_realm(ctx, realm), True),
            ("nonce", self.nonces.issue(self.now()), True),
        ]
        qop = "auth" if flags & 1 else "auth-int" if flags & 2 else self.params.qop
        if qop:
            params.append(("qop", qop, True))
        if flags & 16 or ctx.extra.get("auth_stale"):
            params.append(("stale", "true", False))
        params.append(("algorithm", self.algorithm, False))
        return format_challenge("Digest", params)

    def challenge(self, ctx: MsgContext, realm: str, flags: int, kind: tuple[str, str, int]) -> int:
        if ctx.replied:  # auth_db already answered (400 on bad credentials, 500 on a DB error)
            return -1
        line = Header(kind[1], self.challenge_value(ctx, realm, flags))
        ctx.reply_lumps.append(line)
        try:
            reason = "Unauthorized" if kind[2] == 401 else "Proxy Authentication Required"
            delay = ctx.extra.get("auth_delay", 0.0)
            if delay and ctx.tx is None:
                # slowed down after repeated failures: the challenge leaves later
                ok = self.server.send_reply_stateless(ctx, kind[2], reason, delay=delay)
            else:
                ok = self.server.send_reply_any(ctx, kind[2], reason)
        finally:
            ctx.reply_lumps.remove(line)
        if not ok and not flags & 4:
            self.server.send_reply_any(ctx, 500, "Server Internal Error")
        return 1 if ok else -1

    def _pv_authenticate(
        self,
        ctx: MsgContext,
        realm: str,
        passwd: str,
        flags: int,
        checks: int,
        kind: tuple[str, str, int],
        method: str | None = None,
    ) -> int:
        def ha1_of(pend: Pending) -> str:
            if flags & 1:
                return passwd
            user = pend.cred.params["username"]
            return compute_ha1(pend.algorithm, user, pend.cred.params.get("realm", ""), passwd)

        return self.authenticate(ctx, realm, kind[0], ha1_of, checks, method)

    # -- KSR.auth ------------------------------------------------------------------------------
    @kemi()
    def auth_challenge(self, ctx: MsgContext, realm: str, flags: int) -> int:
        """auth_challenge(realm, flags): 401 for REGISTER, 407 otherwise. Flags: 1 qop=auth,
        2 qop=auth-int, 4 no 500 on failure, 16 stale=true."""
        return self.challenge(ctx, realm, flags, WWW if ctx.method == "REGISTER" else PROXY)

    @kemi()
    def www_challenge(self, ctx: MsgContext, realm: str, flags: int) -> int:
        """www_challenge(realm, flags): 401 with WWW-Authenticate."""
        return self.challenge(ctx, realm, flags, WWW)

    @kemi()
    def proxy_challenge(self, ctx: MsgContext, realm: str, flags: int) -> int:
        """proxy_challenge(realm, flags): 407 with Proxy-Authenticate."""
        return self.challenge(ctx, realm, flags, PROXY)

    @kemi()
    def consume_credentials(self, ctx: MsgContext) -> int:
        """Remove the Authorization/Proxy-Authorization header that authenticated this request
        (from what is forwarded)."""
        used = ctx.extra.get("auth_used")
        if used is None:
            return -1
        key, value = used

        def lump(m: Message, original: Container[int]) -> None:
            for i, h in enumerate(m.headers):
                if h.key == key and h.value == value:
                    del m.headers[i]
                    break

        ctx.add_lump(lump)
        return 1

    @kemi()
    def has_credentials(self, ctx: MsgContext, realm: str) -> int:
        """has_credentials(realm): 1 if the request carries digest credentials for realm."""
        r = self.default_realm(ctx, realm)
        for hkey in ("authorization", "proxy-authorization"):
            if self.find_credentials(ctx, r, hkey) is not None:
                return 1
        return -1

    @kemi(suspends=True)
    def pv_auth_check(
        self, ctx: MsgContext, realm: str, passwd: str, flags: int, checks: int
    ) -> int:
        """pv_auth_check(realm, password, flags, checks): flags 1 = password is HA1; checks 1 =
        auth user must match To (REGISTER) / From."""
        kind = WWW if ctx.method == "REGISTER" else PROXY
        return self._pv_authenticate(ctx, realm, passwd, flags, checks, kind)

    @kemi(suspends=True)
    def pv_www_authenticate(self, ctx: MsgContext, realm: str, passwd: str, flags: int) -> int:
        """pv_www_authenticate(realm, password, flags): check Authorization."""
        return self._pv_authenticate(ctx, realm, passwd, flags, 0, WWW)

    @kemi(suspends=True)
    def pv_www_authenticate_method(
        self, ctx: MsgContext, realm: str, passwd: str, flags: int, method: str
    ) -> int:
        """pv_www_authenticate_method(realm, password, flags, method)."""
        return self._pv_authenticate(ctx, realm, passwd, flags, 0, WWW, method)

    @kemi(suspends=True)
    def pv_proxy_authenticate(self, ctx: MsgContext, realm: str, passwd: str, flags: int) -> int:
        """pv_proxy_authenticate(realm, password, flags): check Proxy-Authorization."""
        return self._pv_authenticate(ctx, realm, passwd, flags, 0, PROXY)

    @kemi()
    def auth_get_www_authenticate(
        self, ctx: MsgContext, realm: str, flags: int, pvdest: str
    ) -> int:
        """auth_get_www_authenticate(realm, flags, pvdest): the challenge value into a PV."""
        return 1 if self.server.pv.set(ctx, pvdest, self.challenge_value(ctx, realm, flags)) else -1

    @kemi()
    def auth_algorithm(self, ctx: MsgContext, alg: str) -> int:
        """auth_algorithm(alg): digest algorithm of the next challenges (MD5, SHA-256...)."""
        a = canonical_algorithm(alg)
        if a is None:
            return -1
        self.algorithm = a
        return 1


def _quote(text: str, limit: int = 64) -> str:
    """A sender's text for a log line: quoted, escaped (no line breaks), bounded."""
    return json.dumps(text[:limit], ensure_ascii=True)


MODULE = Auth
