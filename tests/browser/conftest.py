"""Browser tests: a real headless Chromium (Debian's ``chromium`` package) against a real Airflow API server."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's /usr/bin/chromium against a real `airflow api-server`")
