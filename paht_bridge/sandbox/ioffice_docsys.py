"""Stand-in for iOffice Quảng Ninh, a VNPT-iOffice-like SOAP document system (hệ thống quản lý văn bản).

It speaks the vendor's WSDL (``mappings/wsdl/ioffice_quangninh.wsdl``), which
differs from the edXML service in every name: Vietnamese operations, its own namespaces,
a nested ``VanBan`` record, dd/MM/yyyy dates and string status codes. Like a strict real
service it validates every request body against the WSDL's inline schema and answers a
SOAP 1.1 fault naming the failing element; it asks for HTTP Basic auth and rejects a
SOAPAction header that does not match the body. Documents, the change feed, ratings, the
agency desk, counters and fault injection are the edXML stand-in's
(:class:`~paht_bridge.sandbox.edxml_docsys_store.EdxmlDocsysState`); this module only speaks
the other wire format and the vendor's status codes.

Status codes (``TrangThai``), desk stage → vendor code:

=============  ===============  ==============================================
desk stage     TrangThai        meaning
=============  ===============  ==============================================
arrived        CHO_TIEP_NHAN    chờ tiếp nhận: arrived, waiting to be accepted
refused        TU_CHOI          từ chối: refused (not this agency's business)
accepted       DA_TIEP_NHAN     đã tiếp nhận: accepted
assigned       DA_PHAN_CONG     đã phân công: assigned to a handling officer
in_progress    DANG_XU_LY       đang xử lý: in progress
answered       DA_XU_LY         đã xử lý: answered (``YKienXuLy`` holds the answer)
(recall)       THU_HOI          thu hồi: recalled by the sender (control endpoint)
=============  ===============  ==============================================

``DoKhan`` (priority): THUONG 0, KHAN 1, THUONG_KHAN 2, HOA_TOC 3 (edXML's 0-3).
``MucDo`` (rating level): HAI_LONG for ``RatingLevel.SATISFIED``, CHUA_HAI_LONG for
``RatingLevel.NOT_SATISFIED``. Times (``ThoiDiem``, ``ThoiGian``) are
``dd/MM/yyyy HH:mm:ss`` in Vietnam local time with no zone.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from lxml import etree

from paht_bridge.config.folders import shipped_mappings
from paht_bridge.connectors.xml import parse_xml
from paht_bridge.canonical import VIETNAM_TZ, RatingLevel
from paht_bridge.sandbox.desk import Stage
from paht_bridge.sandbox.edxml_docsys import ENTITY_BOMB
from paht_bridge.sandbox.edxml_docsys_store import EdxmlDocsysState, StoredAttachment, StoredDocument, StoredRating
from paht_bridge.sandbox.soap_service import (
    SOAP_NS,
    SchemaCheck,
    SoapFault,
    answer_with_faults,
    basic_auth_ok,
    control_routes,
    local_name,
    soap_payload,
    xml_response,
)

WSDL_FILE = shipped_mappings() / "wsdl" / "ioffice_quangninh.wsdl"
SERVICE_NS = "urn:vnpt:ioffice:vanban:2"
TYPES_NS = "urn:vnpt:ioffice:kieu:2"
NS = {"k": TYPES_NS}
SERVICE_PATH = "/ioffice/VanBanService"
BINDING = f"{{{SERVICE_NS}}}VanBanServiceSoapBinding"
TIME_FORMAT = "%d/%m/%Y %H:%M:%S"

VENDOR_CODES: dict[Stage, str] = {
    Stage.ARRIVED: "CHO_TIEP_NHAN",
    Stage.REFUSED: "TU_CHOI",
    Stage.ACCEPTED: "DA_TIEP_NHAN",
    Stage.ASSIGNED: "DA_PHAN_CONG",
    Stage.IN_PROGRESS: "DANG_XU_LY",
    Stage.ANSWERED: "DA_XU_LY",
}
RECALLED = "THU_HOI"
PRIORITIES = {"THUONG": 0, "KHAN": 1, "THUONG_KHAN": 2, "HOA_TOC": 3}
RATING_LEVELS = {RatingLevel.SATISFIED: "HAI_LONG", RatingLevel.NOT_SATISFIED: "CHUA_HAI_LONG"}
RECALL_NOTE = "Văn bản đã được đơn vị gửi thu hồi."

log = logging.getLogger(__name__)


class IofficeDocsysState(EdxmlDocsysState):
    """The edXML stand-in's store, speaking iOffice status codes in its feed and snapshot."""

    def __init__(self, refuse_one_in: int = 7, username: str = "sandbox", password: str = "sandbox-secret") -> None:
        super().__init__(refuse_one_in=refuse_one_in, username=username, password=password)
        self.recalled: set[str] = set()  # doc ids

    def vendor_code(self, doc: StoredDocument) -> str:
        return RECALLED if doc.doc_id in self.recalled else VENDOR_CODES[doc.stage]

    def _log_change(self, doc: StoredDocument) -> None:
        super()._log_change(doc)
        self.changes[-1] = replace(self.changes[-1], status_code=self.vendor_code(doc))

    def recall(self, external_ref: str) -> StoredDocument | None:
        """The sender withdraws a document (thu hồi): final, and one change in the feed."""
        with self._lock:
            doc = self.find(external_ref)
            if doc is None or doc.doc_id in self.recalled:
                return doc
            self.recalled.add(doc.doc_id)
            doc.stage = Stage.REFUSED  # a final stage, so the desk leaves it alone; the code says THU_HOI
            doc.answer = RECALL_NOTE
            doc.changed_at = datetime.now(VIETNAM_TZ)
            self._log_change(doc)
            return doc

    def _describe(self, doc: StoredDocument) -> dict[str, Any]:
        described = super()._describe(doc)
        report = doc.field_report
        described.update(
            status_code=self.vendor_code(doc),
            category=report.get("LinhVuc"),
            issued=report.get("NgayBanHanh"),
            location={k.removeprefix("ViTri."): v for k, v in report.items() if k.startswith("ViTri.")},
            reporter_sent=any(k.startswith("NguoiPhanAnh.") for k in report),
        )
        return described


# ---------------------------------------------------------------- wire format


def _schema_element() -> etree._Element:
    wsdl = parse_xml(WSDL_FILE.read_bytes())
    return wsdl.find("{http://schemas.xmlsoap.org/wsdl/}types/{http://www.w3.org/2001/XMLSchema}schema")


def _put(parent: etree._Element, name: str, value: object) -> None:
    """Append a child in the types namespace; None is left out, as the schema's optionals allow."""
    if value is None:
        return
    child = etree.SubElement(parent, f"{{{TYPES_NS}}}{name}")
    if isinstance(value, bool):
        child.text = str(value).lower()
    elif isinstance(value, datetime):
        child.text = value.astimezone(VIETNAM_TZ).strftime(TIME_FORMAT)
    else:
        child.text = str(value)


def _envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "k": TYPES_NS})
    etree.SubElement(envelope, f"{{{SOAP_NS}}}Body").append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def fault_envelope(fault: SoapFault) -> bytes:
    el = etree.Element(f"{{{SOAP_NS}}}Fault")
    etree.SubElement(el, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(el, "faultstring").text = fault.reason
    detail = etree.SubElement(etree.SubElement(el, "detail"), f"{{{TYPES_NS}}}LoiDichVu")
    for name, value in (("MaLoi", fault.error_code), ("PhanTu", fault.element), ("DuongDan", fault.path)):
        _put(detail, name, value)
    return _envelope(el)


def _text(el: etree._Element, path: str) -> str | None:
    found = el.find(path, NS)
    return found.text if found is not None else None


def _flatten(el: etree._Element | None) -> dict[str, str]:
    """``ViTri/ViDo`` → ``{"ViTri.ViDo": ...}``: the optional report details, kept as sent."""
    if el is None:
        return {}
    return {f"{local_name(el.tag)}.{local_name(c.tag)}": c.text or "" for c in el if isinstance(c.tag, str)}


def _incoming(van_ban: etree._Element) -> dict[str, Any]:
    """The store's fields from a validated ``VanBan``."""
    details = {"LinhVuc": _text(van_ban, "k:LinhVuc") or "", "NgayBanHanh": _text(van_ban, "k:NgayBanHanh") or ""}
    details |= _flatten(van_ban.find("k:ViTri", NS)) | _flatten(van_ban.find("k:NguoiPhanAnh", NS))
    return {
        "external_ref": _text(van_ban, "k:MaThamChieu"),
        "agency_code": _text(van_ban, "k:DonViNhan/k:MaDinhDanh"),
        "agency_name": _text(van_ban, "k:DonViNhan/k:TenDonVi"),
        "sender_code": _text(van_ban, "k:DonViGui/k:MaDinhDanh"),
        "sender_document_id": "",  # iOffice numbers an incoming document itself; the sender sends none
        "subject": _text(van_ban, "k:TrichYeu"),
        "content": _text(van_ban, "k:NoiDung"),
        "priority": PRIORITIES[_text(van_ban, "k:DoKhan") or "THUONG"],
        "due_date": _text(van_ban, "k:HanXuLy"),
        "field_report": details,
        "attachments": [
            StoredAttachment(
                content_id=f"tep-{i}",
                name=_text(tep, "k:TenTep") or "",
                content_type=_text(tep, "k:KieuTep") or "",
                data=base64.b64decode(_text(tep, "k:NoiDung") or ""),  # the schema checked it is base64
            )
            for i, tep in enumerate(van_ban.iterfind("k:TepDinhKem", NS), start=1)
        ],
    }


def _status_fields(parent: etree._Element, state: IofficeDocsysState, doc: StoredDocument) -> None:
    closed = doc.stage in (Stage.ANSWERED, Stage.REFUSED)
    for name, value in (
        ("MaVanBan", doc.doc_id),
        ("MaThamChieu", doc.external_ref),
        ("TrangThai", state.vendor_code(doc)),
        ("ThoiDiem", doc.changed_at),
        ("YKienXuLy", doc.answer if closed else None),
        ("DonViXuLy", doc.agency_name if closed else None),
    ):
        _put(parent, name, value)


def _response(operation: str) -> etree._Element:
    return etree.Element(f"{{{TYPES_NS}}}{operation}Response")


# ---------------------------------------------------------------- operations


def op_receive(state: IofficeDocsysState, payload: etree._Element) -> etree._Element:
    doc, existed = state.send_document(_incoming(payload.find("k:VanBan", NS)))
    answer = _response("TiepNhanVanBanDen")
    result = etree.SubElement(answer, f"{{{TYPES_NS}}}KetQua")
    _put(result, "MaVanBan", doc.doc_id)
    _put(result, "DaTonTai", existed)
    _put(result, "ThongBao", "Văn bản đã được tiếp nhận trước đó." if existed else "Tiếp nhận văn bản thành công.")
    return answer


def op_find(state: IofficeDocsysState, payload: etree._Element) -> etree._Element:
    doc = state.find(_text(payload, "k:MaThamChieu") or "")
    answer = _response("TraCuuTheoMaThamChieu")
    result = etree.SubElement(answer, f"{{{TYPES_NS}}}KetQua")
    _put(result, "TimThay", doc is not None)
    _put(result, "MaVanBan", doc.doc_id if doc else None)
    return answer


def op_changes(state: IofficeDocsysState, payload: etree._Element) -> etree._Element:
    since = int(_text(payload, "k:TuViTri") or 0)
    page, next_cursor, has_more = state.changes_after(since, int(_text(payload, "k:SoLuong") or 1))
    answer = _response("LayDanhSachBienDong")
    for entry in page:
        change = etree.SubElement(answer, f"{{{TYPES_NS}}}BienDong")
        for name, value in (
            ("ViTri", entry.sequence),
            ("MaVanBan", entry.doc_id),
            ("MaThamChieu", entry.external_ref),
            ("TrangThai", entry.status_code),
            ("ThoiDiem", entry.changed_at),
            ("YKienXuLy", entry.answer),
            ("DonViXuLy", entry.answered_by[1] if entry.answered_by else None),
        ):
            _put(change, name, value)
    _put(answer, "ViTriTiepTheo", next_cursor)
    _put(answer, "ConDuLieu", has_more)
    return answer


def _document(state: IofficeDocsysState, payload: etree._Element) -> StoredDocument:
    doc_id = _text(payload, "k:MaVanBan")
    doc = state.get(doc_id or "")
    if doc is None:
        raise SoapFault("Client", f"Không tìm thấy văn bản có MaVanBan {doc_id!r}", "KHONG_TIM_THAY", "MaVanBan")
    return doc


def op_get(state: IofficeDocsysState, payload: etree._Element) -> etree._Element:
    doc = _document(state, payload)
    answer = _response("LayThongTinVanBan")
    _status_fields(etree.SubElement(answer, f"{{{TYPES_NS}}}ThongTinVanBan"), state, doc)
    return answer


def op_rate(state: IofficeDocsysState, payload: etree._Element) -> etree._Element:
    doc = _document(state, payload)
    already = state.add_rating(
        StoredRating(
            rating_id=_text(payload, "k:MaDanhGia") or "",
            doc_id=doc.doc_id,
            level=_text(payload, "k:MucDo") or "",
            comment=_text(payload, "k:GhiChu"),
            rated_at=_text(payload, "k:ThoiGian") or "",
        )
    )
    answer = _response("GuiDanhGia")
    _put(answer, "DaGhiNhan", True)
    _put(answer, "ThongBao", "Đánh giá đã được ghi nhận trước đó." if already else None)
    return answer


Operation = Callable[[IofficeDocsysState, etree._Element], etree._Element]
OPERATIONS: dict[str, Operation] = {
    "TiepNhanVanBanDen": op_receive,
    "TraCuuTheoMaThamChieu": op_find,
    "LayDanhSachBienDong": op_changes,
    "LayThongTinVanBan": op_get,
    "GuiDanhGia": op_rate,
}


# ---------------------------------------------------------------- HTTP


def _operation(payload: etree._Element, soap_action: str | None) -> str:
    """The operation a request body names; a SOAPAction header, when sent, must agree (as in .NET services)."""
    name = local_name(payload.tag)
    if etree.QName(payload).namespace != TYPES_NS or name not in OPERATIONS:
        raise SoapFault("Client", f"Không có thao tác {name} (unknown operation element)", "THAO_TAC_KHONG_HOP_LE", name)
    action = (soap_action or "").strip('"')
    if action and action != f"{SERVICE_NS}/{name}":
        raise SoapFault("Client", f"SOAPAction {action!r} does not match the body element {name}", "THAO_TAC_KHONG_HOP_LE", name)
    return name


def _recall(state: IofficeDocsysState) -> Callable[[str], dict[str, str]]:
    """``POST /_sandbox/documents/{external_ref}/recall``: the sender withdraws a document."""

    def recall(external_ref: str) -> dict[str, str]:
        doc = state.recall(external_ref)
        if doc is None:
            raise HTTPException(status_code=404, detail=f"no document with MaThamChieu {external_ref!r}")
        return {"id": doc.doc_id, "status_code": state.vendor_code(doc)}

    return recall


def create_ioffice_app(state: IofficeDocsysState) -> FastAPI:
    """The stand-in service: WSDL at ``GET /ioffice/VanBanService?wsdl``, SOAP at
    ``POST /ioffice/VanBanService``, unauthenticated test controls under ``/_sandbox``."""
    app = FastAPI(title="iOffice Quảng Ninh (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
    schema = SchemaCheck(etree.XMLSchema(_schema_element()))

    @app.get(SERVICE_PATH)
    def wsdl(request: Request) -> Response:
        if "wsdl" not in {key.lower() for key in request.query_params}:
            return Response("Thêm ?wsdl để lấy mô tả dịch vụ.", status_code=404, media_type="text/plain")
        state.count_fetch()
        here = f"{str(request.base_url).rstrip('/')}{SERVICE_PATH}"
        return xml_response(WSDL_FILE.read_text(encoding="utf-8").replace(f"http://localhost{SERVICE_PATH}", here).encode("utf-8"))

    @app.post(SERVICE_PATH)
    async def soap(request: Request) -> Response:
        if not basic_auth_ok(state, request.headers.get("authorization")):
            return Response("Unauthorized", status_code=401, headers={"WWW-Authenticate": 'Basic realm="iOffice"'}, media_type="text/plain")
        try:
            payload = soap_payload(await request.body())
            operation = _operation(payload, request.headers.get("soapaction"))
            invalid = schema.fault(payload, operation)
            if invalid is not None:
                raise invalid
            state.count_call(operation)
            return await answer_with_faults(
                state, operation, partial(OPERATIONS[operation], state, payload), schema=schema, envelope=_envelope,
                entity_bomb=ENTITY_BOMB, busy="Hệ thống đang bận, vui lòng thử lại sau (injected)", internal_code="LOI_HE_THONG",
            )
        except SoapFault as fault:
            return xml_response(fault_envelope(fault), 500)
        except Exception as exc:  # a stand-in bug still answers in SOAP, as a real service would
            log.exception("ioffice sandbox failed on a request")
            return xml_response(fault_envelope(SoapFault("Server", f"Lỗi hệ thống: {exc.__class__.__name__}", "LOI_HE_THONG")), 500)

    controls = control_routes(state)
    controls.add_api_route("/documents/{external_ref}/recall", _recall(state), methods=["POST"])
    app.include_router(controls)
    return app
