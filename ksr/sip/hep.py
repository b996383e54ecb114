"""HEP (Homer Encapsulation Protocol) version 3: a captured message and where it went, for a
capture server such as Homer or Kamailio's sipcapture. Sans-IO: bytes in, bytes out.

A HEPv3 packet is ``"HEP3"``, the total length (uint16), then chunks. Each chunk is a vendor id
(uint16, 0 = generic), a type id (uint16), its length including these 6 bytes (uint16) and the
value; every integer in network byte order.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

MAGIC = b"HEP3"

# generic chunk types (vendor 0)
IP_FAMILY = 0x0001  # uint8: 2 IPv4, 10 IPv6
IP_PROTO = 0x0002  # uint8: 17 UDP, 6 TCP
SRC_IP4 = 0x0003
DST_IP4 = 0x0004
SRC_IP6 = 0x0005
DST_IP6 = 0x0006
SRC_PORT = 0x0007  # uint16
DST_PORT = 0x0008  # uint16
TIME_SEC = 0x0009  # uint32
TIME_USEC = 0x000A  # uint32: microseconds within the second
PROTO_TYPE = 0x000B  # uint8: 1 SIP, 100 log
CAPTURE_ID = 0x000C  # uint32
AUTH_KEY = 0x000E  # octets
PAYLOAD = 0x000F  # octets
CORRELATION_ID = 0x0011  # octets

AF_INET, AF_INET6 = 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17
PROTO_SIP, PROTO_LOG = 1, 100
MAX_PACKET = 65535  # the length field is 16 bits


class HepError(ValueError):
    """Bytes that are not a HEPv3 packet, or a packet that cannot be encoded."""


@dataclass(frozen=True, slots=True)
class HepPacket:
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes
    time_sec: int
    time_usec: int = 0
    ip_proto: int = IPPROTO_UDP
    proto_type: int = PROTO_SIP
    capture_id: int = 1
    correlation_id: bytes = b""
    auth_key: bytes = b""


def _chunk(kind: int, value: bytes) -> bytes:
    if 6 + len(value) > MAX_PACKET:
        raise HepError(f"chunk {kind:#06x} of {len(value)} bytes does not fit a HEP packet")
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value


def encode(p: HepPacket) -> bytes:
    """The HEPv3 packet for ``p``; HepError if an address is not an IP literal or it is too big."""
    try:
        src = ipaddress.ip_address(p.src_ip.strip("[]"))
        dst = ipaddress.ip_address(p.dst_ip.strip("[]"))
    except ValueError as err:
        raise HepError(f"not an IP address: {err}") from None
    if src.version != dst.version:  # one family per packet: map IPv4 into IPv6
        src, dst = (
            ipaddress.IPv6Address(f"::ffff:{a}") if a.version == 4 else a for a in (src, dst)
        )
    v6 = src.version == 6
    parts = [
        _chunk(IP_FAMILY, bytes([AF_INET6 if v6 else AF_INET])),
        _chunk(IP_PROTO, bytes([p.ip_proto])),
        _chunk(SRC_IP6 if v6 else SRC_IP4, src.packed),
        _chunk(DST_IP6 if v6 else DST_IP4, dst.packed),
        _chunk(SRC_PORT, struct.pack("!H", p.src_port & 0xFFFF)),
        _chunk(DST_PORT, struct.pack("!H", p.dst_port & 0xFFFF)),
        _chunk(TIME_SEC, struct.pack("!I", p.time_sec & 0xFFFFFFFF)),
        _chunk(TIME_USEC, struct.pack("!I", p.time_usec & 0xFFFFFFFF)),
        _chunk(PROTO_TYPE, bytes([p.proto_type])),
        _chunk(CAPTURE_ID, struct.pack("!I", p.capture_id & 0xFFFFFFFF)),
    ]
    if p.auth_key:
        parts.append(_chunk(AUTH_KEY, p.auth_key))
    if p.correlation_id:
        parts.append(_chunk(CORRELATION_ID, p.correlation_id))
    parts.append(_chunk(PAYLOAD, p.payload))
    body = b"".join(parts)
    total = 6 + len(body)
    if total > MAX_PACKET:
        raise HepError(f"HEP packet of {total} bytes (at most {MAX_PACKET})")
    return MAGIC + struct.pack("!H", total) + body


def decode_untrusted(data: bytes) -> tuple[HepPacket, int]:
    """One HEPv3 packet from the start of ``data`` and its length (a TCP stream holds several
    back to back). HepError for anything else."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise HepError("not a HEPv3 packet")
    (total,) = struct.unpack_from("!H", data, 4)
    if total < 6 or total > len(data):
        raise HepError("truncated HEPv3 packet")
    chunks: dict[int, bytes] = {}
    pos = 6
    while pos < total:
        if pos + 6 > total:
            raise HepError("truncated chunk header")
        _vendor, kind, size = struct.unpack_from("!HHH", data, pos)
        if size < 6 or pos + size > total:
            raise HepError(f"bad length of chunk {kind:#06x}")
        chunks[kind] = data[pos + 6 : pos + size]
        pos += size

    def num(kind: int, fmt: str, default: int = 0) -> int:
        raw = chunks.get(kind)
        if raw is None:
            return default
        if len(raw) != struct.calcsize(fmt):
            raise HepError(f"bad size of chunk {kind:#06x}")
        return int(struct.unpack(fmt, raw)[0])

    v6 = num(IP_FAMILY, "!B") == AF_INET6
    src_raw = chunks.get(SRC_IP6 if v6 else SRC_IP4, b"")
    dst_raw = chunks.get(DST_IP6 if v6 else DST_IP4, b"")
    try:
        src = str(ipaddress.ip_address(src_raw))
        dst = str(ipaddress.ip_address(dst_raw))
    except ValueError:
        raise HepError("bad address chunk") from None
    packet = HepPacket(
        src_ip=src,
        src_port=num(SRC_PORT, "!H"),
        dst_ip=dst,
        dst_port=num(DST_PORT, "!H"),
        payload=chunks.get(PAYLOAD, b""),
        time_sec=num(TIME_SEC, "!I"),
        time_usec=num(TIME_USEC, "!I"),
        ip_proto=num(IP_PROTO, "!B"),
        proto_type=num(PROTO_TYPE, "!B"),
        capture_id=num(CAPTURE_ID, "!I"),
        correlation_id=chunks.get(CORRELATION_ID, b""),
        auth_key=chunks.get(AUTH_KEY, b""),
    )
    return packet, total
