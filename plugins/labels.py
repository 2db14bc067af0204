"""The IOC page's Vietnamese vocabulary for the ledger's English codes.

IOC staff read Vietnamese; the ledger stores stable English codes. An unknown code is shown
as is, never hidden.
"""

from __future__ import annotations

STATUS = {
    "received": "Đã tiếp nhận",
    "rejected_invalid": "Không hợp lệ",
    "routed": "Đã phân loại, chờ chuyển",
    "delivered": "Đã chuyển văn bản",
    "accepted": "Cơ quan đã nhận",
    "assigned": "Đã giao xử lý",
    "in_progress": "Đang xử lý",
    "answered": "Đã trả lời",
    "refused_by_agency": "Cơ quan trả lại",
    "recalled": "Đã thu hồi",
    "published": "Đã công khai kết quả",
    "rated": "Người dân đã đánh giá",
    "closed": "Đã đóng",
}

EVENT = {
    "received": "Tiếp nhận từ ứng dụng",
    "updated": "Người dân cập nhật",
    "needs_review": "Chờ IOC xem xét",
    "routed": "Phân loại, giao cơ quan",
    "sending": "Đang gửi văn bản",
    "not_sent": "Chưa gửi, trả lại hàng chờ",
    "delivered": "Đã tạo văn bản",
    "delivery_retry": "Gửi lỗi, thử lại sau",
    "delivery_unknown": "Chưa rõ kết quả gửi",
    "dead_letter": "Gửi thất bại (dead letter)",
    "replayed": "Chuyển lại",
    "status": "Cập nhật trạng thái",
    "unknown_status": "Mã trạng thái lạ",
    "rerouted": "IOC chuyển cơ quan khác",
    "linked_duplicate": "Trùng phản ánh trước: theo văn bản đã có",
    "duplicate_linked": "Có phản ánh trùng được gộp vào",
    "unlinked_duplicate": "IOC tách khỏi phản ánh trùng: xử lý riêng",
    "duplicate_unlinked": "IOC tách một phản ánh đã gộp",
    "published_duplicate": "Công khai kết quả (phản ánh trùng)",
    "published": "Công khai kết quả",
    "publish_failed": "Công khai thất bại",
    "rated": "Người dân đánh giá",
    "rating_pushed": "Chuyển đánh giá cho cơ quan",
    "rating_push_failed": "Chuyển đánh giá thất bại",
    "reporter_forgotten": "Xoá thông tin người phản ánh",
}

DELIVERY_STATE = {
    "pending": "Chờ gửi",
    "sending": "Đang gửi",
    "unknown": "Chưa rõ (tra cứu trước khi gửi lại)",
    "delivered": "Đã gửi",
    "dead": "Thất bại",
}

RUN_STATE = {"running": "Đang chạy", "success": "Thành công", "partial": "Một phần lỗi", "failed": "Lỗi"}

RATING = {"satisfied": "Hài lòng", "not_satisfied": "Chưa hài lòng"}

STEP = {"ingest": "Nhận phản ánh", "deliver": "Chuyển văn bản", "poll": "Cập nhật trạng thái", "publish": "Công khai kết quả",
        "ratings": "Đánh giá"}

#: Why a duplicate link was not undone (``UnlinkRefused.code``).
UNLINK_REFUSED = {
    "missing": "Không tìm thấy phản ánh",
    "not_linked": "Phản ánh này không (còn) gộp vào phản ánh nào",
    "answered": "Người dân đã nhận kết quả của phản ánh được gộp vào",
    "unroutable": "Không phân loại được phản ánh để giao cơ quan",
}
