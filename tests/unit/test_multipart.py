"""The streamed multipart body REST document systems receive attachments in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from paht_bridge.canonical import LocalAttachment
from paht_bridge.connectors.multipart import MultipartBody


@pytest.fixture
def photo(tmp_path: Path) -> LocalAttachment:
    data = b"\xff\xd8\xff" + bytes(range(256)) * 100
    path = tmp_path / "spool.bin"
    path.write_bytes(data)
    return LocalAttachment(name='ảnh "hiện trường".jpg', media_type="image/jpeg", size=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def parts(body: bytes, content_type: str) -> dict[str, tuple[bytes, bytes]]:
    """{part name: (headers, content)}; enough of a parser to check what was sent."""
    boundary = content_type.split("boundary=")[1].encode()
    found = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        headers, _, content = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        found[headers.split(b'name="')[1].split(b'"')[0].decode()] = (headers, content)
    return found


def test_the_body_streams_in_chunks_and_matches_its_length(photo: LocalAttachment) -> None:
    body = MultipartBody([("van_ban", "application/json", b"{}")], [("tep_dinh_kem", photo)], [("toan_van", "a.txt", "text/plain; charset=utf-8", b"x")])
    chunks = list(iter(lambda: body.read(1000), b""))
    streamed = b"".join(chunks)
    assert max(map(len, chunks)) == 1000 and len(streamed) == len(body)
    sent = parts(streamed, body.content_type)
    assert sent["van_ban"][1] == b"{}" and sent["tep_dinh_kem"][1] == photo.path.read_bytes()
    assert b'filename="\xe1\xba\xa3nh \\"hi\xe1\xbb\x87n tr\xc6\xb0\xe1\xbb\x9dng\\".jpg"' in sent["tep_dinh_kem"][0]
    assert sent["toan_van"] == (b'Content-Disposition: form-data; name="toan_van"; filename="a.txt"\r\nContent-Type: text/plain; charset=utf-8', b"x")


def test_a_spool_file_of_the_wrong_size_fails_before_anything_is_sent(photo: LocalAttachment) -> None:
    with pytest.raises(ValueError, match="expected"):
        MultipartBody([], [("tep_dinh_kem", photo.model_copy(update={"size": photo.size + 1}))])


def test_a_spool_file_that_shrinks_while_sent_is_an_error_not_a_short_body(photo: LocalAttachment) -> None:
    body = MultipartBody([], [("tep_dinh_kem", photo)])
    body.read(10)
    photo.path.write_bytes(b"\xff\xd8")
    with pytest.raises(OSError, match="shrank"):
        body.read()


def test_a_line_break_in_a_file_name_cannot_add_a_header(photo: LocalAttachment) -> None:
    sneaky = photo.model_copy(update={"name": "a.jpg\r\nX-Injected: 1", "media_type": "image/jpeg\r\nX-Other: 2"})
    body = MultipartBody([], [("tep_dinh_kem", sneaky)])
    headers = parts(body.read(), body.content_type)["tep_dinh_kem"][0]
    assert b"\r\nX-Injected" not in headers and b"\r\nX-Other" not in headers
    assert b"Content-Type: application/octet-stream" in headers
