"""One tracked dialog: identifiers, both legs, times, variables, profiles.

Plain data, serialisable to a dict (the persisted form) and back, so a dialog survives a restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

from ksr.core.timers import TimerHandle
from ksr.sip.dialog_state import DlgState

# Dialog's fields that are this process's alone: never persisted, never read from a stored form
LOCAL_FIELDS: Final = frozenset({"timer"})


# init=False and the __init__ written out (here and in Dialog): mypyc compiles it, where the
# one @dataclass generates runs as Python code (a call builds one Dialog and two Legs)
@dataclass(slots=True, init=False)
class Leg:
    """What ksr knows of one side (caller = the INVITE's sender, callee = the answerer)."""

    tag: str = ""
    contact: str = ""
    cseq: str = "0"
    route_set: str = ""
    socket: str = ""
    addr: str = ""  # where that side's requests came from: "udp:ip:port"

    def __init__(
        self,
        tag: str = "",
        contact: str = "",
        cseq: str = "0",
        route_set: str = "",
        socket: str = "",
        addr: str = "",
    ) -> None:
        self.tag = tag
        self.contact = contact
        self.cseq = cseq
        self.route_set = route_set
        self.socket = socket
        self.addr = addr

    def as_rpc(self) -> dict[str, str]:
        return {
            "tag": self.tag,
            "contact": self.contact,
            "cseq": self.cseq,
            "route_set": self.route_set,
            "socket": self.socket,
        }


@dataclass(slots=True, init=False)
class Dialog:
    h_entry: int
    h_id: int
    callid: str
    from_uri: str
    to_uri: str
    req_uri: str  # R-URI the INVITE was routed to (the callee)
    src_ip: str
    src_port: int
    init_ts: float  # INVITE seen (wall clock)
    state: DlgState = DlgState.UNCONFIRMED
    start_ts: float = 0.0  # answered
    end_ts: float = 0.0
    lifetime: int = 43200  # seconds a confirmed dialog may last
    timeout_ts: float = 0.0  # absolute wall-clock expiry
    timeout_bye: bool = False
    timeout_noreset: bool = False
    status: int = 0  # final reply code of the INVITE
    end_reason: str = ""
    dflags: int = 0
    sflags: int = 0
    iflags: int = 0
    caller: Leg = field(default_factory=Leg)
    callee: Leg = field(default_factory=Leg)
    variables: dict[str, str] = field(default_factory=dict)
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (name, value or "")
    cancelled: bool = False
    timeout_route: str = ""
    ref: int = 1
    owner: int = -1  # server_id of the node holding it (shared dialogs); -1: its creator
    # its running timer (manager.py's _arm), kept here rather than in a dict by ``key``: a
    # timer is started three times per call and cancelled twice (a key tuple and dict
    # operations each); local to this process: not persisted, not compared
    timer: TimerHandle | None = field(default=None, repr=False, compare=False)

    def __init__(
        self,
        h_entry: int,
        h_id: int,
        callid: str,
        from_uri: str,
        to_uri: str,
        req_uri: str,
        src_ip: str,
        src_port: int,
        init_ts: float,
        state: DlgState = DlgState.UNCONFIRMED,
        start_ts: float = 0.0,
        end_ts: float = 0.0,
        lifetime: int = 43200,
        timeout_ts: float = 0.0,
        timeout_bye: bool = False,
        timeout_noreset: bool = False,
        status: int = 0,
        end_reason: str = "",
        dflags: int = 0,
        sflags: int = 0,
        iflags: int = 0,
        caller: Leg | None = None,
        callee: Leg | None = None,
        variables: dict[str, str] | None = None,
        profiles: list[tuple[str, str]] | None = None,
        cancelled: bool = False,
        timeout_route: str = "",
        ref: int = 1,
        owner: int = -1,
    ) -> None:
        self.h_entry = h_entry
        self.h_id = h_id
        self.callid = callid
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.req_uri = req_uri
        self.src_ip = src_ip
        self.src_port = src_port
        self.init_ts = init_ts
        self.state = state
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.lifetime = lifetime
        self.timeout_ts = timeout_ts
        self.timeout_bye = timeout_bye
        self.timeout_noreset = timeout_noreset
        self.status = status
        self.end_reason = end_reason
        self.dflags = dflags
        self.sflags = sflags
        self.iflags = iflags
        self.caller = Leg() if caller is None else caller
        self.callee = Leg() if callee is None else callee
        self.variables = {} if variables is None else variables
        self.profiles = [] if profiles is None else profiles
        self.cancelled = cancelled
        self.timeout_route = timeout_route
        self.ref = ref
        self.owner = owner
        self.timer = None

    @property
    def holder(self) -> int:
        """The server_id of the node that holds the dialog: the one that took it last, else
        the one that created it (the top byte of its id)."""
        return self.owner if self.owner >= 0 else (self.h_id >> 24) & 0xFF

    @property
    def key(self) -> tuple[int, int]:
        return (self.h_entry, self.h_id)

    @property
    def from_tag(self) -> str:
        return self.caller.tag

    @property
    def to_tag(self) -> str:
        return self.callee.tag

    def to_dict(self) -> dict[str, Any]:
        timer, self.timer = self.timer, None  # asdict copies every field: not the handle
        try:
            d = asdict(self)
        finally:
            self.timer = timer
        for name in LOCAL_FIELDS:
            del d[name]
        d["state"] = int(self.state)
        d["profiles"] = [list(p) for p in self.profiles]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dialog:
        data = dict(d)
        data["state"] = DlgState(int(data["state"]))
        data["caller"] = Leg(**data.get("caller", {}))
        data["callee"] = Leg(**data.get("callee", {}))
        data["profiles"] = [(str(p[0]), str(p[1])) for p in data.get("profiles", [])]
        known = set(cls.__dataclass_fields__) - LOCAL_FIELDS
        return cls(**{k: v for k, v in data.items() if k in known})
