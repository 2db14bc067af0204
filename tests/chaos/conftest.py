"""The chaos suite's stand-ins: no seeded reports (each test loads its own backlog), a short
client timeout, so a stall after commit turns into a client-side timeout quickly, and the
fault layer's dice seeded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paht_bridge.sandbox.stack import SandboxStack


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxStack]:
    stack = SandboxStack(seed_reports=False)
    urls = stack.start()
    for key, value in urls.connection_env(timeout=0.5, citizen_timeout=30).items():
        monkeypatch.setenv(key, value)
    for chaos in stack.chaos.values():
        chaos.configure(stall_seconds=1.0, seed=20261123)
    yield stack
    stack.stop()
