"""Typed connector errors, so callers decide by type and never by parsing messages.

Transient (retry later), permanent (dead-letter with the reason), ambiguous (the call may
have taken effect: look the document up by its reference before retrying).
"""

from __future__ import annotations


class ConnectorError(Exception):
    """An outside system failed; carries which system, which operation and which report."""

    def __init__(self, message: str, *, system: str, operation: str, ref: str | None = None) -> None:
        self.system = system
        self.operation = operation
        self.ref = ref
        self.message = message
        where = f"{system}.{operation}" + (f" ref={ref}" if ref else "")
        super().__init__(f"{where}: {message}")



class TransientError(ConnectorError):
    """Nothing happened remotely (refused connection, 5xx before processing, 429): retry later."""


class PermanentError(ConnectorError):
    """The system rejected the request as invalid: retrying the same request cannot help."""


class AmbiguousError(ConnectorError):
    """The request may or may not have taken effect (a timeout or a dropped connection after
    sending): look it up by its external reference before any retry."""


class MalformedResponse(PermanentError):
    """The system answered with something we cannot read (HTML error page, bad XML, wrong shape)."""


class RejectedContent(PermanentError):
    """The system sent content we refuse to pass on: a file whose bytes are not what it was
    declared as (an HTML page or a program labelled as a photo), an empty file, one over the
    connector's limits or of a type it does not allow. Fetching it again gets the same bytes."""

