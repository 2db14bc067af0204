"""``settle_heap``: what a task process holds before its first step is hidden from the
cyclic collector once; later steps in the same process freeze nothing more."""

from __future__ import annotations

import gc

import pytest

from paht_bridge import tasks


def test_the_first_step_freezes_the_heap_and_later_ones_leave_it(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    monkeypatch.setattr(tasks, "_settled", False)
    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])
    try:
        tasks.settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imported Airflow, SQLAlchemy, pydantic... objects
        assert gc.get_threshold() == (tasks.YOUNG_GENERATION, *before[1:])  # a batch's objects are scanned less often
        garbage_of_a_step = [[i] for i in range(5000)]
        tasks.settle_heap()
        assert gc.get_freeze_count() == frozen  # a later step's objects stay collectable
        del garbage_of_a_step
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
