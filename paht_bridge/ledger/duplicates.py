"""Duplicate reports (phản ánh trùng): is a new report the same problem as an earlier one?

Pure functions over plain values: the ingest step loads the few candidates (same
deployment, same category, reported within the time window) and asks ``best_match``.
Two reports are one problem when all of these hold (thresholds from the deployment's
``duplicates`` section):

- **near in time**: reported at most ``max_hours`` apart (either order: a report from a
  slower app may arrive after a later one from a faster app);
- **near in place**: at most ``max_distance_m`` apart by great-circle (haversine) distance
  when both have a position; when either has none, the same 2025-scheme ward (if
  ``same_ward_when_no_position``);
- **same category** (if ``same_category``);
- **similar text**: ``text_similarity`` at least ``min_text_similarity``.

Text similarity is a token-set Jaccard index (shared words ÷ all words) over the title
and description, and over the titles alone; the higher of the two counts, because a title is
the citizen's own one-line summary and descriptions vary most in length. Words are NFC
normalised, accent-folded (``đ`` → ``d``, ``ổ`` → ``o``), lower-cased, and Vietnamese filler
words (and, of, please, the authorities…) are left out, so "Ổ gà lớn trước cổng trường" and
"o ga lon truoc cong truong" are the same words.

Why not a fuzzy-matching library (rapidfuzz) or difflib: no new dependency for a
comparison this small, and a word-set index is order-free (citizens tell the same thing in
any order), explainable to IOC staff ("60 % of the words are shared") and strict on the side
that matters: a missed link only costs one more document, as without this feature, while a
wrong link would hide a citizen's distinct problem.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from paht_bridge.config.deployment import Duplicates

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)

#: Accent-folded Vietnamese words that say nothing about the problem itself: function words
#: and the formulas of a petition ("kính đề nghị ... sớm xử lý"). Folding merges words, so a
#: syllable stays in when one of its accented forms tells something: "quan" (cơ quan, but
#: quán: a shop), "nang" (chức năng, but nặng: heavy), "tam" (quan tâm, but bãi tắm: a beach).
STOP_WORDS = frozenset("""
    a ah ai anh ba bi boi cac cai cho chi chua co con cua cung da dang de den deu di do duoc gi gium giup hay
    het hien hoac khi khong kinh la lai lam luc ma mong moi mot nay nen neu nguoi nhieu nhung nhu noi o oi ra rang
    rat roi sao se so ta tai the thi thoi toi tren trong tu tung va vao ve vi voi vua xin xu ly
    chuc dan nghi ngay tinh trang lien tuc kip som yeu cau phan anh giai quyet
""".split())

_WORD = re.compile(r"[a-z0-9]+")


class Sighting(BaseModel):
    """What matching needs to know of one report (no personal data)."""

    model_config = ConfigDict(frozen=True)

    report_id: int | None = None  # the ledger's id, for a report already there
    category: str
    created_at: AwareDatetime
    lat: float | None = None
    lon: float | None = None
    ward_code: str | None = None  # 2025 scheme
    title: str
    description: str = ""


class Match(BaseModel):
    """A new report found to be the same problem as ``primary_id``, and why."""

    primary_id: int
    text_similarity: float
    distance_m: float | None  # None when matched by ward (a report had no position)
    hours_apart: float
    by: Literal["position", "ward"]


def fold(text: str) -> str:
    """NFC, accents off (``đ`` → ``d``), lower case: how a citizen typing without a Vietnamese keyboard writes."""
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFC", text))
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return bare.replace("đ", "d").replace("Đ", "D").lower()


@lru_cache(maxsize=8192)
def words(text: str) -> frozenset[str]:
    """The telling words of ``text``: folded, filler words out."""
    return frozenset(w for w in _WORD.findall(fold(text)) if w not in STOP_WORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def text_similarity(a: Sighting, b: Sighting) -> float:
    """0..1: the higher of the word-set Jaccard index of title + description and of titles alone."""
    whole = jaccard(words(f"{a.title} {a.description}"), words(f"{b.title} {b.description}"))
    return max(whole, jaccard(words(a.title), words(b.title)))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def window(created_at: datetime, rules: Duplicates) -> tuple[datetime, datetime]:
    """The reporting times a candidate may have (for the ledger query)."""
    span = timedelta(hours=rules.max_hours)
    return created_at - span, created_at + span


def _has_position(s: Sighting) -> bool:
    return s.lat is not None and s.lon is not None


def compare(new: Sighting, candidate: Sighting, rules: Duplicates) -> Match | None:
    """``new`` against one earlier report: a ``Match`` when every rule holds."""
    if candidate.report_id is None or candidate.report_id == new.report_id:
        return None
    if rules.same_category and candidate.category != new.category:
        return None
    hours = abs((new.created_at - candidate.created_at).total_seconds()) / 3600
    if hours > rules.max_hours:
        return None
    if _has_position(new) and _has_position(candidate):
        distance: float | None = distance_m(new.lat, new.lon, candidate.lat, candidate.lon)  # type: ignore[arg-type]
        if distance > rules.max_distance_m:  # type: ignore[operator]
            return None
        by: Literal["position", "ward"] = "position"
    elif rules.same_ward_when_no_position and new.ward_code and new.ward_code == candidate.ward_code:
        distance, by = None, "ward"
    else:
        return None
    similarity = text_similarity(new, candidate)
    if similarity < rules.min_text_similarity:
        return None
    return Match(primary_id=candidate.report_id, text_similarity=round(similarity, 3),
                 distance_m=None if distance is None else round(distance, 1), hours_apart=round(hours, 2), by=by)


def best_match(new: Sighting, candidates: Iterable[Sighting], rules: Duplicates) -> Match | None:
    """The most similar matching candidate; ties go to the nearer, then the earlier-reported one."""
    found = [(m, c) for c in candidates if (m := compare(new, c, rules)) is not None]
    if not found:
        return None
    best = min(found, key=lambda mc: (-mc[0].text_similarity, mc[0].distance_m if mc[0].distance_m is not None else math.inf,
                                      mc[1].created_at, mc[0].primary_id))
    return best[0]
