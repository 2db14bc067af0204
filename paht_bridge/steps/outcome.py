"""What a failed delivery attempt means for the ledger: one pure function, ``failure``.

Errors are typed by the connectors: *transient* (nothing happened: try again later),
*permanent* (it will never work: dead letter with the reason), *ambiguous* (the target may
have acted: the delivery is in doubt and is looked up by its reference before any retry).
An unreadable answer to a call counts as ambiguous: the target may have committed before it
answered badly. A failure of the citizen app while handing over an attachment says nothing
about the target, so it never counts against the target's circuit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paht_bridge.config.deployment import Target
from paht_bridge.connectors.errors import AmbiguousError, ConnectorError, MalformedResponse, PermanentError, TransientError

#: The length of a reason kept in the ledger and shown on the IOC page.
REASON_CHARS = 500


@dataclass(frozen=True)
class Failure:
    """Where a delivery goes after a failed attempt."""

    #: ``pending``: retry by sending; ``unknown``: look it up by reference first; ``dead``: a dead letter.
    state: Literal["pending", "unknown", "dead"]
    reason: str
    #: What the step's result counts it as (``retry``, ``unknown``, ``dead``, ``source_retry``...).
    counted_as: str
    #: Whether the target's circuit breaker counts it as one of the target's failures.
    against_target: bool
    #: The delivery's tries after this attempt (a failed circuit probe gives its try back).
    tries: int
    #: Seconds until the next try (None for a dead letter).
    retry_in: float | None


def failure(error: BaseException, spec: Target, *, tries: int, doubtful: bool, sent: bool, probe: bool = False) -> Failure:
    """The verdict on one failed attempt at a delivery to ``spec``.

    ``tries``: the delivery's tries, this attempt included (it was counted when the delivery
    was marked *sending*); ``doubtful``: the delivery may already exist at the target (it was
    left *sending* or *unknown*); ``sent``: the create request went out in this attempt;
    ``probe``: this attempt was the one call a half-open circuit lets through.
    """
    if not isinstance(error, ConnectorError):  # a bug or bad data in this one delivery: it must not block the rest
        return _dead(f"internal error: {error.__class__.__name__}: {error}", tries)
    if error.system != spec.name:
        # The citizen app failed to hand over an attachment: the document was never asked for.
        if isinstance(error, PermanentError) and not isinstance(error, MalformedResponse):
            return _dead(str(error), tries)
        return _retry(spec, error, "unknown" if doubtful else "pending", tries, source=True)
    if isinstance(error, (AmbiguousError, MalformedResponse)):
        return _retry(spec, error, "unknown", tries, gives_try_back=probe and sent)
    if isinstance(error, TransientError):
        # Nothing happened at the target; a delivery in doubt that was never sent stays in doubt.
        return _retry(spec, error, "unknown" if doubtful and not sent else "pending", tries, gives_try_back=probe and sent)
    return _dead(str(error), tries)


def backoff(spec: Target, tries: int) -> float:
    """Seconds before the next try: base × 2^(tries − 1), capped."""
    return min(spec.retry_base_seconds * 2 ** max(tries - 1, 0), spec.retry_cap_seconds)


def _retry(spec: Target, error: ConnectorError, state: Literal["pending", "unknown"], tries: int, *,
           source: bool = False, gives_try_back: bool = False) -> Failure:
    if gives_try_back:
        tries = max(tries - 1, 0)  # an outage of the back end must not dead-letter the reports waiting for it
    elif tries >= spec.max_tries:
        return _dead(f"gave up after {tries} tries: {error}", tries)
    counted = ("source_" if source else "") + ("unknown" if state == "unknown" else "retry")
    return Failure(state=state, reason=str(error)[:REASON_CHARS], counted_as=counted, against_target=not source,
                   tries=tries, retry_in=backoff(spec, tries))


def _dead(reason: str, tries: int) -> Failure:
    return Failure(state="dead", reason=reason[:REASON_CHARS], counted_as="dead", against_target=False, tries=tries, retry_in=None)
