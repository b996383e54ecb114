"""Session-wide test set-up: the throwaway PostgreSQL/Redis servers (tests/services.py) started
on demand are stopped when the session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import services


def pytest_report_header() -> str:
    return f"ksr test services: KSR_TEST_SERVICES={services.mode()} (see tests/services.py)"


@pytest.fixture(scope="session", autouse=True)
def _stop_throwaway_servers() -> Iterator[None]:
    yield
    services.stop_all()
