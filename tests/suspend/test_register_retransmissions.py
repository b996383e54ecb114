"""Retransmitted REGISTERs cost no second database query, with ``-n 1`` and ``-n 2``: real
retransmissions (the same datagram sent again, as a phone on UDP does) to ``ksr run`` whose
auth_db and usrloc (``db_mode`` 3) reach PostgreSQL through a proxy that delivers every answer
late and counts the statements run (tests/suspend/dbproxy.py).

- While the route waits on the database, a retransmission is absorbed (docs/suspend.md).
- After a stateful reply (the script called ``t_newtran``, so ``auth_challenge`` and ``save``
  reply through tm) the script's ``t_precheck_trans``/``t_check_trans`` absorb it and tm sends
  the same reply again: the same 401 (same nonce), the same 200.
- After a stateless reply (``sl``, no transaction) a retransmission runs the route again, as in
  Kamailio: a new challenge with a new nonce.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ksr.db import open_store
from ksr.modules.auth_db.subscribers import Subscribers
from ksr.sip.message import Response, parse_message_untrusted
from ksr.sip.owner import call_id_owner
from tests import services
from tests.registrar.conftest import _cleanup
from tests.registrar.digest_client import authorization, challenge_params
from tests.support import ksr_process, sip_request, wait_steered, write_script
from tests.suspend.dbproxy import DbProxy, address_of, url_via

pytestmark = pytest.mark.postgres

# Kamailio's example order (kamailio-basic-kemi): retransmissions first, then authentication
ROUTE = """
function ksr_request_route()
  if KSR.tmx.t_precheck_trans() > 0 then
    KSR.tm.t_check_trans()
    return 1
  end
  if KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.is_REGISTER() then
    %s
    if KSR.auth_db.auth_check(KSR.pv.get("$fd"), "subscriber", 1) < 0 then
      KSR.auth.auth_challenge(KSR.pv.get("$fd"), 0)
      return 1
    end
    if KSR.registrar.save("location", 0) < 0 then KSR.sl.sl_reply_error() end
  end
  return 1
end
"""
STATEFUL = ROUTE % "KSR.tm.t_newtran()"
STATELESS = ROUTE % ""
DELAY = 0.4  # seconds every database answer is held back


@pytest.fixture
def database() -> Iterator[tuple[DbProxy, str]]:
    """A proxy in front of the shared PostgreSQL, a db_url through it, three subscribers."""
    prefix = "t" + uuid.uuid4().hex[:10] + "_"
    base = services.pg_url()
    direct = open_store(f"{base}?prefix={prefix}")
    subscribers = Subscribers(direct)
    for user in ("alice", "bob", "carol"):
        subscribers.add(user, "127.0.0.1", "secret")
    direct.close()
    with DbProxy(address_of(base)) as proxy:
        try:
            yield proxy, f"{url_via(base, proxy.port)}?prefix={prefix}&query_timeout=5"
        finally:
            _cleanup(base, prefix)


def config(url: str) -> str:
    return (
        'loadmodule = ["sl", "tm", "tmx", "usrloc", "registrar", "auth", "auth_db", "jsonrpcs"]\n'
        f'[modparam.usrloc]\ndb_url = "{url}"\ndb_mode = 3\n'
        f'[modparam.auth_db]\ndb_url = "{url}"\n'
    )


class Phone:
    """One user agent on a UDP socket: its REGISTERs, sent again as they are."""

    def __init__(self, user: str, port: int, worker: int = 0, workers: int = 1) -> None:
        self.user = user
        self.target = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        # a REGISTER is handled by the worker the kernel gives it, by its Call-ID
        while call_id_owner(call_id := f"{user}-{uuid.uuid4().hex[:8]}", workers) != worker:
            pass
        self.call_id = call_id

    def register(self, cseq: int, auth: str = "") -> bytes:
        me = self.sock.getsockname()[1]
        extra = "Expires: 600" + (f"\n{auth}" if auth else "")
        text = sip_request(
            "REGISTER",
            "sip:127.0.0.1",
            port=me,
            branch=f"z9hG4bK-{self.call_id}-{cseq}",
            call_id=self.call_id,
            cseq=cseq,
            extra=extra,
        )
        return (
            text.replace("sip:alice@", f"sip:{self.user}@")
            .replace("<sip:ksr@127.0.0.1>", f"<sip:{self.user}@127.0.0.1>")
            .encode()
        )

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def replies(self, n: int, timeout: float = 10.0) -> list[Response]:
        out: list[Response] = []
        self.sock.settimeout(timeout)
        while len(out) < n:
            m = parse_message_untrusted(self.sock.recv(65535))
            assert isinstance(m, Response)
            out.append(m)
        return out

    def quiet(self, seconds: float) -> list[bytes]:
        """What else arrives within ``seconds``."""
        self.sock.settimeout(seconds)
        extra = []
        try:
            while True:
                extra.append(self.sock.recv(65535))
        except TimeoutError:
            return extra


@contextmanager
def served(tmp: Path, script: str, database: tuple[DbProxy, str], children: int) -> Iterator[int]:
    """``ksr run -n children`` on the database, warmed up: a registration through each worker
    (its first statements, connections and prepared statements, are not a registration's);
    its port."""
    proxy, url = database
    with ksr_process(write_script(tmp, script), config(url), extra_args=["-n", str(children)]) as k:
        if children > 1:
            wait_steered(k["log"], children)
        proxy.delay = DELAY
        for w in range(children):
            registration(Phone("carol", k["port"], w, children), proxy, retransmit=False)
        yield k["port"]


def registration(phone: Phone, proxy: DbProxy, retransmit: bool) -> tuple[list[Response], int]:
    """Challenge, then the authenticated REGISTER (each sent 3 times if ``retransmit``: twice
    while its route waits on the database, once after the reply); the replies and the
    statements the registration ran."""
    before = proxy.statements
    first = phone.register(1)
    phone.send(first)
    got = phone.replies(1)
    if retransmit:
        phone.send(first)
        phone.send(first)
        got += phone.replies(2)
    auth = authorization(got[0], phone.user, "secret")
    second = phone.register(2, auth)
    phone.send(second)
    if retransmit:
        for _ in range(2):
            time.sleep(DELAY / 4)
            phone.send(second)
    got += phone.replies(1)
    if retransmit:
        phone.send(second)
        got += phone.replies(1)
    assert phone.quiet(DELAY * 2) == []  # one answer per copy at most
    return got, proxy.statements - before


@pytest.mark.parametrize("children", [1, 2])
def test_stateful_replies_absorb_retransmissions(
    tmp_path: Path, database: tuple[DbProxy, str], children: int
) -> None:
    proxy = database[0]
    with served(tmp_path, STATEFUL, database, children) as port:
        plain, once = registration(Phone("bob", port), proxy, retransmit=False)
        assert [r.status for r in plain] == [401, 200]
        got, statements = registration(Phone("alice", port), proxy, retransmit=True)
        # every copy of the first REGISTER got the same challenge back (tm resent it)
        assert [r.status for r in got] == [401, 401, 401, 200, 200]
        assert len({challenge_params(r)["nonce"] for r in got[:3]}) == 1
        # the retransmissions ran no statement: as many as a registration sent once
        assert once > 0
        assert statements == once


@pytest.mark.parametrize("children", [1, 2])
def test_stateless_replies_absorb_only_while_the_route_waits(
    tmp_path: Path, database: tuple[DbProxy, str], children: int
) -> None:
    proxy = database[0]
    with served(tmp_path, STATELESS, database, children) as port:
        phone = Phone("alice", port)
        first = phone.register(1)
        phone.send(first)
        phone.send(first)
        a, b = phone.replies(2)
        # no transaction: the copy sent after the 401 ran the route again, as in Kamailio
        # (a new challenge); sent at once, it may also have crossed the first reply
        assert a.status == b.status == 401
        assert challenge_params(a)["nonce"] != challenge_params(b)["nonce"]
        before = proxy.statements
        auth = authorization(a, "alice", "secret")
        second = phone.register(2, auth)
        phone.send(second)
        time.sleep(DELAY / 4)
        phone.send(second)  # while the first copy waits on the database: absorbed
        assert [r.status for r in phone.replies(1)] == [200]
        assert phone.quiet(DELAY * 2) == []
        waited = proxy.statements - before
        bob, once = registration(Phone("bob", port), proxy, retransmit=False)
        assert [r.status for r in bob] == [401, 200]
        assert waited == once
