"""One real ``paht demo`` in its own process, shared by the tests that need a lived-in ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoRun:
    home: Path  # PAHT_HOME of the demo: ledger.sqlite, demo.log, airflow/ (metadata DB, logs)
    stdout: str
    stderr: str
    #: what the demo left under its home, as it ended (later tests add files of their own there):
    #: path relative to ``home`` → permission bits; folders end with "/"
    left: dict[str, int]

    @property
    def ledger_url(self) -> str:
        return f"sqlite:///{self.home / 'ledger.sqlite'}"


def run_demo(home: Path) -> DemoRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAHT_"))}
    result = subprocess.run([str(Path(sys.executable).with_name("paht")), "demo", "--home", str(home)],
                            env={**env, "COLUMNS": "120"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    left = {f"{path.relative_to(home)}{'/' if path.is_dir() else ''}": path.stat().st_mode & 0o777
            for path in [home, *home.rglob("*")]}
    return DemoRun(home=home, stdout=result.stdout, stderr=result.stderr, left=left)
