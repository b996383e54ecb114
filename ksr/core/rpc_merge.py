"""How the answers of several worker processes to one RPC command are merged.

A module says it on its command: ``@rpc("dlg.list", merge=JOIN)``. Worker processes
(``ksr run -n N``) then answer such a command for all workers (ksr/core/cluster_rpc.py); a
command without ``merge`` answers for the worker that received it, which is right for state
every worker shares (usrloc, htable: ksr/core/replication.py).
"""

from __future__ import annotations

from typing import Any

SUM = "sum"  # numbers add up, maps merge key by key, lists are joined (``merge``)
JOIN = SUM  # lists joined: the same rule
FIRST = "first"  # run on one worker after the other until one succeeds (end one dialog)
# run on every worker (a script reload): this worker's answer, or an error when any refused
EVERY = "every"
POLICIES = frozenset({SUM, FIRST, EVERY})


def merge(a: Any, b: Any) -> Any:
    """Numbers add up, numeric strings too, maps merge key by key, lists are joined."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            if k not in out:
                out[k] = v
            else:
                out[k] = merge(out[k], v)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, str) and isinstance(b, str) and _is_int(a) and _is_int(b):
        return str(int(a) + int(b))
    return a


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()
