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

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Loaded when the config has no loadmodule list. Each module adds itself here when it lands.
DEFAULT_MODULES = [
    "sl",
]

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_SCRIPT = REPO_ROOT / "scripts" / "default.lua"


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
    debug: int = 2  # Kamailio log levels: -3 alert .. 0 warn, 1 notice, 2 info, 3 debug
    log_stderror: bool = True
    server_header: str = "Server: ksr"
    server_signature: bool = True
    user_agent_header: str = "User-Agent: ksr"
    sip_warning: bool = False
    tcp_max_connections: int = 2048
    tcp_connection_lifetime: int = 120
    tcp_accept_no_cl: bool = False
    max_message_size: int = 65535
    lua_runtime: str = "lua51"  # lua51 (Kamailio's), luajit, lua54
    script_max_instructions: int = 10_000_000  # runaway-loop guard per route call (Lua)
    script_max_seconds: float = 2.0  # runaway guard per route call (Python)
    lua_max_memory: int = 256 * 1024 * 1024
    kemi: KemiParams = Field(default_factory=KemiParams)
    defines: dict[str, str | int] = Field(default_factory=dict)  # Kamailio's #!define (KSR.kx.ifdef)

    @field_validator("children")
    @classmethod
    def _children(cls, v: int) -> int:
        if v < 1:
            raise ValueError("children must be at least 1")
        return v


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loadmodule: list[str] = Field(default_factory=lambda: list(DEFAULT_MODULES))
    mpath: list[str] = Field(default_factory=list)
    core: CoreParams = Field(default_factory=CoreParams)
    modparam: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str | None = Field(default=None, exclude=True)  # the file this came from

    def script_path(self) -> Path | None:
        for mod in ("app_lua", "app_python3", "app_python"):
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
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = f"unknown key '{'.'.join(loc)}' (check the spelling; see docs/configuration.md)"
        else:
            msg = f"'{'.'.join(loc)}': {msg}"
        raise ConfigError(msg, str(p), locate_key(text, loc)) from None
    cfg.source = str(p)
    return cfg


def locate_key(text: str, loc: list[str]) -> int | None:
    """Line number (1-based) where the key at ``loc`` is written, if it can be found."""
    if not loc:
        return None
    table: list[str] = []
    key = loc[-1]
    want_table = loc[:-1]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            table = [x.strip().strip('"') for x in line.strip("[]").split(".")]
            if table == loc:
                return n
            continue
        m = re.match(r'"?([A-Za-z0-9_.\-]+)"?\s*=', line)
        if m and m.group(1) == key and (table == want_table or not want_table):
            return n
        if m and table + m.group(1).split(".") == loc:
            return n
    return None
