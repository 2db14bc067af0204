"""``steps.outcome.failure``: what each kind of failed attempt leaves in the ledger, as plain values."""

from __future__ import annotations

import pytest

from paht_bridge.config.deployment import deployment
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, RejectedContent, TransientError
from paht_bridge.steps.outcome import backoff, failure

SPEC = deployment("quang_tri").targets[0].model_copy(update={"max_tries": 5, "retry_base_seconds": 30, "retry_cap_seconds": 600})
TARGET, SOURCE = SPEC.name, "quangtri_ioc"


def _error(kind: type, system: str = TARGET) -> Exception:
    return kind("it failed", system=system, operation="create", ref="PAHT-x-1")


@pytest.mark.parametrize(("kind", "doubtful", "sent", "state", "counted"), [
    (TransientError, False, True, "pending", "retry"),  # nothing happened at the target
    (TransientError, True, False, "unknown", "unknown"),  # a lookup failed: still in doubt
    (TransientError, True, True, "pending", "retry"),  # the lookup found nothing, then the create failed cleanly
    (AmbiguousError, False, True, "unknown", "unknown"),  # the target may have acted
    (MalformedResponse, False, True, "unknown", "unknown"),  # an unreadable answer may follow a commit
    (PermanentError, False, True, "dead", "dead"),
])
def test_each_kind_of_failure_at_the_target(kind: type, doubtful: bool, sent: bool, state: str, counted: str) -> None:
    verdict = failure(_error(kind), SPEC, tries=2, doubtful=doubtful, sent=sent)
    assert (verdict.state, verdict.counted_as) == (state, counted)
    assert verdict.against_target is (state != "dead")
    assert verdict.retry_in == (None if state == "dead" else backoff(SPEC, 2))


def test_a_citizen_app_that_fails_an_attachment_never_counts_against_the_target() -> None:
    retry = failure(_error(TransientError, SOURCE), SPEC, tries=1, doubtful=False, sent=False)
    doubtful = failure(_error(MalformedResponse, SOURCE), SPEC, tries=1, doubtful=True, sent=False)
    refused = failure(_error(RejectedContent, SOURCE), SPEC, tries=1, doubtful=False, sent=False)
    assert (retry.state, retry.counted_as, retry.against_target) == ("pending", "source_retry", False)
    assert (doubtful.state, doubtful.counted_as) == ("unknown", "source_unknown")
    assert (refused.state, refused.against_target) == ("dead", False)


def test_tries_run_out_into_a_dead_letter_with_the_last_error() -> None:
    verdict = failure(_error(TransientError), SPEC, tries=5, doubtful=False, sent=True)
    assert verdict.state == "dead" and verdict.reason.startswith("gave up after 5 tries: ") and "it failed" in verdict.reason


def test_a_failed_probe_gives_its_try_back_so_an_outage_dead_letters_nothing() -> None:
    verdict = failure(_error(AmbiguousError), SPEC, tries=5, doubtful=False, sent=True, probe=True)
    assert (verdict.state, verdict.tries) == ("unknown", 4)


def test_a_bug_is_a_dead_letter_naming_it_not_a_crash_of_the_batch() -> None:
    verdict = failure(KeyError("agency"), SPEC, tries=1, doubtful=False, sent=False)
    assert (verdict.state, verdict.against_target) == ("dead", False)
    assert verdict.reason == "internal error: KeyError: 'agency'"


def test_back_off_doubles_and_is_capped() -> None:
    assert [backoff(SPEC, n) for n in (1, 2, 3, 6)] == [30, 60, 120, 600]
