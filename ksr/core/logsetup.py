"""Where log lines go, chosen as in Kamailio by ``core.log_stderror`` and ``core.log_facility``.

- ``log_stderror = true`` (ksr's default, for a terminal and for containers): stderr. When
  stderr is the systemd journal (``$JOURNAL_STREAM`` names it, as for a service's output),
  each line starts with its syslog priority (``<3>``: sd-daemon's prefix) and carries no
  timestamp of its own, so journald records the level and times the line itself.
- ``log_stderror = false`` (Kamailio's default): syslog through ``/dev/log`` with the facility
  ``log_facility`` (LOG_DAEMON, LOG_LOCAL0 ... as Kamailio names them) and the identifier
  ``log_name[pid]``. On a systemd machine ``/dev/log`` is journald's, so this reaches the
  journal too (ksr has no dependency on a journald library).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from .loglevels import ALERT, NOTICE

SYSLOG_SOCKET = "/dev/log"
FORMAT = "%(levelname)s %(name)s: %(message)s"

# syslog priorities (RFC 5424): 1 alert, 2 crit, 3 err, 4 warning, 5 notice, 6 info, 7 debug
_PRIORITIES = (
    (ALERT, 1),
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (NOTICE, 5),
    (logging.INFO, 6),
)


def priority(levelno: int) -> int:
    for floor, prio in _PRIORITIES:
        if levelno >= floor:
            return prio
    return 7


def facility(name: str) -> int:
    """``LOG_LOCAL0`` (Kamailio's spelling) or ``local0`` as the syslog facility number."""
    key = name.strip().lower().removeprefix("log_")
    try:
        return logging.handlers.SysLogHandler.facility_names[key]
    except KeyError:
        known = ", ".join("LOG_" + n.upper() for n in logging.handlers.SysLogHandler.facility_names)
        raise ValueError(f"unknown syslog facility {name!r} (one of {known})") from None


def stderr_is_journal() -> bool:
    """True when stderr is connected to journald ($JOURNAL_STREAM = "device:inode" of it)."""
    dev, sep, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(logging.Formatter):
    """Each line prefixed with its priority (``<4>``), which journald reads and strips."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


class SyslogHandler(logging.handlers.SysLogHandler):
    """The stdlib handler with Kamailio's two extra levels (NOTICE, ALERT) mapped."""

    def mapPriority(self, levelName: str) -> str:  # noqa: N802, N803 (the stdlib's names)
        return {"NOTICE": "notice", "ALERT": "alert"}.get(levelName) or super().mapPriority(
            levelName
        )


def make_handler(
    log_stderror: bool = True, log_facility: str = "LOG_DAEMON", log_name: str = "ksr"
) -> tuple[logging.Handler, str]:
    """The handler for these settings and what it is: "stderr", "journal" or "syslog"."""
    if not log_stderror:
        # No syslog socket at all (a container): say so and keep the lines on stderr. A
        # syslog daemon that is only restarting is fine: the handler reconnects by itself.
        if not os.path.exists(SYSLOG_SOCKET):
            print(
                f"ksr: log_stderror = false but there is no syslog at {SYSLOG_SOCKET}; "
                "logging to stderr",
                file=sys.stderr,
            )
        else:
            h: logging.Handler = SyslogHandler(SYSLOG_SOCKET, facility(log_facility))
            h.ident = f"{log_name}[{os.getpid()}]: "  # type: ignore[attr-defined]
            h.setFormatter(logging.Formatter(FORMAT))
            return h, "syslog"
    h = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        h.setFormatter(JournalFormatter(FORMAT))
        return h, "journal"
    h.setFormatter(logging.Formatter("%(asctime)s " + FORMAT))
    return h, "stderr"


def setup_logging(
    level: int, log_stderror: bool = True, log_facility: str = "LOG_DAEMON", log_name: str = "ksr"
) -> str:
    """Send the root logger's lines at ``level`` and above where the settings say (once per
    process, as logging.basicConfig); returns "stderr", "journal" or "syslog"."""
    handler, kind = make_handler(log_stderror, log_facility, log_name)
    logging.basicConfig(level=level, handlers=[handler])
    return kind
