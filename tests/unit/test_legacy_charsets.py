"""Legacy Vietnamese encodings (TCVN3/ABC, VNI-Windows, VISCII) converted back to Unicode (issue 4)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

from paht_bridge.connectors.citizen_app import CitizenAppClient
from paht_bridge.connectors.citizen_checks import convert_legacy_fields
from paht_bridge.config.deployment import Source
from paht_bridge.normalise.legacy_charsets import (
    CHARSETS,
    convert_legacy_text,
    decode_legacy,
    encode_legacy,
    guess_legacy_charset,
    misread_bytes,
    repair_misread,
    repair_utf8_misread,
    vietnamese_syllable,
)
from tests.hostile.cases import good_item
from tests.hostile.legacy import ENCODERS

LOWER = "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ"
LETTERS = LOWER + LOWER.upper()  # the 134 letters beyond ASCII
SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
#: Sentences from the articles in shared/seeds (Điện Biên, Quảng Bình, Quảng Ninh), as written.
SENTENCES = (
    "Đường dân sinh ở tổ 10, phường Mường Thanh sau khi được mở rộng có cột điện án ngữ giữa đường rất nguy hiểm cho giao thông",
    "UBND phường Mường Thanh đã kiểm tra, xử lý các vị trí vít khoan chờ chân tấm pano, gây nguy hiểm cho người đi bộ.",
    "Ban chỉ đạo tiếp nhận và xử lý phản ánh hiện trường gửi nội dung đến cơ quan chức năng có thẩm quyền để giải quyết",
    "Trên tiến trình chuyển đổi số, việc xây dựng chính quyền điện tử hướng đến chính quyền số, kinh tế số, xã hội số tại Quảng Bình",
)


def misread(raw: bytes) -> str:
    """Bytes as a Western-European system shows them (cp1252, latin-1 where cp1252 has nothing)."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in raw)


def seed_paragraphs() -> list[str]:
    """The articles beside the repository when they are there, and always the seeded reports'
    own texts (written from them), so a clone on its own still checks real prose."""
    from paht_bridge.sandbox.citizen_app import load_seed_reports

    texts = [r["description"] for source in ("quangtri_ioc", "dienbien_smart") for r in load_seed_reports(source)]
    if SEEDS.is_dir():
        texts += [line for path in sorted(SEEDS.glob("*.txt")) for line in path.read_text("utf-8").splitlines()]
    return [text.strip() for text in texts if len(text.strip()) > 40]


def test_there_are_134_letters_to_check() -> None:
    assert len(set(LETTERS)) == 134 and all(unicodedata.is_normalized("NFC", c) for c in LETTERS)


@pytest.mark.parametrize("charset", ["vni", "viscii"])
def test_every_vietnamese_letter_round_trips_through_vni_and_viscii(charset: str) -> None:
    for letter in LETTERS:
        assert decode_legacy(encode_legacy(letter, charset), charset) == letter, letter  # type: ignore[arg-type]


def test_every_letter_round_trips_through_tcvn3_capitals_it_lacks_coming_back_lower_case() -> None:
    has_capital = set("ĂÂÊÔƠƯĐẰẲẴẮẦẨẪẤỀỂỄẾỒỔỖỐ")  # VN3's capitals: the rest need the .VnTimeH font
    for letter in LETTERS:
        decoded = decode_legacy(encode_legacy(letter, "tcvn3"), "tcvn3")
        assert decoded == (letter if letter.islower() or letter in has_capital else letter.lower()), letter


@pytest.mark.parametrize("charset", ["tcvn3", "viscii"])
def test_tables_agree_with_the_c_library_definitions(charset: str) -> None:
    """glibc's iconv implements RFC 1456 (VISCII) and TCVN 5712:1993 (whose 0xA1–0xFF half is TCVN3's)."""
    assert shutil.which("iconv"), "glibc's iconv (Debian's libc-bin) is the independent reference for these tables"
    name = {"tcvn3": "TCVN5712-1", "viscii": "VISCII"}[charset]
    first = 0xA1 if charset == "tcvn3" else 0x80
    for byte in range(first, 0x100):
        theirs = subprocess.run(["iconv", "-f", name, "-t", "UTF-8"], input=bytes([byte]), capture_output=True, check=True)
        assert decode_legacy(bytes([byte]), charset) == theirs.stdout.decode(), hex(byte)  # type: ignore[arg-type]


def test_vni_writes_a_vowel_as_base_letter_plus_mark_and_some_letters_as_one_byte() -> None:
    assert encode_legacy("Hà Nội", "vni") == b"Ha\xf8 No\xe4i"
    assert encode_legacy("tỉnh Điện Biên", "vni") == b"t\xe6nh \xd1ie\xe4n Bie\xe2n"
    assert encode_legacy("VIỆT NAM", "vni") == b"VIE\xc4T NAM"
    assert misread(encode_legacy("Hà Nội", "vni")) == "Haø Noäi"
    assert decode_legacy(b"qua\xe2n", "vni") == "quân"  # "uâ" is u + (a + circumflex), never a circumflex on u


@pytest.mark.parametrize("charset", CHARSETS)
@pytest.mark.parametrize("sentence", SENTENCES)
def test_real_sentences_misread_as_cp1252_are_repaired(charset: str, sentence: str) -> None:
    garbled = misread(encode_legacy(sentence, charset))  # type: ignore[arg-type]
    assert garbled != sentence
    assert repair_misread(garbled, charset) == sentence  # type: ignore[arg-type]
    assert guess_legacy_charset(garbled) == charset
    assert convert_legacy_text(garbled, "auto") == (sentence, charset)
    assert convert_legacy_text(garbled, charset) == (sentence, charset)  # type: ignore[arg-type]


def test_tcvn3_text_set_in_capitals_comes_back_in_capitals() -> None:
    heading = "CƠ QUAN CỦA TỔNG LIÊN ĐOÀN LAO ĐỘNG VIỆT NAM"
    assert repair_misread(misread(encode_legacy(heading, "tcvn3")), "tcvn3") == heading
    assert repair_misread("Hµ Néi", "tcvn3") == "Hà Nội"  # one capital: a capitalised word, not a capital one


@pytest.mark.parametrize("charset", CHARSETS)
def test_a_wrong_charset_does_not_fit(charset: str) -> None:
    for other in CHARSETS:
        if other != charset:
            garbled = misread(encode_legacy(SENTENCES[0], other))
            assert repair_misread(garbled, charset) is None, other  # type: ignore[arg-type]


def test_every_paragraph_of_the_seed_articles_is_recognised_and_repaired() -> None:
    paragraphs = seed_paragraphs()
    assert len(paragraphs) > 50
    for paragraph in paragraphs:
        text = "".join(c if c.isalnum() or c in " ,.;:()-/%" else " " for c in paragraph)  # what each charset can hold
        for charset in CHARSETS:
            fixed = convert_legacy_text(misread(encode_legacy(text, charset)), "auto")  # type: ignore[arg-type]
            assert fixed is not None and fixed[1] == charset, (charset, paragraph[:80])
            assert fixed[0] == text or (charset == "tcvn3" and fixed[0].lower() == text.lower())


@pytest.mark.parametrize("encoding", ["tcvn3", "vni", "viscii"])
def test_the_hostile_corpus_encoders_text_is_repaired_too(encoding: str) -> None:
    """An independent encoder (the test data's): its VNI writes ỉ as "i" + hook, which is read as well."""
    for phrase in ("Đường Lê Lợi bị ngập nước sau mưa lớn", "Rác thải ùn ứ ở chợ Đông Hà", "Cây xanh nghiêng có nguy cơ gãy đổ"):
        fixed = convert_legacy_text(ENCODERS[encoding](phrase), "auto")
        assert fixed is not None and fixed[1] == encoding
        assert fixed[0] == phrase or (encoding == "tcvn3" and fixed[0].lower() == phrase.lower())


def test_utf8_read_as_cp1252_is_repaired_in_every_mode_but_reject() -> None:
    once = misread("Hà Nội".encode())
    assert once == "H\u00c3\u00a0 N\u00e1\u00bb\u2122i"  # "HÃ  Ná»™i", the first space a no-break one
    assert repair_utf8_misread(once) == "Hà Nội"
    assert repair_utf8_misread(misread(once.encode())) == "Hà Nội"  # read wrongly twice over
    for mode in ("tcvn3", "vni", "viscii", "auto"):
        assert convert_legacy_text(once, mode) == ("Hà Nội", "utf-8")  # type: ignore[arg-type]
    assert convert_legacy_text(once, "reject") is None


def test_text_that_already_reads_as_vietnamese_is_left_alone() -> None:
    for text in ("Hà Nội", "Cà phê", "Ổ gà lớn giữa đường Lê Lợi", "Café Nestlé", "Xe tải 5 tấn, 30°C", "ván"):
        for mode in ("tcvn3", "vni", "viscii", "auto"):
            assert convert_legacy_text(text, mode) is None, (text, mode)  # type: ignore[arg-type]


def test_text_that_fits_no_charset_cleanly_is_not_converted() -> None:
    assert guess_legacy_charset("Ðß¶ng Haø Hµ ×") is None
    assert convert_legacy_text("Ðß¶ng Haø Hµ ×", "auto") is None


def test_misread_bytes_are_recovered_only_from_8_bit_text() -> None:
    assert misread_bytes("Hµ Néi") == b"H\xb5 N\xe9i"
    assert misread_bytes("“x”\x81") == b"\x93x\x94\x81"  # cp1252 quotes, a byte cp1252 leaves undefined
    assert misread_bytes("Hà Nội") is None


@pytest.mark.parametrize("word", ["đường", "Nguyễn", "QUYẾT", "khuya", "thuở", "giữa", "xoong", "Hoà", "quốc", "gì", "ủy"])
def test_vietnamese_syllables(word: str) -> None:
    assert vietnamese_syllable(word)
    assert vietnamese_syllable(unicodedata.normalize("NFD", word))


@pytest.mark.parametrize("word", ["Haø", "Hµ", "hÀ", "tốcc", "càc", "phểp", "Noäi", "cafộ", "Ðß¶ng"])
def test_not_vietnamese_syllables(word: str) -> None:
    assert not vietnamese_syllable(word)


# -- the citizen connector ------------------------------------------------------------------------


def test_the_source_setting_defaults_to_reject() -> None:
    source = Source(name="qt", kind="citizen_app", connection_id="qt_app")
    assert source.legacy_text == "reject"
    assert Source(name="qt", kind="citizen_app", connection_id="qt_app", legacy_text="vni").legacy_text == "vni"
    with pytest.raises(ValueError):
        Source(name="qt", kind="citizen_app", connection_id="qt_app", legacy_text="cp1258")


def test_converting_fields_leaves_the_apps_item_as_it_came() -> None:
    item = good_item("R1")
    item["title"] = misread(encode_legacy("Rác thải ùn ứ ở chợ Đông Hà", "tcvn3"))
    item["location"]["admin_unit"]["ward"] = misread(encode_legacy("phường Đông Lương", "vni"))
    item["reporter"]["phone"] = "0912345678"
    converted, fields = convert_legacy_fields(item, "auto")
    assert fields == {"title": "tcvn3", "location.admin_unit.ward": "vni"}
    assert converted["title"] == "Rác thải ùn ứ ở chợ Đông Hà"  # type: ignore[index]
    assert converted["location"]["admin_unit"]["ward"] == "phường Đông Lương"  # type: ignore[index]
    assert item["title"] != converted["title"] and item["location"]["admin_unit"]["ward"].startswith("ph")  # type: ignore[index]
    assert convert_legacy_fields(item, "reject") == (item, {})


def test_a_legacy_report_is_converted_and_logged_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    item = good_item("R7")
    item["description"] = misread(encode_legacy(SENTENCES[0], "vni"))
    client = CitizenAppClient("dienbien_smart", "http://unused.test", legacy_text="auto")
    with caplog.at_level(logging.INFO, logger="paht_bridge.connectors.citizen_app"):
        reports, quarantined = client.parse_reports([item])
    assert not quarantined and reports[0].description == SENTENCES[0]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("text.converted"))
    assert line == "text.converted source=dienbien_smart id=R7 fields=description charset=vni"


def test_a_legacy_report_is_quarantined_when_the_source_rejects_legacy_text() -> None:
    item = good_item("R8")
    item["description"] = misread(encode_legacy(SENTENCES[0], "vni"))
    reports, quarantined = CitizenAppClient("dienbien_smart", "http://unused.test").parse_reports([item])
    assert not reports and "description: looks like legacy-encoded Vietnamese" in quarantined[0].reason


def test_a_source_set_to_one_charset_quarantines_another() -> None:
    item = good_item("R9")
    item["title"] = misread(encode_legacy(SENTENCES[1], "viscii"))
    reports, quarantined = CitizenAppClient("qt", "http://unused.test", legacy_text="tcvn3").parse_reports([item])
    assert not reports and quarantined[0].reason.startswith("title: looks like")
