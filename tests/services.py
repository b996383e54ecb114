"""The PostgreSQL and Redis servers the tests use: the one place their URLs come from.

``pg_url()`` and ``redis_url()`` answer the server to use, deciding on first call:

- ``KSR_TEST_SERVICES=auto`` (the default): the configured server (``KSR_TEST_PG_URL``, default
  postgres://postgres@127.0.0.1:5432/test with trust authentication; ``KSR_TEST_REDIS_URL``,
  default redis://127.0.0.1:6379/0) when it answers, else a throwaway one started here;
- ``throwaway``: always a throwaway server (to check this machinery, or to stay off a shared one);
- ``system``: only the configured server (a test fails if it is down).

A throwaway server runs from the Debian binaries (``postgresql``, ``redis-server``; ``make test``
installs them when missing) on a free 127.0.0.1 port with its data in a temporary folder, and is
stopped and removed when the test session ends (tests/conftest.py) or the interpreter exits.
PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user (or ``nobody``).
Tests keep using a unique table/key prefix per test: the configured servers are shared.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MODES = ("auto", "throwaway", "system")
START_TIMEOUT = 60.0


@dataclass
class Throwaway:
    """A server process this module started, and the folder holding its data and log."""

    name: str
    proc: subprocess.Popen[bytes]
    folder: Path
    argv: list[str] = field(default_factory=list)  # how it was started (for ``restart``)
    popen: dict[str, Any] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None

    def log(self) -> str:
        p = self.folder / "server.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def halt(self) -> None:
        """Stop the server, keeping its data (``restart`` starts it again)."""
        if self.proc.poll() is None:
            # SIGINT: PostgreSQL's fast shutdown; Redis exits on it too
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        """Start the halted server again: same port, same data."""
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, **self.popen
            )
        if self.ready is not None and not _wait(self, self.ready):
            raise RuntimeError(f"throwaway {self.name} did not start again:\n{self.log()}")

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.folder, ignore_errors=True)


_urls: dict[str, str] = {}
_running: list[Throwaway] = []


def mode() -> str:
    m = os.environ.get("KSR_TEST_SERVICES", "auto")
    if m not in MODES:
        raise RuntimeError(f"KSR_TEST_SERVICES={m!r}: expected one of {', '.join(MODES)}")
    return m


def pg_url() -> str:
    """The PostgreSQL URL for tests (``postgres://user@host:port/db``, no prefix)."""
    if "pg" not in _urls:
        _urls["pg"] = _choose(
            os.environ.get("KSR_TEST_PG_URL", DEFAULT_PG_URL), _pg_answers, _start_postgres
        )
    return _urls["pg"]


def redis_url() -> str:
    """The Redis URL for tests (``redis://host:port/db``, no prefix)."""
    if "redis" not in _urls:
        _urls["redis"] = _choose(
            os.environ.get("KSR_TEST_REDIS_URL", DEFAULT_REDIS_URL),
            _redis_answers,
            _start_redis,
        )
    return _urls["redis"]


def drop_redis_keys(prefix: str, url: str | None = None) -> None:
    """Delete what a test (or bench) wrote under its key ``prefix`` in Redis (the tests' Redis
    unless ``url`` names another)."""
    from ksr.db.redis_connect import connect

    r = connect(url or redis_url())
    keys = list(r.scan_iter(match=prefix + "*", count=1000))
    if keys:
        r.delete(*keys)


def pg_address() -> tuple[str, int]:
    """(host, port) of the test PostgreSQL, for tests that put something in between."""
    u = urlsplit(pg_url())
    return u.hostname or "127.0.0.1", u.port or 5432


def pg_url_via(host: str, port: int) -> str:
    """The test PostgreSQL's URL (same user and database) reached at another address, e.g. a
    relay the test controls."""
    u = urlsplit(pg_url())
    cred = u.netloc.rpartition("@")[0]
    return f"postgres://{cred + '@' if cred else ''}{host}:{port}{u.path}"


def psycopg_url(url: str) -> str:
    """A ksr ``postgres://`` db_url (without ``?prefix``) as psycopg wants it."""
    return "postgresql://" + url.partition("://")[2].partition("?")[0]


def throwaways() -> list[str]:
    """What was started here, for the test report header and the tests of this module."""
    return [f"{t.name} (pid {t.proc.pid}, {t.folder})" for t in _running]


def stop_all() -> None:
    while _running:
        _running.pop().stop()
    _urls.clear()


atexit.register(stop_all)  # a session interrupted before its fixtures' teardown


def _choose(configured: str, answers: object, start: object) -> str:
    m = mode()
    if m != "throwaway" and (m == "system" or answers(configured)):  # type: ignore[operator]
        return configured
    return start()  # type: ignore[operator, no-any-return]


def _pg_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(psycopg_url(url), connect_timeout=3) as c:
            c.execute("SELECT 1")
        return True
    except Exception:
        return False


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except Exception:
        return False


@contextmanager
def private_postgres() -> Iterator[tuple[str, Throwaway]]:
    """A throwaway PostgreSQL of the caller's own (its URL, and the server to ``halt`` and
    ``restart``), removed afterwards: for tests that stop the server mid-run."""
    url, t = _new_postgres()
    try:
        yield url, t
    finally:
        t.stop()


@contextmanager
def private_redis() -> Iterator[tuple[str, Throwaway]]:
    """A throwaway Redis of the caller's own, persisting every write (a restart keeps them)."""
    url, t = _new_redis(persist=True)
    try:
        yield url, t
    finally:
        t.stop()


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(t: Throwaway, ready: object) -> bool:
    """Until ``ready()`` or the process exits (False: e.g. the port was taken meanwhile)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if t.proc.poll() is not None:
            return False
        if ready():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    raise RuntimeError(f"throwaway {t.name} did not start in {START_TIMEOUT:.0f} s:\n{t.log()}")


def _unprivileged() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def _pg_bin(tool: str) -> str:
    found = shutil.which(tool)
    if found:
        return found
    # Debian keeps the server binaries off PATH, one folder per major version: take the newest
    cands = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not cands:
        raise RuntimeError(
            f"no PostgreSQL answers at {os.environ.get('KSR_TEST_PG_URL', DEFAULT_PG_URL)} and "
            f"'{tool}' is not installed to start a throwaway one: apt-get install postgresql "
            "(make test does it), or set KSR_TEST_PG_URL"
        )
    return cands[-1]


def _start_postgres() -> str:
    url, t = _new_postgres()
    _running.append(t)
    return url


def _new_postgres() -> tuple[str, Throwaway]:
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    folder = Path(tempfile.mkdtemp(prefix="ksr-test-pg-"))
    user = _unprivileged()
    as_user: dict[str, object] = {}
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = folder / "data"
    with open(folder / "server.log", "wb") as log:
        if user is not None:
            os.fchown(log.fileno(), user.pw_uid, user.pw_gid)
        subprocess.run(
            [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            + ["--locale=C", "--no-sync"],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
            **as_user,  # type: ignore[arg-type]
        )
    for _ in range(5):
        port = _free_tcp_port()
        argv = (
            [postgres, "-D", str(data), "-p", str(port), "-k", str(folder)]
            + ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
            + ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            + ["-c", "max_connections=300"]
        )
        # start_new_session: Ctrl-C reaches pytest, which stops it in order
        popen: dict[str, Any] = {"cwd": folder, "start_new_session": True, **as_user}
        with open(folder / "server.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen)
        admin = f"postgres://postgres@127.0.0.1:{port}/postgres"
        t = Throwaway(
            f"postgresql on 127.0.0.1:{port}",
            proc,
            folder,
            argv,
            popen,
            lambda a=admin: _pg_answers(a),  # type: ignore[misc]
        )
        if _wait(t, t.ready):
            break
    else:
        why = t.log()
        t.stop()
        raise RuntimeError(f"throwaway postgresql did not start:\n{why}")
    import psycopg

    with psycopg.connect(psycopg_url(admin), autocommit=True) as c:
        c.execute("CREATE DATABASE test")
    return f"postgres://postgres@127.0.0.1:{port}/test", t


def _start_redis() -> str:
    url, t = _new_redis()
    _running.append(t)
    return url


def _new_redis(persist: bool = False) -> tuple[str, Throwaway]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError(
            f"no Redis answers at {os.environ.get('KSR_TEST_REDIS_URL', DEFAULT_REDIS_URL)} and "
            "redis-server is not installed to start a throwaway one: apt-get install "
            "redis-server (make test does it), or set KSR_TEST_REDIS_URL"
        )
    folder = Path(tempfile.mkdtemp(prefix="ksr-test-redis-"))
    for _ in range(5):
        port = _free_tcp_port()
        argv = (
            [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
            + (
                ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
                if persist  # every write on disk: a restart keeps what was acknowledged
                else ["--save", "", "--appendonly", "no"]
            )
            + ["--daemonize", "no"]
        )
        popen: dict[str, Any] = {"cwd": folder, "start_new_session": True}
        with open(folder / "server.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen)
        url = f"redis://127.0.0.1:{port}/0"
        t = Throwaway(
            f"redis on 127.0.0.1:{port}",
            proc,
            folder,
            argv,
            popen,
            lambda u=url: _redis_answers(u),  # type: ignore[misc]
        )
        if _wait(t, t.ready):
            return url, t
    why = t.log()
    t.stop()
    raise RuntimeError(f"throwaway redis did not start:\n{why}")


class RedisOnDisk:
    """A private Redis that keeps every acknowledged write on disk (append-only file, fsync
    before each reply), for tests that kill and restart it: ``kill()`` (SIGKILL), ``start()``
    again on the same port and folder, which reloads the file (``on_disk=False``: a Redis
    that keeps nothing, empty after a restart). Always a throwaway server (the
    shared one must not be restarted). ``close()`` stops it and removes its folder."""

    def __init__(self, on_disk: bool = True, extra: list[str] | None = None, port: int = 0) -> None:
        self.on_disk = on_disk  # False: keeps nothing (a restart empties it)
        self.extra = extra or []  # more redis-server arguments
        self.server = shutil.which("redis-server")
        if self.server is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.folder = Path(tempfile.mkdtemp(prefix="ksr-test-redis-aof-"))
        self.port = port or _free_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.server or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--save", "", "--daemonize", "no"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.on_disk else []
        args += self.extra
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        t = Throwaway(f"redis on 127.0.0.1:{self.port}", self.proc, self.folder)
        if not _wait(t, lambda: _redis_answers(self.url)):
            raise RuntimeError(f"redis with an append-only file did not start:\n{t.log()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
