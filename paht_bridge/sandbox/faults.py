"""A fault armed for a stand-in's next few API calls (``POST /_sandbox/faults``).

Shared by the citizen stand-ins: a test arms one fault (a status, a delay, a broken body...)
for ``count`` calls, each call takes it until none is left. The state class provides
``_lock`` and sets ``_fault = None`` and ``_faults_left = 0`` in its constructor.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

#: What a reverse proxy in front of a citizen app serves, with 200, when the app is down.
BAD_GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


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


def add_fault_routes(router: APIRouter, state: FaultSlot, model: type[BaseModel]) -> None:
    """``POST /faults`` (arm ``model``, the stand-in's own fault shape) and ``DELETE /faults``."""

    def set_fault(fault: Any) -> dict[str, Any]:
        state.set_fault(fault)
        return {"armed": fault.count, "mode": fault.mode}

    set_fault.__annotations__ = {"fault": model, "return": dict[str, Any]}  # the body FastAPI validates

    def clear_faults() -> dict[str, bool]:
        state.clear_faults()
        return {"cleared": True}

    router.add_api_route("/faults", set_fault, methods=["POST"])
    router.add_api_route("/faults", clear_faults, methods=["DELETE"])


def bad_gateway_page() -> Response:
    """The proxy's error page, as an injected ``html`` fault answers it."""
    return Response(BAD_GATEWAY_PAGE, status_code=200, media_type="text/html")
