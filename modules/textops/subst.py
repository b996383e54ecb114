"""sed-like substitution expressions: ``/re/replacement/flags`` with ``\\1`` groups.

The first character is the delimiter; ``\\<delim>`` escapes it. Flags: ``i`` ignore case, ``g``
replace every match, ``s`` let ``.`` match newlines. Regexes are POSIX-extended-ish in Kamailio;
Python's ``re`` accepts the common subset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Subst:
    regex: re.Pattern[str]
    repl: str | Callable[[re.Match[str]], str]  # Python replacement syntax or a function
    all: bool

    def apply(self, text: str) -> tuple[str, int]:
        return self.regex.subn(self.repl, text, count=0 if self.all else 1)


def _split(expr: str) -> list[str] | None:
    if len(expr) < 2:
        return None
    delim = expr[0]
    parts: list[str] = []
    cur: list[str] = []
    i = 1
    while i < len(expr):
        c = expr[i]
        if c == "\\" and i + 1 < len(expr) and expr[i + 1] == delim:
            cur.append(delim)
            i += 2
            continue
        if c == "\\" and i + 1 < len(expr):
            cur.append(expr[i : i + 2])
            i += 2
            continue
        if c == delim:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts if len(parts) == 3 else None


def _py_repl(repl: str) -> str:
    """sed replacement -> Python's: \\N stays, & is the whole match, backslashes kept."""
    out: list[str] = []
    i = 0
    while i < len(repl):
        c = repl[i]
        if c == "\\" and i + 1 < len(repl):
            nxt = repl[i + 1]
            if nxt.isdigit():
                out.append(f"\\g<{nxt}>")
            elif nxt == "&":
                out.append("&")
            elif nxt == "\\":
                out.append("\\\\")
            elif nxt == "n":
                out.append("\n")
            elif nxt == "r":
                out.append("\r")
            elif nxt == "t":
                out.append("\t")
            else:
                out.append(nxt)
            i += 2
            continue
        if c == "&":
            out.append("\\g<0>")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def parse_subst(expr: str) -> Subst | None:
    parts = _split(expr)
    if parts is None:
        return None
    pattern, repl, flags = parts
    if any(f not in "igs" for f in flags):
        return None
    reflags = re.M
    if "i" in flags:
        reflags |= re.I
    if "s" in flags:
        reflags |= re.S
    try:
        rx = re.compile(pattern, reflags)
    except re.error:
        return None
    return Subst(rx, _py_repl(repl), "g" in flags)


def compile_re(pattern: str) -> re.Pattern[str] | None:
    """textops matching: extended regex, case-insensitive, newline-aware (REG_NEWLINE)."""
    try:
        return re.compile(pattern, re.I | re.M)
    except re.error:
        return None
