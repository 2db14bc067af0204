"""The agency desk: moves documents in a stand-in document system through their life.

Each document system stores its documents its own way and speaks its own status codes;
the desk only knows the stages below, and each stand-in maps them to its codes. One
``tick`` moves every open document one stage on, so a demo shows every stage; a clock
thread can tick on its own (``start_clock``). Which documents are refused is a pure
function of the external reference, so runs are repeatable.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable
from enum import StrEnum


class Stage(StrEnum):
    ARRIVED = "arrived"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    REFUSED = "refused"


NEXT_STAGE = {
    Stage.ARRIVED: Stage.ACCEPTED,
    Stage.ACCEPTED: Stage.ASSIGNED,
    Stage.ASSIGNED: Stage.IN_PROGRESS,
    Stage.IN_PROGRESS: Stage.ANSWERED,
}
FINAL_STAGES = {Stage.ANSWERED, Stage.REFUSED}

#: Documents re-routed by the IOC end their reference in ``-R<n>``; the desk never refuses them.
REROUTED = re.compile(r"-R\d+$")


def refuses(external_ref: str, refuse_one_in: int = 7) -> bool:
    """Whether the desk refuses a document (wrong agency), as the first stage after arrival."""
    if refuse_one_in <= 0 or REROUTED.search(external_ref):
        return False
    return zlib.crc32(external_ref.encode()) % refuse_one_in == 0


def next_stage(stage: Stage, external_ref: str, refuse_one_in: int = 7) -> Stage | None:
    """The stage a document moves to on the next tick, or None when it is final."""
    if stage in FINAL_STAGES:
        return None
    if stage is Stage.ARRIVED and refuses(external_ref, refuse_one_in):
        return Stage.REFUSED
    return NEXT_STAGE[stage]


def answer_text(subject: str, agency_name: str) -> str:
    return (
        f"{agency_name} đã tiếp nhận, kiểm tra thực tế và xử lý phản ánh «{subject[:120]}». "
        "Đơn vị đã chỉ đạo khắc phục dứt điểm; kết quả đã được kiểm tra lại tại hiện trường."
    )


def refusal_text(agency_name: str) -> str:
    return f"{agency_name}: nội dung phản ánh không thuộc thẩm quyền giải quyết, đề nghị chuyển đơn vị khác."


class Clock:
    """Calls ``tick`` every ``interval`` seconds in a daemon thread until stopped."""

    def __init__(self, tick: Callable[[], object], interval: float) -> None:
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="desk-clock")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    def start(self) -> "Clock":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
