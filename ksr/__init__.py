"""ksr: a SIP server whose routing logic is a Lua or Python script calling KSR (KEMI)."""

from . import native

__version__ = "0.1.0"

# First of all: the compiled modules, or their sources when they must not run (docs/build.md).
native.select()
