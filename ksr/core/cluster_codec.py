"""Messages between the nodes of a cluster (sans-IO; the Redis shell is ksr/core/cluster.py).

A replicated write travels as one pub/sub message ``<seq> <json>``: ``seq`` is the cluster's
write counter (Redis INCR, in the same script that publishes, so messages and the per-table
hashes agree on one order), the JSON document ``{"n": node, "t": table, "o": op, "a": [args]}``
names the writing node, the shared table, the ``@replicated`` operation and its plain
arguments (str, int, float, bool, None). Anything else is refused with a reason; the caller
logs and counts it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PLAIN = (str, int, float, bool, type(None))
MAX_MESSAGE = 1 << 20  # a bigger message is refused before parsing


class BadMessage(ValueError):
    """A cluster message that cannot be applied (the text says why)."""


@dataclass(frozen=True, slots=True)
class Write:
    seq: int
    node: str
    table: str
    op: str
    args: tuple[Any, ...]


def encode(node: str, table: str, op: str, args: tuple[Any, ...]) -> str:
    """The JSON part of a write (the publishing script puts ``<seq> `` before it)."""
    for a in args:
        if not isinstance(a, PLAIN):
            raise TypeError(f"{table}.{op}: argument {a!r} is not a plain value")
    return json.dumps({"n": node, "t": table, "o": op, "a": list(args)}, separators=(",", ":"))


def decode(data: bytes | str) -> Write:
    """One received message; BadMessage when it is not a well-formed write."""
    if len(data) > MAX_MESSAGE:
        raise BadMessage(f"message of {len(data)} bytes (at most {MAX_MESSAGE})")
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    head, sep, body = text.partition(" ")
    if not sep or not head.isdigit():
        raise BadMessage("no sequence number before the document")
    try:
        doc = json.loads(body)
    except ValueError as err:
        raise BadMessage(f"not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadMessage("the document is not an object")
    node, table, op, args = doc.get("n"), doc.get("t"), doc.get("o"), doc.get("a")
    if not (isinstance(node, str) and isinstance(table, str) and isinstance(op, str)):
        raise BadMessage("n, t and o must be strings")
    if not isinstance(args, list) or not all(isinstance(a, PLAIN) for a in args):
        raise BadMessage("a must be a list of plain values")
    return Write(int(head), node, table, op, tuple(args))


def decode_item(text: str) -> Any:
    return json.loads(text)
