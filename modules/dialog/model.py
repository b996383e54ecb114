"""One tracked dialog: identifiers, both legs, times, variables, profiles.

Plain data, serialisable to a dict (the persisted form) and back, so a dialog survives a restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ksr.sip.dialog_state import DlgState


@dataclass(slots=True)
class Leg:
    """What ksr knows of one side (caller = the INVITE's sender, callee = the answerer)."""

    tag: str = ""
    contact: str = ""
    cseq: str = "0"
    route_set: str = ""
    socket: str = ""
    addr: str = ""  # where that side's requests came from: "udp:ip:port"

    def as_rpc(self) -> dict[str, str]:
        return {
            "tag": self.tag,
            "contact": self.contact,
            "cseq": self.cseq,
            "route_set": self.route_set,
            "socket": self.socket,
        }


@dataclass(slots=True)
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
        d = asdict(self)
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
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
