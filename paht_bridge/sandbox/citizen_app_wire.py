"""The citizen-app stand-in's shapes: a seeded report (also the body of ``POST
/_sandbox/reports``), an agency's outcome as the API takes it, an injected fault, and the
app's own names for categories and statuses."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

CATEGORY_NAMES = {
    "XD": "Trật tự xây dựng",
    "MT": "Vệ sinh môi trường",
    "GT": "Hạ tầng giao thông",
    "DT": "Hạ tầng đô thị",
    "AN": "An ninh trật tự",
    "DV": "Chất lượng dịch vụ",
    "CB": "Cán bộ chậm trễ, gây phiền hà",
}


class AppStatus(StrEnum):
    """The app's own report statuses, as its citizens see them."""

    NEW = "moi_tiep_nhan"  # just received
    IN_PROGRESS = "dang_xu_ly"  # being handled
    DONE = "da_xu_ly"  # answered
    INVALID = "khong_hop_le"  # rejected as not a valid report


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedAdmin(_Seed):
    scheme: Literal["legacy", "2025"]
    province: str
    district: str | None = None
    ward: str


class SeedLocation(_Seed):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str
    admin: SeedAdmin


class SeedReporter(_Seed):
    name: str
    phone: str


class SeedAttachment(_Seed):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    name: str
    media_type: str


class SeedReport(_Seed):
    id: str = Field(min_length=1)
    source: str | None = None
    channel: Literal["app", "portal", "hotline", "fanpage"] = "app"
    category: str
    title: str
    description: str
    created_at: AwareDatetime
    location: SeedLocation
    reporter: SeedReporter
    attachments: list[SeedAttachment] = []


class OutcomeIn(BaseModel):
    """An agency's public answer as the app's API takes it."""

    model_config = ConfigDict(extra="forbid")

    status: AppStatus
    answer: str = Field(min_length=1)
    answer_unit: str = Field(min_length=1)
    answered_at: AwareDatetime


class FaultIn(BaseModel):
    """A fault for the next ``count`` API calls: an error status, an HTML page served with 200
    (a proxy's error page), a truncated JSON body, or only a delay."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["error", "html", "invalid_json", "delay"] = "error"
    count: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=400, le=599)
    delay_s: float = Field(default=0.0, ge=0, le=60)
