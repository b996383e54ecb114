"""Steering UDP datagrams to the worker that owns their call, in the kernel (``ksr run -n N``).

Every worker's UDP socket is in one SO_REUSEPORT group. Without help the kernel picks the socket
by a hash of the sender's address, so about (N-1)/N of the messages of a call reach a worker
that must hand them over (ksr/core/handoff.py). A classic BPF program attached to the group
(``SO_ATTACH_REUSEPORT_CBPF``, Linux 4.5) reads the Call-ID from the datagram and returns the
owner's socket instead: the kernel then delivers each message where ksr.sip.owner says it
belongs, and the hand-off is left for the messages the program cannot read.

Classic BPF has no loops and at most 4096 instructions, so the program is unrolled: it looks
for ``\\nCall-ID:`` at each offset of the first ``WINDOW`` bytes (in blocks, each block first
checking that the datagram is long enough), then hashes at most ``HASH_BYTES`` bytes of the
value (ksr.sip.owner.call_id_hash, the same function). What it cannot read (the compact form
``i:``, another spelling, a Call-ID further in) goes to a worker picked by the datagram's
length (a retransmission goes where its first copy went); the worker's own owner rule then hands
it over as before. The socket indexes of the group are the workers' indexes because the
supervisor binds the sockets in that order and keeps them open across restarts (ksr/workers.py);
a worker that is down gets nothing: its share goes to a live one.

Sans-IO but for ``attach``: ``program`` returns the instructions as bytes.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Collection

from ksr.sip.owner import ADLER_MOD, HASH_BYTES, MIX

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h (the socket module has no name)
MAX_INSNS = 4096  # BPF_MAXINSNS
BLOCK = 32  # offsets searched per block (one length check each)
WINDOW = 1472  # bytes searched for the Call-ID: a full Ethernet frame's UDP payload

# classic BPF opcodes (linux/filter.h)
_LD_IMM, _LD_W_ABS, _LD_W_IND, _LD_B_IND, _LD_LEN, _LD_MEM = 0x00, 0x20, 0x40, 0x50, 0x80, 0x60
_LDX_IMM, _LDX_MEM, _ST, _STX = 0x01, 0x61, 0x02, 0x03
_ADD_K, _ADD_X, _SUB_X, _OR_X, _LSH_K, _RSH_K = 0x04, 0x0C, 0x1C, 0x4C, 0x64, 0x74
_MUL_K, _MOD_K = 0x24, 0x94
_JA, _JEQ, _JGE = 0x05, 0x15, 0x35
_RET_K, _RET_A, _TAX, _TXA = 0x06, 0x16, 0x07, 0x87

_NAME = b"\nCall-ID:"
# the 4-byte pieces of the name an aligned word load may see, by how far into the name they
# start (word loads are big-endian)
_PIECES = [int.from_bytes(_NAME[j : j + 4], "big") for j in range(4)]


class _Asm:
    """Instructions with named forward targets, resolved by ``bytes()``."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int | str]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int | str = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def __bytes__(self) -> bytes:
        out = []
        for pc, (code, jt, jf, k) in enumerate(self.code):
            jt, jf = self._offset(pc, jt), self._offset(pc, jf)
            if code == _JA:
                k = self._offset(pc, k)
            elif isinstance(k, str):
                raise ValueError(k)
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError(f"conditional jump out of range at {pc}")
            out.append(struct.pack("=HBBI", code, jt, jf, int(k) & 0xFFFFFFFF))
        return b"".join(out)

    def _offset(self, pc: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        off = self.labels[target] - pc - 1
        if off < 0:
            raise ValueError(f"backward jump to {target} at {pc}")
        return off


def program(workers: int, live: Collection[int], window: int = WINDOW) -> bytes:
    """The steering program for ``workers`` sockets of which ``live`` may receive (a datagram
    owned by a worker that is down goes to the next live one), searching the first ``window``
    bytes for the Call-ID. 8 bytes per instruction."""
    if not live:
        raise ValueError("no live worker")
    a = _Asm()
    # 1. the first "\nCall-ID" in the window. One word load per 4 bytes: the aligned word
    # inside the name is one of its 4-byte pieces, whose phase says where the name starts.
    # In blocks of BLOCK bytes, each entered only if the datagram is long enough for its loads
    # (a load past the end would end the program).
    for b in range(window // BLOCK):
        base = 4 + b * BLOCK  # (the name cannot start before the request line's end)
        a.op(_LD_LEN)
        a.op(_JGE, base + BLOCK, jt=1)
        a.op(_JA, "other")
        for m in range(0, BLOCK, 4):
            a.op(_LD_W_ABS, base + m)
            for j, piece in enumerate(_PIECES):
                a.op(_JEQ, piece, jt=f"hit{b}.{j}")
        a.op(_JA, f"block{b + 1}")
        for j in range(len(_PIECES)):
            a.label(f"hit{b}.{j}")
            a.op(_LDX_IMM, base)
            a.op(_JA, f"phase{j}")
        a.label(f"block{b + 1}")
    a.op(_JA, "other")
    # 2. where in the block: X = the offset of "\nCall-ID"
    for j, piece in enumerate(_PIECES):
        a.label(f"phase{j}")
        for m in range(0, BLOCK, 4):
            a.op(_LD_W_IND, m)
            a.op(_JEQ, piece, jt=f"at{j}.{m}")
        a.op(_JA, "other")
        for m in range(0, BLOCK, 4):
            a.label(f"at{j}.{m}")
            a.op(_TXA)
            a.op(_ADD_K, (m - j) & 0xFFFFFFFF)
            a.op(_TAX)
            a.op(_JA, "name")
    # 3. the whole name, the colon, up to two blanks; room for the value's bytes
    a.label("name")
    a.op(_LD_LEN)
    a.op(_SUB_X)
    a.op(_JGE, len(_NAME) + 2 + HASH_BYTES, jt=1)
    a.op(_JA, "other")
    for at in range(0, 8, 4):
        a.op(_LD_W_IND, at)
        a.op(_JEQ, int.from_bytes(_NAME[at : at + 4], "big"), jt=1)
        a.op(_JA, "other")
    a.op(_LD_B_IND, 8)
    a.op(_JEQ, ord(":"), jt=1)
    a.op(_JA, "other")
    a.op(_TXA)
    a.op(_ADD_K, len(_NAME))
    a.op(_TAX)
    for _ in range(2):
        a.op(_LD_B_IND, 0)
        a.op(_JEQ, ord(" "), jt=1)
        a.op(_JEQ, ord("\t"), jf=3)
        a.op(_TXA)
        a.op(_ADD_K, 1)
        a.op(_TAX)
    # 4. ksr.sip.owner.call_id_hash: Adler-32 of at most HASH_BYTES bytes, up to the first
    # byte below "!" (the line's end or a trailing blank), mixed: M0 = a, M1 = b, M2 = start
    a.op(_STX, 2)
    a.op(_LD_IMM, 1)
    a.op(_ST, 0)
    a.op(_LD_IMM, 0)
    a.op(_ST, 1)
    for i in range(HASH_BYTES):
        a.op(_LD_B_IND, i)
        a.op(_JGE, 33, jf="done")
        a.op(_TAX)
        a.op(_LD_MEM, 0)
        a.op(_ADD_X)
        a.op(_ST, 0)
        a.op(_TAX)
        a.op(_LD_MEM, 1)
        a.op(_ADD_X)
        a.op(_ST, 1)
        a.op(_LDX_MEM, 2)
    a.label("done")
    a.op(_LD_MEM, 1)
    a.op(_MOD_K, ADLER_MOD)
    a.op(_LSH_K, 16)
    a.op(_TAX)
    a.op(_LD_MEM, 0)
    a.op(_OR_X)  # A = adler32 (a < ADLER_MOD for so few bytes)
    a.op(_MUL_K, MIX)
    a.op(_RSH_K, 16)
    a.op(_MOD_K, workers)
    a.op(_JA, "map")
    # no readable Call-ID: a worker by the datagram's length (its retransmissions follow it)
    a.label("other")
    a.op(_LD_LEN)
    a.op(_MOD_K, workers)
    # 5. a worker that is down: the next live one
    a.label("map")
    dead = [w for w in range(workers) if w not in live]
    for w in dead:
        a.op(_JEQ, w, jt=f"to{w}")
    a.op(_RET_A)
    for w in dead:
        a.label(f"to{w}")
        a.op(_RET_K, next(x % workers for x in range(w + 1, w + workers) if x % workers in live))
    code = bytes(a)
    if len(code) // 8 > MAX_INSNS:
        raise ValueError(f"steering program too long: {len(code) // 8} instructions")
    return code


def attach(sock: socket.socket, code: bytes) -> None:
    """Make ``code`` the program of the SO_REUSEPORT group ``sock`` is bound in (any member's
    socket will do; it replaces the group's previous program). OSError if the kernel refuses."""
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HP", len(code) // 8, ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
