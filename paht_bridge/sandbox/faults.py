"""A fault armed for a stand-in's next few API calls (``POST /_sandbox/faults``).

Shared by the citizen stand-ins: a test arms one fault (a status, a delay, a broken body...)
for ``count`` calls, each call takes it until none is left. The state class provides
``_lock`` and sets ``_fault = None`` and ``_faults_left = 0`` in its constructor.
"""

from __future__ import annotations

import threading
from typing import Any


class FaultSlot:
    _lock: threading.Lock
    _fault: Any
    _faults_left: int

    def set_fault(self, fault: Any) -> None:
        with self._lock:
            self._fault, self._faults_left = fault, fault.count

    def clear_faults(self) -> None:
        with self._lock:
            self._fault, self._faults_left = None, 0

    def take_fault(self) -> Any:
        """The fault for this API call, if one is still armed."""
        with self._lock:
            if self._faults_left <= 0:
                return None
            self._faults_left -= 1
            return self._fault
