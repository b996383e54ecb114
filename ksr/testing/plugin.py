"""pytest plugin: the ``ksr_script`` fixture builds a ScriptHarness for a routing script.

def test_keepalive(ksr_script):
    h = ksr_script("scripts/default.lua", modules=["sl"])
    assert h.request("OPTIONS").code == 200
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported when used: a plugin loads in every pytest run of the venv
    from .harness import ScriptHarness


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ksr_script(path): the routing script a test is about")


@pytest.fixture
def ksr_script(request: pytest.FixtureRequest) -> Callable[..., ScriptHarness]:
    """Factory: ``ksr_script(path=None, **settings)``; without a path, the script named by
    the test's ``@pytest.mark.ksr_script(path)`` marker. Settings are ScriptHarness's."""

    def make(path: str | Path | None = None, **settings: Any) -> ScriptHarness:
        from .harness import ScriptHarness

        if path is None:
            marker = request.node.get_closest_marker("ksr_script")
            if marker is None or not marker.args:
                raise pytest.UsageError("ksr_script(): give a script path or mark the test")
            path = marker.args[0]
        return ScriptHarness(path, **settings)

    return make
