"""``httpcon`` connection definitions: ``name=>scheme://[user:password@]host[:port][/path][;param=value...]``
(Kamailio's syntax). The URL given to curl_connect() is appended to the connection's base URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

PARAMS = {
    "timeout": int,
    "maxdatasize": int,
    "httpredirect": int,
    "useragent": str,
    "verify_peer": int,
    "verify_host": int,
    "failover": str,
    "keep_connections": int,
}


class ConnError(ValueError):
    """A bad httpcon definition (start-up refuses it, naming it)."""


@dataclass(slots=True)
class Conn:
    name: str
    scheme: str
    base: str  # host[:port][/path], without credentials
    username: str = ""
    password: str = ""
    timeout: int | None = None  # in the module's timeout_mode units; None = module default
    maxdatasize: int | None = None
    httpredirect: int | None = None
    useragent: str | None = None
    verify_peer: int | None = None
    verify_host: int | None = None
    failover: str = ""
    keep_connections: int | None = None

    def url_for(self, path: str) -> str:
        if not path:
            return f"{self.scheme}://{self.base}"
        sep = "" if path.startswith("/") else "/"
        return f"{self.scheme}://{self.base}{sep}{path}"


def parse_conn(spec: str) -> Conn:
    name, sep, rest = spec.partition("=>")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise ConnError(f"httpcon {spec!r}: expected name=>scheme://host/path")
    url, *params = rest.strip().split(";")
    scheme, sep, hostpart = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not hostpart:
        raise ConnError(f"httpcon {name}: {url!r} is not an http:// or https:// URL")
    user = pw = ""
    if "@" in hostpart.split("/", 1)[0]:
        cred, _, hostpart = hostpart.partition("@")
        user, _, pw = cred.partition(":")
    conn = Conn(name, scheme.lower(), hostpart, unquote(user), unquote(pw))
    for p in params:
        if not p.strip():
            continue
        key, _, value = p.partition("=")
        key = key.strip()
        kind = PARAMS.get(key)
        if kind is None:
            raise ConnError(f"httpcon {name}: unknown parameter {key!r}")
        try:
            setattr(conn, key, kind(value.strip()))
        except ValueError:
            raise ConnError(f"httpcon {name}: {key}={value!r} must be a number") from None
    return conn
