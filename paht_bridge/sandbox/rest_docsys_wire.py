"""The TDOffice-style stand-in's JSON shapes: what a sender posts, what the API answers, and
what the ``/_sandbox`` controls take and show.

The vendor's side of the wire, with its Vietnamese names; the REST connector keeps its own
models, so a drift between the two shows up in the tests.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

#: Độ khẩn (urgency), in edXML's order: normal, urgent, very urgent, express, timed express.
Priority = Literal["BINH_THUONG", "KHAN", "THUONG_KHAN", "HOA_TOC", "HOA_TOC_HEN_GIO"]
#: Mức độ hài lòng (satisfaction): satisfied, not satisfied.
RatingValue = Literal["HAI_LONG", "KHONG_HAI_LONG"]

ORGAN_CODE = r"^[0-9A-Z]+(\.[0-9A-Z]+)*$"  # Decision 20/2020/QĐ-TTg organisation codes


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Organisation(Wire):
    """Đơn vị (organisation): ``ma`` its code, ``ten`` its name."""

    ma: str = Field(min_length=1, max_length=35, pattern=ORGAN_CODE)
    ten: str = Field(min_length=1, max_length=250)


class Place(Wire):
    """Địa điểm (where the report was made): address, latitude, longitude, administrative unit."""

    dia_chi: str | None = Field(default=None, max_length=500)
    vi_do: float | None = Field(default=None, ge=-90, le=90)
    kinh_do: float | None = Field(default=None, ge=-180, le=180)
    don_vi_hanh_chinh: str | None = Field(default=None, max_length=250)


class ReporterIn(Wire):
    """Người phản ánh (the reporter): personal data, present only when the IOC's rules allow."""

    ho_ten: SecretStr | None = None  # secret, so no repr or test failure prints it
    so_dien_thoai: SecretStr | None = None


class IncomingDocument(Wire):
    """A văn bản đến (incoming document) as the sender describes it.

    so_ky_hieu: the sender's reference (number/notation), unique per sender; trich_yeu:
    subject; noi_dung: content; han_xu_ly: deadline; do_khan: urgency; linh_vuc: category;
    ma_phan_anh: the report's key at the IOC; ngay_gui: when it was sent.
    """

    so_ky_hieu: str = Field(min_length=1, max_length=100)
    ma_phan_anh: str | None = Field(default=None, max_length=200)
    trich_yeu: str = Field(min_length=1, max_length=500)
    noi_dung: str = Field(min_length=1, max_length=10_000)
    don_vi_nhan: Organisation
    don_vi_gui: Organisation
    ngay_gui: AwareDatetime | None = None
    han_xu_ly: date
    do_khan: Priority = "BINH_THUONG"
    linh_vuc: str | None = Field(default=None, max_length=100)
    dia_diem: Place | None = None
    nguoi_phan_anh: ReporterIn | None = None


class RatingIn(Wire):
    """Đánh giá (rating): ma_danh_gia its id at the IOC, muc_do the level, nhan_xet a comment."""

    ma_danh_gia: str = Field(min_length=1, max_length=100)
    muc_do: RatingValue
    nhan_xet: str | None = Field(default=None, max_length=2000)
    thoi_gian: AwareDatetime | None = None


class AttachmentOut(BaseModel):
    """Tệp đính kèm (attachment): name, media type, size in bytes, SHA-256."""

    ten: str
    loai: str
    kich_thuoc: int
    sha256: str


class CreatedOut(BaseModel):
    id: str
    so_ky_hieu: str
    trang_thai: str
    existed: bool
    tep_dinh_kem: list[AttachmentOut]


class DocumentOut(BaseModel):
    """A record as the API shows it; the reporter's personal data is never echoed back."""

    id: str
    so_ky_hieu: str
    ma_phan_anh: str | None
    trich_yeu: str
    don_vi_nhan: Organisation
    han_xu_ly: date
    do_khan: str
    linh_vuc: str | None
    trang_thai: str
    ngay_den: datetime  # when it arrived
    ngay_cap_nhat: datetime  # last status change
    y_kien_xu_ly: str | None  # the agency's answer (or its reason for returning it)
    don_vi_xu_ly: str | None  # the unit that answered
    tep_dinh_kem: list[AttachmentOut]


class DocumentListOut(BaseModel):
    items: list[DocumentOut]


class ChangeOut(BaseModel):
    seq: int
    id: str
    so_ky_hieu: str
    trang_thai: str
    thoi_gian: datetime
    y_kien_xu_ly: str | None
    don_vi_xu_ly: str | None


class ChangesOut(BaseModel):
    items: list[ChangeOut]
    next_cursor: str
    has_more: bool


class RatingOut(BaseModel):
    ma_danh_gia: str
    existed: bool


# --- control plane shapes (English: these are for tests and the demo, not the vendor API) ---


class SandboxRating(BaseModel):
    rating_id: str
    level: str
    comment: str | None


class SandboxDocument(BaseModel):
    """Everything a test asserts about one record; reporter data only as which fields arrived."""

    id: str
    external_ref: str
    agency: str
    status: str
    create_calls: int
    created_count: int
    attachments: list[AttachmentOut]
    ratings: list[SandboxRating]
    reporter_fields: list[str]


class Faults(BaseModel):
    """Faults to inject into ``/api`` calls; the ``*_next`` counters are used up one call at a time."""

    model_config = ConfigDict(extra="forbid")

    latency: float = Field(default=0.0, ge=0, le=60)  # seconds added before every answer
    fail_next: int = Field(default=0, ge=0)  # answer ``fail_status`` without doing anything
    fail_status: int = Field(default=503, ge=400, le=599)
    stall_after_commit_next: int = Field(default=0, ge=0)  # commit a create, then answer late
    stall_seconds: float = Field(default=5.0, ge=0, le=300)
    malformed_next: int = Field(default=0, ge=0)  # do the work, then answer with garbage
    malformed: Literal["html", "truncated", "wrong_shape"] = "html"


class ApiError(Exception):
    """An error answer in the vendor's shape: ``{"error", "message", "fields"}``."""

    def __init__(self, status: int, error: str, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, "fields": fields or []}
