"""Unit-test routing scripts offline with the real KSR bindings (the ``ksr.testing`` kit).

See docs/testing-scripts.md. The pytest plugin (``ksr.testing.plugin``, registered as a
``pytest11`` entry point) adds the ``ksr_script`` fixture.
"""

from .capture import CaptureTransport, Sent
from .harness import ScriptHarness
from .messages import build_request
from .outcome import Outcome, RouteRun

__all__ = ["CaptureTransport", "Outcome", "RouteRun", "ScriptHarness", "Sent", "build_request"]
