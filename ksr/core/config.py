"""The TOML configuration, validated with pydantic.

    loadmodule = ["sl", "tm", "rr"]          # as Kamailio's loadmodule lines
    [core]                                   # core parameters, Kamailio's names
    listen = ["udp:127.0.0.1:5060"]
    [core.kemi]
    request_route_callback = "ksr_request_route"
    [modparam.tm]                            # module parameters, Kamailio's names
    fr_timer = 30000

An unknown key is an error naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

# Loaded when the config has no loadmodule list. Each module adds itself here when it lands.
DEFAULT_MODULES = [
    "sl",
    "tm",
    "tmx",
    "rr",
    "maxfwd",
    "sanity",
    "jsonrpcs",
    "siputils",
    "corex",
    "kemix",
    "textops",
    "pv",
    "xlog",
    "kex",
    "htable",
    "dialog",
    "acc",
    "usrloc",
    "registrar",
    "auth",
    "auth_db",
    "nathelper",
    "permissions",
    "pike",
]


def bundled_script(name: str) -> Path:
    """A script shipped in the package (``ksr/scripts`` links to the repository's ``scripts/``;
    the wheel carries the files there), as a real file: the engines load it and reload watches it."""
    res = importlib.resources.files("ksr") / "scripts" / name
    # A zipped install has no file to point at; the wheel is installed unpacked.
    return Path(str(res)).resolve()


DEFAULT_SCRIPT = bundled_script("default.lua")


class ConfigError(Exception):
    """A configuration problem, with the file and line when known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)
        self.file = file
        self.line = line


class KemiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_route_callback: str = "ksr_request_route"
    reply_route_callback: str = "ksr_reply_route"
    onsend_route_callback: str = "ksr_onsend_route"
    event_route_callback: str = ""
    received_route_callback: str = ""
    pre_routing_callback: str = ""


class CoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listen: list[str] = Field(default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    alias: list[str] = Field(default_factory=list)
    children: int = 1
    server_id: int = 0  # this node in a cluster: in usrloc ruids/rows and dialog ids (0-255)
    # xavps whose fields the Via of a forwarded request (corex via_add_xavp_params /
    # via_use_xavp_fields) or of a relayed reply (via_reply_add_xavp_params) takes
    xavp_via_params: str = ""
    xavp_via_fields: str = ""
    xavp_via_reply_params: str = ""
    gc_threshold: int = (
        20000  # young-generation threshold of the serving process (0 = Python's 700)
    )
    debug: int = 2  # Kamailio log levels: -3 alert .. 0 warn, 1 notice, 2 info, 3 debug
    log_stderror: bool = True  # false: syslog (ksr/core/logsetup.py)
    log_facility: str = "LOG_DAEMON"  # syslog facility when log_stderror is false
    log_name: str = "ksr"  # syslog identifier
    server_header: str = "Server: ksr"
    server_signature: bool = True
    user_agent_header: str = "User-Agent: ksr"
    sip_warning: bool = False
    tcp_max_connections: int = 2048
    tcp_connection_lifetime: int = 120
    tcp_accept_no_cl: bool = False
    max_message_size: int = 65535
    # overload: a new INVITE read when the UDP receive queue is older than this (seconds) is
    # answered 503 instead of routed; 0 = never
    shed_queue_age: float = 0.3
    # while nothing else is to do, trio's clock reads the UDP sockets itself instead of waking
    # their tasks (ksr/core/idle_wait.py); false: every datagram wakes its task
    idle_wait: bool = True
    lua_runtime: str = "lua51"  # lua51 (Kamailio's), luajit, lua54
    script_max_instructions: int = 10_000_000  # runaway-loop guard per route call (Lua)
    script_max_seconds: float = 2.0  # runaway guard per route call (Python)
    lua_max_memory: int = 256 * 1024 * 1024
    # name resolution of next hops (ksr/core/resolver.py): Kamailio's names where it has them
    dns_servers: list[str] = Field(default_factory=list)  # "ip" or "ip:port"; [] = resolv.conf
    dns_timeout: float = 5.0  # seconds one resolution (all its queries) may take
    dns_try_naptr: bool = False
    dns_srv_lb: bool = False
    dns_try_ipv6: bool = False
    use_dns_cache: bool = True
    dns_cache_min_ttl: int = 0
    dns_cache_max_ttl: int = 3600
    dns_neg_cache_ttl: int = 60
    dns_hosts_file: str = "/etc/hosts"  # names answered before DNS is asked; "" = none
    use_dns_failover: bool = False  # tm: a branch failing at transport level tries the next address
    kemi: KemiParams = Field(default_factory=KemiParams)
    defines: dict[str, str | int] = Field(
        default_factory=dict
    )  # Kamailio's #!define (KSR.kx.ifdef)

    @field_validator("log_facility")
    @classmethod
    def _log_facility(cls, v: str) -> str:
        from .logsetup import facility

        facility(v)  # ValueError naming the known ones
        return v

    @field_validator("server_id")
    @classmethod
    def _server_id(cls, v: int) -> int:
        # dialog ids keep it in their top byte (modules/dialog/table.py)
        if not 0 <= v <= 255:
            raise ValueError(
                "server_id must be 0..255 (ksr keeps it in the top byte of dialog ids)"
            )
        return v

    @field_validator("children")
    @classmethod
    def _children(cls, v: int) -> int:
        if v < 1:
            raise ValueError("children must be at least 1")
        return v


class ClusterParams(BaseModel):
    """Several nodes as one service (docs/cluster.md)."""

    model_config = ConfigDict(extra="forbid")
    # Redis shared by the nodes: redis://host:port/db?prefix=x_ (the prefix starts every key)
    redis_url: str = ""
    # signs auth nonces when auth's own secret is empty: the same on every node
    secret: str = ""
    # node heartbeats (ksr/core/cluster_nodes.py): written every interval; a node silent for
    # timeout seconds (Redis's clock) is declared dead
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0

    @model_validator(mode="after")
    def _heartbeats(self) -> ClusterParams:
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be above 0")
        if self.heartbeat_timeout < 2 * self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be at least twice heartbeat_interval")
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        if v:
            from ksr.db import DbError
            from ksr.db.url import parse_db_url

            try:
                scheme = parse_db_url(v).scheme
            except DbError as err:
                raise ValueError(str(err)) from None
            if scheme != "redis":
                raise ValueError("the cluster needs a redis:// or redis+sentinel:// URL")
        return v


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loadmodule: list[str] = Field(default_factory=lambda: list(DEFAULT_MODULES))
    mpath: list[str] = Field(default_factory=list)
    core: CoreParams = Field(default_factory=CoreParams)
    cluster: ClusterParams = Field(default_factory=ClusterParams)
    modparam: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str | None = Field(default=None, exclude=True)  # the file this came from
    _text: str = PrivateAttr(default="")  # the file's text, to point errors at a line

    def attach_source(self, path: str, text: str) -> None:
        """Remember the file this came from and its text (errors then name the line)."""
        self.source = path
        self._text = text

    def error(self, message: str, loc: list[str]) -> ConfigError:
        """A ConfigError naming this config's file and the line where ``loc`` is written."""
        return ConfigError(
            message, self.source, locate_key(self._text, loc) if self._text else None
        )

    def module_params(self, module: str, params: type[BaseModel]) -> BaseModel:
        """Validate ``[modparam.<module>]`` with the module's parameter model."""
        raw = self.modparam.get(module, {})
        try:
            return params.model_validate(raw)
        except ValidationError as err:
            e = err.errors()[0]
            loc = [str(x) for x in e["loc"]]
            if e["type"] == "extra_forbidden":
                hint = _did_you_mean(loc[-1], list(params.model_fields))
                msg = f"unknown parameter '{'.'.join(loc)}' for module {module}{hint}"
            else:
                msg = describe_error(e, loc, params)
            raise self.error(f"[modparam.{module}]: {msg}", ["modparam", module, *loc]) from None

    def script_path(self) -> Path | None:
        for mod in ("app_lua", "app_python3s", "app_python3", "app_python"):
            load = self.modparam.get(mod, {}).get("load")
            if load:
                return self.resolve(str(load))
        return None

    def resolve(self, p: str) -> Path:
        path = Path(p)
        if not path.is_absolute() and self.source:
            path = Path(self.source).parent / path
        return path


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror}", str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise ConfigError(f"invalid TOML: {err}", str(p), int(m.group(1)) if m else None) from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(x) for x in first["loc"]]
        raise ConfigError(
            describe_error(first, loc, Config), str(p), locate_key(text, loc)
        ) from None
    cfg.attach_source(str(p), text)
    return cfg


def describe_error(e: Any, loc: list[str], model: type[BaseModel] | None, prefix: str = "") -> str:
    """One pydantic error as a sentence naming the key, with a hint."""
    name = prefix + ".".join(loc)
    if e["type"] == "extra_forbidden":
        hint = _did_you_mean(loc[-1], _fields_at(model, loc[:-1]))
        if model is Config and len(loc) == 1 and not hint:
            core = list(CoreParams.model_fields)
            hint = (
                ": it belongs in the [core] table"
                if loc[0] in core
                else _did_you_mean(loc[0], core, "core.")
            )
        return f"unknown key '{name}'{hint} (see docs/configuration.md for the valid keys)"
    given = e.get("input")
    shown = f" (got {given!r})" if isinstance(given, (str, int, float, bool)) else ""
    return f"'{name}': {e['msg']}{shown}"


def _fields_at(model: type[BaseModel] | None, path: list[str]) -> list[str]:
    """The field names of the (nested) model found by following ``path`` from ``model``."""
    for part in path:
        if model is None:
            return []
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def _did_you_mean(key: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, [c for c in choices if c != "source"], n=1, cutoff=0.6)
    return f": did you mean '{prefix}{close[0]}'?" if close else ""


_HEADER = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r'^\s*("[^"]*"|[A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-"]+)*)\s*=')


def locate_key(text: str, loc: list[str]) -> int | None:
    """Line number (1-based) where the key at ``loc`` is written, if it can be found."""
    loc = [x for x in loc if not x.isdigit()]  # list items: point at the list's key
    if not loc:
        return None
    table: list[str] = []
    fallback: int | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        h = _HEADER.match(raw.strip())
        if h:
            table = [x.strip().strip('"') for x in h.group(1).split(".")]
            if table == loc:
                return n
            continue
        m = _KEY.match(raw)
        if not m:
            continue
        key = [x.strip().strip('"') for x in m.group(1).split(".")]
        full = table + key
        if full == loc or full[: len(loc)] == loc:
            return n
        if fallback is None and key[-1] == loc[-1]:
            fallback = n
    if fallback is None and len(loc) > 1:
        return locate_key(text, loc[:-1])  # at least the table the key belongs in
    return fallback
