"""The iOffice Quảng Ninh stand-in, spoken to as a vendor client would: zeep reading the WSDL file.

Each test gets a fresh service (state and server), so counters start at zero. The desk
refuses one document in three here, and references are picked by ``refuses`` so each
test knows which of its documents the desk will refuse.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault, TransportError
from zeep.transports import Transport

from paht_bridge.canonical import RatingLevel
from paht_bridge.sandbox.desk import answer_text, refuses
from paht_bridge.sandbox.ioffice_docsys import (
    BINDING,
    RATING_LEVELS,
    SERVICE_PATH,
    TYPES_NS,
    WSDL_FILE,
    IofficeDocsysState,
    create_ioffice_app,
)
from paht_bridge.sandbox.server import LoopbackServer
from tests.lifecycle_checks import documents as lifecycle_documents

REFUSE_ONE_IN = 3
AGENCY = {"MaDinhDanh": "000.12.31.H40", "TenDonVi": "Sở Tài nguyên và Môi trường tỉnh Quảng Ninh"}
IOC = {"MaDinhDanh": "000.00.00.H40", "TenDonVi": "Trung tâm Điều hành thông minh tỉnh Quảng Ninh"}
FULL_SEQUENCE = ["CHO_TIEP_NHAN", "DA_TIEP_NHAN", "DA_PHAN_CONG", "DANG_XU_LY", "DA_XU_LY"]
VIETNAM_TIME = re.compile(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}$")
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


def refs(*, refused: bool, n: int = 1) -> list[str]:
    """References the desk will (or will not) refuse."""
    found = (f"PAHT-smartqn-{i}" for i in count(1000))
    return [ref for ref, _ in zip((r for r in found if refuses(r, REFUSE_ONE_IN) == refused), range(n))]


def van_ban(ref: str, **changes: object) -> dict:
    record = {
        "MaThamChieu": ref,
        "TrichYeu": f"[PAHT {ref}] Rác thải tồn đọng tại chợ Hạ Long 1",
        "NoiDung": "Rác thải sinh hoạt tồn đọng nhiều ngày, bốc mùi, ảnh hưởng người dân buôn bán.",
        "DonViNhan": AGENCY,
        "DonViGui": IOC,
        "LinhVuc": "MOI_TRUONG",
        "DoKhan": "KHAN",
        "NgayBanHanh": "05/08/2025",
        "HanXuLy": "12/08/2025",
        "ViTri": {"ViDo": "20.9517", "KinhDo": "107.0806", "DiaChi": "Chợ Hạ Long 1, phường Hồng Gai"},
        "NguoiPhanAnh": {"SoDienThoai": "0912345678"},
        "TepDinhKem": [{"TenTep": "anh-hien-truong.jpg", "KieuTep": "image/jpeg", "NoiDung": PHOTO}],
    }
    record.update(changes)
    return record


@dataclass
class Ioffice:
    state: IofficeDocsysState
    server: LoopbackServer

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}{SERVICE_PATH}"

    def service(self, *, password: str = "sandbox-secret", timeout: float = 5.0) -> zeep.proxy.ServiceProxy:
        session = requests.Session()
        session.auth = ("sandbox", password)
        client = zeep.Client(str(WSDL_FILE), transport=Transport(session=session, operation_timeout=timeout))
        return client.create_service(BINDING, self.endpoint)

    def documents(self) -> dict[str, dict]:
        answer = requests.get(f"{self.server.url}/_sandbox/documents", timeout=5).json()
        return {doc["external_ref"]: doc for doc in answer["documents"]}

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            requests.post(f"{self.server.url}/_sandbox/desk/tick", timeout=5).raise_for_status()

    def inject(self, kind: str, **options: object) -> None:
        requests.post(f"{self.server.url}/_sandbox/faults", json={"kind": kind, **options}, timeout=5).raise_for_status()

    def post_raw(self, body: str, action: str) -> requests.Response:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"urn:vnpt:ioffice:vanban:2/{action}"'}
        return requests.post(self.endpoint, data=body.encode(), headers=headers, auth=("sandbox", "sandbox-secret"), timeout=5)


@pytest.fixture
def ioffice() -> Iterator[Ioffice]:
    state = IofficeDocsysState(refuse_one_in=REFUSE_ONE_IN)
    with LoopbackServer(create_ioffice_app(state), name="ioffice-test") as server:
        yield Ioffice(state, server)


def whole_feed(service: zeep.proxy.ServiceProxy, page_size: int) -> tuple[list, int, int]:
    """Every change from the start, page by page: (changes, final cursor, pages read)."""
    changes, cursor, pages = [], 0, 0
    while True:
        page = service.LayDanhSachBienDong(TuViTri=cursor, SoLuong=page_size)
        pages += 1
        changes.extend(page.BienDong)
        assert page.ViTriTiepTheo >= cursor
        cursor = page.ViTriTiepTheo
        if not page.ConDuLieu:
            return changes, cursor, pages


def fault_detail(fault: Fault, name: str) -> str | None:
    found = fault.detail.find(f".//{{{TYPES_NS}}}{name}")
    return found.text if found is not None else None


def test_served_wsdl_names_the_address_it_was_fetched_from(ioffice: Ioffice) -> None:
    answer = requests.get(f"{ioffice.endpoint}?wsdl", timeout=5)
    assert answer.status_code == 200
    assert f'location="{ioffice.endpoint}"' in answer.text
    assert zeep.Client(f"{ioffice.endpoint}?wsdl").create_service(BINDING, ioffice.endpoint) is not None
    assert ioffice.state.stats()["wsdl_fetches"] >= 1


def test_create_with_an_attachment_registers_the_document_as_arrived(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    result = ioffice.service().TiepNhanVanBanDen(VanBan=van_ban(ref))

    assert result.DaTonTai is False
    doc = ioffice.documents()[ref]
    assert doc["id"] == result.MaVanBan
    assert doc["status_code"] == "CHO_TIEP_NHAN"
    assert doc["agency"] == AGENCY["MaDinhDanh"]
    assert doc["priority"] == 1  # KHAN
    assert doc["category"] == "MOI_TRUONG"
    assert doc["location"] == {"ViDo": "20.9517", "KinhDo": "107.0806", "DiaChi": "Chợ Hạ Long 1, phường Hồng Gai"}
    assert doc["attachments"] == [{"name": "anh-hien-truong.jpg", "content_type": "image/jpeg", "size": len(PHOTO)}]
    assert ioffice.state.documents[result.MaVanBan].attachments[0].data == PHOTO
    assert doc["reporter_sent"] is True
    assert "0912345678" not in str(doc)  # the control endpoint never shows the phone number


def test_repeated_create_answers_already_exists_and_creates_nothing(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    service = ioffice.service()
    first = service.TiepNhanVanBanDen(VanBan=van_ban(ref))
    again = service.TiepNhanVanBanDen(VanBan=van_ban(ref, TrichYeu="Gửi lại sau khi mất kết nối"))

    assert (again.DaTonTai, again.MaVanBan) == (True, first.MaVanBan)
    [doc] = lifecycle_documents(ioffice.server.url)
    assert (doc["external_ref"], doc["created_count"], doc["send_calls"]) == (ref, 1, 2)
    assert ioffice.documents()[ref]["subject"] == van_ban(ref)["TrichYeu"]  # the first version is kept


def test_find_by_reference_answers_whether_the_document_exists(ioffice: Ioffice) -> None:
    [ref, other] = refs(refused=False, n=2)
    service = ioffice.service()
    created = service.TiepNhanVanBanDen(VanBan=van_ban(ref))

    found = service.TraCuuTheoMaThamChieu(MaThamChieu=ref)
    missing = service.TraCuuTheoMaThamChieu(MaThamChieu=other)
    assert (found.TimThay, found.MaVanBan) == (True, created.MaVanBan)
    assert (missing.TimThay, missing.MaVanBan) == (False, None)


@pytest.mark.parametrize(
    ("changes", "element"),
    [
        ({"NgayBanHanh": "2025-08-05"}, "NgayBanHanh"),
        ({"TrichYeu": "x" * 501}, "TrichYeu"),
        ({"DoKhan": "1"}, "DoKhan"),
        ({"MaThamChieu": "PAHT smartqn 7"}, "MaThamChieu"),
        ({"DonViNhan": {"MaDinhDanh": "so-tnmt", "TenDonVi": "Sở TN&MT"}}, "MaDinhDanh"),
    ],
)
def test_schema_invalid_create_gets_a_client_fault_naming_the_element(ioffice: Ioffice, changes: dict, element: str) -> None:
    [ref] = refs(refused=False)
    with pytest.raises(Fault) as caught:
        ioffice.service().TiepNhanVanBanDen(VanBan=van_ban(ref, **changes))

    assert caught.value.code.endswith("Client")
    assert element in caught.value.message
    assert fault_detail(caught.value, "PhanTu") == element
    assert fault_detail(caught.value, "MaLoi") == "INVALID_REQUEST"
    assert ioffice.documents() == {}


def test_a_missing_required_element_is_named_in_the_fault(ioffice: Ioffice) -> None:
    body = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:k="urn:vnpt:ioffice:kieu:2">'
        "<soap:Body><k:LayDanhSachBienDong><k:TuViTri>0</k:TuViTri></k:LayDanhSachBienDong></soap:Body></soap:Envelope>"
    )
    answer = ioffice.post_raw(body, "LayDanhSachBienDong")

    assert answer.status_code == 500
    fault = etree.fromstring(answer.content).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault.findtext("faultcode") == "soap:Client"
    assert "SoLuong" in fault.findtext("faultstring")
    assert fault.findtext(f".//{{{TYPES_NS}}}PhanTu") == "LayDanhSachBienDong"


def test_a_soap_action_that_disagrees_with_the_body_is_refused(ioffice: Ioffice) -> None:
    body = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:k="urn:vnpt:ioffice:kieu:2">'
        "<soap:Body><k:TraCuuTheoMaThamChieu><k:MaThamChieu>PAHT-1</k:MaThamChieu></k:TraCuuTheoMaThamChieu>"
        "</soap:Body></soap:Envelope>"
    )
    assert ioffice.post_raw(body, "TraCuuTheoMaThamChieu").status_code == 200
    wrong = ioffice.post_raw(body, "TiepNhanVanBanDen")
    assert wrong.status_code == 500
    assert b"SOAPAction" in wrong.content


def test_wrong_password_is_refused_before_anything_is_read(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    with pytest.raises(TransportError) as caught:
        ioffice.service(password="wrong").TiepNhanVanBanDen(VanBan=van_ban(ref))

    assert caught.value.status_code == 401
    assert ioffice.documents() == {}
    assert ioffice.state.stats()["soap_calls"] == {}


def test_change_feed_pages_through_every_stage_after_desk_ticks(ioffice: Ioffice) -> None:
    handled = refs(refused=False, n=2)
    service = ioffice.service()
    ids = {ref: service.TiepNhanVanBanDen(VanBan=van_ban(ref)).MaVanBan for ref in handled}
    ioffice.tick(times=6)  # one more than needed: an answered document stays put

    changes, cursor, pages = whole_feed(service, page_size=3)

    assert [c.ViTri for c in changes] == list(range(1, 11))  # no gaps, no repeats across pages
    assert (cursor, pages) == (10, 4)
    by_ref: dict[str, list[str]] = defaultdict(list)
    for change in changes:
        assert change.MaVanBan == ids[change.MaThamChieu]
        assert VIETNAM_TIME.match(change.ThoiDiem)
        by_ref[change.MaThamChieu].append(change.TrangThai)
    assert by_ref == {ref: FULL_SEQUENCE for ref in handled}
    answered = [c for c in changes if c.TrangThai == "DA_XU_LY"]
    assert all(c.DonViXuLy == AGENCY["TenDonVi"] for c in answered)
    assert answered[0].YKienXuLy == answer_text(van_ban(answered[0].MaThamChieu)["TrichYeu"], AGENCY["TenDonVi"])
    assert all(c.YKienXuLy is None for c in changes if c.TrangThai != "DA_XU_LY")

    after = service.LayDanhSachBienDong(TuViTri=cursor, SoLuong=3)
    assert (after.BienDong, after.ViTriTiepTheo, after.ConDuLieu) == ([], cursor, False)


def test_refused_documents_appear_with_tu_choi_and_stay_refused(ioffice: Ioffice) -> None:
    [refused] = refs(refused=True)
    service = ioffice.service()
    service.TiepNhanVanBanDen(VanBan=van_ban(refused))
    ioffice.tick(times=3)

    changes, _, _ = whole_feed(service, page_size=50)
    assert [c.TrangThai for c in changes] == ["CHO_TIEP_NHAN", "TU_CHOI"]
    assert "không thuộc thẩm quyền" in changes[-1].YKienXuLy
    assert changes[-1].DonViXuLy == AGENCY["TenDonVi"]


def test_get_document_shows_the_current_stage_and_answer(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    service = ioffice.service()
    doc_id = service.TiepNhanVanBanDen(VanBan=van_ban(ref)).MaVanBan

    early = service.LayThongTinVanBan(MaVanBan=doc_id)
    ioffice.tick(times=4)
    done = service.LayThongTinVanBan(MaVanBan=doc_id)

    assert (early.TrangThai, early.YKienXuLy, early.DonViXuLy) == ("CHO_TIEP_NHAN", None, None)
    assert (done.MaVanBan, done.MaThamChieu, done.TrangThai) == (doc_id, ref, "DA_XU_LY")
    assert done.YKienXuLy.startswith(AGENCY["TenDonVi"])
    assert VIETNAM_TIME.match(done.ThoiDiem)


def test_get_unknown_document_is_a_client_fault_naming_ma_van_ban(ioffice: Ioffice) -> None:
    with pytest.raises(Fault) as caught:
        ioffice.service().LayThongTinVanBan(MaVanBan="VBD-99999999")
    assert caught.value.code.endswith("Client")
    assert fault_detail(caught.value, "PhanTu") == "MaVanBan"


def test_rating_is_stored_once_per_rating_id(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    service = ioffice.service()
    doc_id = service.TiepNhanVanBanDen(VanBan=van_ban(ref)).MaVanBan
    ioffice.tick(times=4)
    rating = {
        "MaVanBan": doc_id,
        "MaDanhGia": f"{ref}-danhgia-1",
        "MucDo": RATING_LEVELS[RatingLevel.SATISFIED],
        "GhiChu": "Xử lý nhanh, cảm ơn.",
        "ThoiGian": "15/08/2025 09:30:00",
    }

    first = service.GuiDanhGia(**rating)
    again = service.GuiDanhGia(**rating)

    assert (first.DaGhiNhan, first.ThongBao) == (True, None)
    assert again.DaGhiNhan is True and again.ThongBao
    assert ioffice.documents()[ref]["ratings"] == [{"rating_id": f"{ref}-danhgia-1", "level": "HAI_LONG", "comment": "Xử lý nhanh, cảm ơn."}]


def test_rating_with_a_canonical_level_instead_of_the_vendor_code_is_refused(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    service = ioffice.service()
    doc_id = service.TiepNhanVanBanDen(VanBan=van_ban(ref)).MaVanBan
    with pytest.raises(Fault) as caught:
        service.GuiDanhGia(MaVanBan=doc_id, MaDanhGia="r-1", MucDo=RatingLevel.SATISFIED.value, ThoiGian="15/08/2025 09:30:00")
    assert fault_detail(caught.value, "PhanTu") == "MucDo"
    assert ioffice.documents()[ref]["ratings"] == []


def test_timeout_after_commit_leaves_exactly_one_document_to_find(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    ioffice.inject("timeout_after_commit", operation="TiepNhanVanBanDen", delay=1.5)
    with pytest.raises(requests.exceptions.Timeout):
        ioffice.service(timeout=0.5).TiepNhanVanBanDen(VanBan=van_ban(ref))

    service = ioffice.service()
    assert service.TraCuuTheoMaThamChieu(MaThamChieu=ref).TimThay is True
    assert service.TiepNhanVanBanDen(VanBan=van_ban(ref)).DaTonTai is True
    assert ioffice.documents()[ref]["created_count"] == 1


def test_injected_server_fault_is_a_server_fault_and_creates_nothing(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    ioffice.inject("server_fault", operation="TiepNhanVanBanDen")
    service = ioffice.service()
    with pytest.raises(Fault) as caught:
        service.TiepNhanVanBanDen(VanBan=van_ban(ref))

    assert caught.value.code.endswith("Server")
    assert ioffice.documents() == {}
    assert service.TiepNhanVanBanDen(VanBan=van_ban(ref)).DaTonTai is False  # the fault was used up


def test_recalled_document_shows_thu_hoi_and_the_desk_leaves_it(ioffice: Ioffice) -> None:
    [ref] = refs(refused=False)
    service = ioffice.service()
    service.TiepNhanVanBanDen(VanBan=van_ban(ref))
    ioffice.tick()
    requests.post(f"{ioffice.server.url}/_sandbox/documents/{ref}/recall", timeout=5).raise_for_status()
    ioffice.tick(times=3)

    changes, _, _ = whole_feed(service, page_size=50)
    assert [c.TrangThai for c in changes] == ["CHO_TIEP_NHAN", "DA_TIEP_NHAN", "THU_HOI"]
    assert ioffice.documents()[ref]["status_code"] == "THU_HOI"
