"""JSON text as Kamailio's jsonrpcs prints it (its cJSON-derived printer).

``pretty=True`` matches ``pretty_format=1``: object members one per line, indented with tabs,
``"key":<TAB>value``; arrays stay on one line with ``", "`` between items. ``pretty=False`` is
the compact form without any spaces. Clients that parse JSON do not care; people and scripts
that diff replies against Kamailio's do.
"""

from __future__ import annotations

import json
import math
from typing import Any

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def dumps(value: Any, pretty: bool = True) -> str:
    return _value(value, 0, pretty)


def _number(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return "null"  # JSON has no NaN; cJSON prints null too
    if v == int(v) and _INT_MIN <= v <= _INT_MAX:
        return str(int(v))
    if v == math.floor(v) and abs(v) < 1e60:
        return f"{v:.0f}"
    if abs(v) < 1e-6 or abs(v) > 1e9:
        return f"{v:e}"
    return f"{v:f}"


def _value(v: Any, depth: int, pretty: bool) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _number(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return _object(v, depth, pretty)
    if isinstance(v, (list, tuple)):
        sep = ", " if pretty else ","
        return "[" + sep.join(_value(x, depth + 1, pretty) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)  # anything else: its text


def _object(obj: dict[Any, Any], depth: int, pretty: bool) -> str:
    if not obj:
        return "{\n" + "\t" * max(depth - 1, 0) + "}" if pretty else "{}"
    if not pretty:
        return (
            "{"
            + ",".join(
                f"{json.dumps(str(k), ensure_ascii=False)}:{_value(v, depth + 1, False)}"
                for k, v in obj.items()
            )
            + "}"
        )
    depth += 1
    pad = "\t" * depth
    members = [
        f"{pad}{json.dumps(str(k), ensure_ascii=False)}:\t{_value(v, depth, True)}"
        for k, v in obj.items()
    ]
    return "{\n" + ",\n".join(members) + "\n" + "\t" * (depth - 1) + "}"
