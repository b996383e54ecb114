"""Failed authentications: one log line each (fail2ban reads it), answers slowed after a few,
a ban after more; a wrong password and an unknown user look the same from outside.

Runs the default scripts with WITH_AUTH on real UDP sockets; time is trio's MockClock."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from ksr.modules.auth.failures import FailureBook
from ksr.sip.message import Response
from tests.registrar.digest_client import authorization, challenge_params
from tests.registrar.helpers import register
from tests.registrar.test_auth import add_subscriber
from tests.support import REPO, SCRIPTS, UdpPeer, make_config, running_server, udp_addr

FILTER = REPO / "docs" / "fail2ban" / "ksr.conf"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # ksr's stderr format (cli.py)
LINE = re.compile(
    r"auth failure: src=127\.0\.0\.1 port=\d+ proto=udp user=\"(?P<user>[^\"]*)\" "
    r"realm=\"127\.0\.0\.1\" method=\"REGISTER\" reason=\"(?P<reason>[^\"]+)\" "
    r"failures=(?P<n>\d+)$"
)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    # jumps only once the real sockets have been idle for a moment
    return trio.testing.MockClock(autojump_threshold=0.05)


# -- the book itself ------------------------------------------------------------------------------
def test_book_slows_then_bans_then_forgets() -> None:
    book = FailureBook(window=60, slow_after=2, delay=1.5, ban_after=4, ban_time=300)
    keys = ["ip:192.0.2.7", "user:alice@example.com"]
    delays = [book.fail(keys, t).delay for t in (0, 1, 2)]
    assert delays == [0.0, 0.0, 1.5]
    v = book.fail(keys, 3)
    assert v.banned == tuple(keys)
    assert v.failures == 4
    assert book.banned_until("ip:192.0.2.7", 100) == 303
    assert book.banned_until("ip:192.0.2.7", 303) is None  # over
    # failures older than the window do not count
    assert book.fail(["ip:192.0.2.8"], 0).failures == 1
    assert book.fail(["ip:192.0.2.8"], 61).failures == 1


def test_book_counts_a_retransmission_once() -> None:
    book = FailureBook(window=60, slow_after=2, delay=1, ban_after=0, ban_time=0)
    assert not book.repeated("src nonce resp", 0)
    assert book.repeated("src nonce resp", 0.5)
    assert not book.repeated("src nonce resp", 120)


def test_book_memory_is_bounded() -> None:
    book = FailureBook(window=60, slow_after=2, delay=1, ban_after=0, ban_time=0, max_keys=10)
    for i in range(100):
        book.fail([f"ip:10.0.0.{i}"], 0)
    assert len(book.times) <= 11


# -- through a running server with the default scripts ----------------------------------------------
def config(tmp: Path, **auth: object):  # type: ignore[no-untyped-def]
    url = f"sqlite://{tmp}/k.sqlite"
    add_subscriber(url, "alice", "s3cret")
    return make_config(
        None,
        {"auth_db": {"db_url": url}, "auth": {"secret": "t", **auth}},
        defines={"WITH_AUTH": 1},
    )


class Client:
    """A phone (or a password guesser): REGISTER, then answer each challenge."""

    def __init__(self, peer: UdpPeer, addr: tuple[str, int], user: str) -> None:
        self.peer, self.addr, self.user, self.cseq = peer, addr, user, 1
        self.auth_user = user
        self.last: Response | None = None

    async def start(self) -> Response:
        await self.peer.send(register(self.peer.port, self.user, call_id=self.user), self.addr)
        self.last = await self.peer.recv_reply()
        return self.last

    async def send_guess(self, password: str) -> None:
        assert self.last is not None
        self.cseq += 1
        auth = authorization(self.last, self.auth_user, password)
        text = register(self.peer.port, self.user, call_id=self.user, cseq=self.cseq, extra=[auth])
        await self.peer.send(text, self.addr)

    async def guess(self, password: str, timeout: float = 2.0) -> Response:
        await self.send_guess(password)
        self.last = await self.peer.recv_reply(timeout)
        return self.last


@pytest.mark.parametrize("script", ["default.lua", "default.py"])
async def test_failures_are_logged_slowed_and_banned(
    tmp_path: Path,
    script: str,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    caplog.set_level(logging.INFO)
    cfg = config(
        tmp_path,
        failed_auth_slow=2,
        failed_auth_delay=5000,
        failed_auth_ban=4,
        failed_auth_ban_time=300,
    )
    async with running_server(cfg, SCRIPTS / script) as server:
        peer = await UdpPeer().bind()
        c = Client(peer, udp_addr(server), "alice")
        assert (await c.start()).status == 401
        # two wrong guesses are answered at once, each with a fresh challenge
        for _ in range(2):
            assert (await c.guess("wrong", timeout=1)).status == 401
        # the third failure: the answer is held back failed_auth_delay
        await c.send_guess("wrong")
        assert await peer.nothing(4.0)
        c.last = await peer.recv_reply(2.0)
        assert c.last.status == 401
        # the fourth bans alice and the source: now even the right password fails
        assert (await c.guess("wrong", timeout=10)).status == 401
        assert (await c.guess("s3cret", timeout=10)).status == 401
        assert server.module("htable").tables["ipban"].has("127.0.0.1")
        peer.close()

    lines = [r.getMessage() for r in caplog.records if r.name == "ksr.auth"]
    failures = [m for m in map(LINE.search, lines) if m]
    assert [(m["reason"], m["n"]) for m in failures] == [
        ("wrong password", "1"),
        ("wrong password", "2"),
        ("wrong password", "3"),
        ("wrong password", "4"),
        ("banned", "0"),
    ]
    assert any(line.startswith("auth ban: src=127.0.0.1 for 300 s") for line in lines)
    assert any(line.startswith('auth ban: user="alice@127.0.0.1" for 300 s') for line in lines)
    # every failure is one line the fail2ban filter reads the source from
    formatted = [
        logging.Formatter(FORMAT).format(r) for r in caplog.records if r.name == "ksr.auth"
    ]
    assert fail2ban_hosts(tmp_path, formatted) == ["127.0.0.1"] * 5
    if os.environ.get("KSR_FAIL2BAN_REGEX") or shutil.which("fail2ban-regex"):
        # the same lines as syslog writes them (log_stderror = false): host and ksr[pid] first
        stamp = time.strftime("%b %d %H:%M:%S")
        syslog = [
            f"{stamp} sip1 ksr[4242]: {line.split(' ', 2)[2]}"
            for line in formatted
            if "auth failure" in line
        ]
        assert fail2ban_hosts(tmp_path, syslog) == ["127.0.0.1"] * 5


async def test_unknown_user_and_wrong_password_look_the_same(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_server(config(tmp_path), SCRIPTS / "default.lua") as server:
        answers = []
        for user in ("alice", "nobody"):
            peer = await UdpPeer().bind()
            c = Client(peer, udp_addr(server), user)
            await c.start()
            rpl = await c.guess("wrong")
            ch = challenge_params(rpl)
            answers.append(
                (
                    rpl.status,
                    rpl.reason,
                    [h.name for h in rpl.headers],
                    sorted(ch),
                    len(ch["nonce"]),
                )
            )
            peer.close()
        assert answers[0] == answers[1]


async def test_a_username_cannot_forge_the_logged_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO)
    evil = "x src=6.6.6.6 port=1 ksr.auth: auth failure: src=6.6.6.6 port=1 proto=udp user="
    async with running_server(config(tmp_path), SCRIPTS / "default.lua") as server:
        peer = await UdpPeer().bind()
        c = Client(peer, udp_addr(server), "alice")
        await c.start()
        c.auth_user = evil
        await c.guess("wrong")
        peer.close()
    formatted = [
        logging.Formatter(FORMAT).format(r) for r in caplog.records if r.name == "ksr.auth"
    ]
    assert len(formatted) == 1
    assert "\n" not in formatted[0]
    assert fail2ban_hosts(tmp_path, formatted) == ["127.0.0.1"]


def fail2ban_hosts(tmp: Path, lines: list[str]) -> list[str]:
    """The addresses the filter in docs/fail2ban finds in ``lines``: with the real
    fail2ban-regex when installed (or named by $KSR_FAIL2BAN_REGEX), else with the failregex
    alone (fail2ban's prefix and <HOST> reduced to their plain-file forms)."""
    tool = os.environ.get("KSR_FAIL2BAN_REGEX") or shutil.which("fail2ban-regex")
    log = tmp / "ksr.log"
    log.write_text("\n".join(lines) + "\n")
    if tool:
        conf = Path(tool).resolve().parent.parent.parent / "etc" / "fail2ban" / "filter.d"
        if not (conf / "common.conf").exists():
            conf = Path("/etc/fail2ban/filter.d")
        target = tmp / "filter.d"
        shutil.copytree(conf, target, dirs_exist_ok=True)
        shutil.copy(FILTER, target / "ksr.conf")
        res = subprocess.run(
            [tool, "--print-all-matched", "-v", str(log), str(target / "ksr.conf")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return re.findall(r"^\|\s+(\S+)\s+\w{3} \w{3} ", res.stdout, re.M)
    text = FILTER.read_text()
    failregex = re.search(r"^failregex = (.*)$", text, re.M)
    assert failregex is not None
    rx = failregex[1].replace("%(__prefix_line)s", r"\s*").replace("<HOST>", r"(?P<host>\S+)")
    date = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+")
    found = [re.search(rx, date.sub("", line)) for line in lines]
    return [m["host"] for m in found if m]
