"""A self-signed certificate for the TLS tests (openssl CLI), made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import self_signed_certificate


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))
