"""The real Kamailio 5.6 (Debian package) as a subprocess on private ports, for interop tests
on a database shared with ksr: registrar + auth_db + usrloc db_mode 3, dialog db_mode 1 and an
htable with a dbtable, over db_postgres or db_sqlite, and a binrpc socket for kamcmd."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support import free_port

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


def available(driver: str = "db_postgres") -> bool:
    """Kamailio, kamcmd and the database driver module are installed."""
    return (
        bool(shutil.which("kamailio") and shutil.which("kamcmd"))
        and (MODULES / f"{driver}.so").exists()
    )


CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:%(port)d
mpath="%(mpath)s"
loadmodule "%(driver)s.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rr.so"
loadmodule "dialog.so"
loadmodule "htable.so"
modparam("usrloc", "db_url", "%(db)s")
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "use_domain", 0)
modparam("auth_db", "db_url", "%(db)s")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "use_domain", 0)
modparam("ctl", "binrpc", "unix:%(ctl)s")
modparam("dialog", "db_url", "%(db)s")
modparam("dialog", "db_mode", 1)
modparam("htable", "db_url", "%(db)s")
modparam("htable", "htable", "shared=>size=4;dbtable=htable;")

request_route {
    if (is_method("REGISTER")) {
        if (!auth_check("$td", "subscriber", "1")) {
            auth_challenge("$td", "0");
            exit;
        }
        if (!save("location")) {
            sl_reply_error();
        }
        exit;
    }
    if (has_totag()) {
        dlg_manage();
        t_relay();
        exit;
    }
    if (!lookup("location")) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    if (is_method("INVITE")) {
        dlg_manage();
    }
    t_relay();
}
"""


class Kamailio:
    def __init__(self, port: int, ctl: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.ctl, self.proc, self.log = port, ctl, proc, log

    def rpc(self, *cmd: str) -> object:
        """A JSON-RPC answer via kamcmd (binrpc) as Python data."""
        out = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl}", *cmd],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout + out.stderr


def _db_url(url: str) -> str:
    # Kamailio spells them postgres://user@host:port/db and sqlite:///abs/path
    return url.replace("postgresql://", "postgres://", 1)


@contextlib.contextmanager
def running_kamailio(tmp: Path, db_url: str, port: int = 0) -> Iterator[Kamailio]:
    """Kamailio on udp:127.0.0.1:``port`` (a free one unless given)."""
    port = port or free_port()
    ctl = tmp / f"kam_{port}.ctl"
    cfg = tmp / f"kamailio_{port}.cfg"
    driver = "db_sqlite" if db_url.startswith("sqlite") else "db_postgres"
    values = {"port": port, "mpath": f"{MODULES}/", "db": _db_url(db_url), "ctl": ctl}
    cfg.write_text(CFG % {**values, "driver": driver})
    log = tmp / f"kamailio_{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(tmp)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    k = Kamailio(port, ctl, proc, log)
    try:
        deadline = time.monotonic() + 15
        while not ctl.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kamailio did not start:\n" + log.read_text()[-4000:])
            time.sleep(0.05)
        yield k
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


__all__ = ["Kamailio", "available", "json", "running_kamailio"]
