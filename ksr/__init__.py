"""ksr: a SIP server whose routing logic is a Lua or Python script calling KSR (KEMI)."""

__version__ = "0.1.0"
