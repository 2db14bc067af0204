"""Vietnamese text from legacy 8-bit systems (TCVN3/ABC, VNI-Windows, VISCII) back to Unicode.

Older provincial systems and the documents typed on them still hold Vietnamese in the
8-bit encodings that came before Unicode. When such bytes reach us through a system that
believes they are Western European, they arrive as cp1252/latin-1 text: "Hµ Néi" (TCVN3),
"Haø Noäi" (VNI), "Hà NÜi" (VISCII) for "Hà Nội". This module turns them back, and tells
which encoding a garbled text was in. Pure functions over values; no I/O.

The tables, and where they come from:

- **TCVN3** (ABC, the ``.VnTime`` fonts) is TCVN 5712:1993 VN3: every letter one byte in
  0xA1–0xFF, as glibc's ``TCVN5712-1`` maps that half. VN3 has no upper-case toned letters
  of its own (a separate ``.VnTimeH`` font drew the lower-case bytes as capitals), so
  "HÀ NỘI" comes back "hà nội": the case is lost, the letters are not. The VN1 capitals
  that TCVN 5712 places in 0x80–0x9F and 0x01–0x17 are *not* read: in VN3 text from a
  Windows system those bytes are cp1252's quotes and dashes.
- **VNI-Windows** writes a vowel as its base letter followed by one mark byte (``a`` +
  ``ø`` = à, ``a`` + ``ä`` = ậ); ơ, ư, đ and the i-vowels ì í ỉ ĩ ị and ỵ have bytes of
  their own. Capitals take the capital mark byte (mark − 0x20): ``AØ`` = À.
- **VISCII** is RFC 1456: all 134 letters, six of them in the C0 control range.

Where a byte means nothing in the legacy set it keeps its cp1252 meaning (latin-1 for the
five bytes cp1252 leaves undefined), which is how these fonts showed punctuation.

Whether a conversion is right is judged by reading the result: every word that holds a
converted letter must be a well-formed Vietnamese syllable (initial, vowel group, final,
at most one tone, and only the sắc or nặng tone before c/ch/p/t), and the result must no
longer look garbled to ``text.legacy_encoding``. A dictionary would be stricter, but
place names and family names are exactly the words a dictionary lacks.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal, get_args

from paht_bridge.normalise.text import legacy_encoding

Charset = Literal["tcvn3", "vni", "viscii"]
CHARSETS: tuple[Charset, ...] = get_args(Charset)
#: What a citizen connector does with legacy-encoded text (``Source.legacy_text``).
LegacyText = Literal["reject", "tcvn3", "vni", "viscii", "auto"]

# -- the tables -------------------------------------------------------------------------------

#: TCVN 5712:1993 (VN3 as read here), byte → letter, 0xA1–0xFF. 0xB0–0xB4 are the standard's
#: combining tone marks (grave, hook, tilde, acute, dot below); they compose with the letter before.
_TCVN3_HIGH = (
    "ĂÂÊÔƠƯĐăâêôơưđẰ"  # A1–AF
    "\u0300\u0309\u0303\u0301\u0323àảãáạẲằẳẵắẴ"  # B0–BF
    "ẮẦẨẪẤỀặầẩẫấậèỂẻẽ"  # C0–CF
    "éẹềểễếệìỉỄẾỒĩíịò"  # D0–DF
    "ỔỏõóọồổỗốộờởỡớợùỖủũúụừửữứựỳỷỹýỵỐ"  # E0–FF
)
_TCVN3: dict[int, str] = dict(zip(range(0xA1, 0x100), _TCVN3_HIGH, strict=True))

#: RFC 1456, bytes 0x80–0xFF, then the six letters it places among the C0 controls.
_VISCII_HIGH = (
    "ẠẮẰẶẤẦẨẬẼẸẾỀỂỄỆỐỒỔỖỘỢỚỜỞỊỎỌỈỦŨỤỲÕắằặấầẩậẽẹếềểễệốồổỗỠƠộờởịỰỨỪỬơớƯ"
    "ÀÁÂÃẢĂẳẵÈÉÊẺÌÍĨỳĐứÒÓÔạỷừửÙÚỹỵÝỡưàáâãảăữẫèéêẻìíĩỉđựòóôõỏọụùúũủýợỮ"
)
_VISCII: dict[int, str] = {
    **dict(zip(range(0x80, 0x100), _VISCII_HIGH, strict=True)),
    0x02: "Ẳ", 0x05: "Ẵ", 0x06: "Ẫ", 0x14: "Ỷ", 0x19: "Ỹ", 0x1E: "Ỵ",
}

_GRAVE, _ACUTE, _TILDE, _HOOK, _DOT = "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"
_CIRCUMFLEX, _BREVE, _HORN = "\u0302", "\u0306", "\u031b"
_TONES = (_GRAVE, _ACUTE, _TILDE, _HOOK, _DOT)

#: VNI mark bytes (lower-case form; the capital form is 0x20 less) → the marks they add.
_VNI_MARKS: dict[int, str] = {
    0xF8: _GRAVE, 0xF9: _ACUTE, 0xFB: _HOOK, 0xF5: _TILDE, 0xEF: _DOT,
    0xE2: _CIRCUMFLEX, 0xE0: _CIRCUMFLEX + _GRAVE, 0xE1: _CIRCUMFLEX + _ACUTE, 0xE5: _CIRCUMFLEX + _HOOK,
    0xE3: _CIRCUMFLEX + _TILDE, 0xE4: _CIRCUMFLEX + _DOT,
    0xEA: _BREVE, 0xE8: _BREVE + _GRAVE, 0xE9: _BREVE + _ACUTE, 0xFA: _BREVE + _HOOK,
    0xFC: _BREVE + _TILDE, 0xEB: _BREVE + _DOT,
}
#: VNI letters that are one byte of their own.
_VNI_SINGLE: dict[int, str] = {
    0xF4: "ơ", 0xD4: "Ơ", 0xF6: "ư", 0xD6: "Ư", 0xF1: "đ", 0xD1: "Đ",
    0xEC: "ì", 0xCC: "Ì", 0xED: "í", 0xCD: "Í", 0xE6: "ỉ", 0xC6: "Ỉ", 0xF3: "ĩ", 0xD3: "Ĩ", 0xF2: "ị", 0xD2: "Ị",
    0xEE: "ỵ", 0xCE: "Ỵ",
}
#: Which base letters may carry which shape: a circumflex on a, e, o; a breve on a only.
_SHAPE_BASES = {_CIRCUMFLEX: "aeo", _BREVE: "a"}
_TONE_BASES = "aeiouyơư"


def _mark_of(byte: int) -> str | None:
    """The marks a VNI byte adds, whether written in its lower-case or capital form."""
    return _VNI_MARKS.get(byte + 0x20 if 0xC0 <= byte < 0xE0 else byte)


def _single_byte(byte: int) -> str:
    """A byte as a Windows system shows it: cp1252 where it defines one, latin-1 elsewhere."""
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)


# -- decoding ---------------------------------------------------------------------------------


def decode_legacy(raw: bytes, charset: Charset) -> str:
    """``raw`` bytes in a legacy Vietnamese encoding, as NFC Unicode.

    Never fails: a byte the encoding leaves undefined keeps its cp1252/latin-1 meaning, so a
    wrong ``charset`` gives garbled text, which ``repair_misread`` and ``guess_legacy_charset``
    recognise by reading it.
    """
    if charset == "vni":
        return unicodedata.normalize("NFC", _decode_vni(raw))
    if charset == "tcvn3":
        text = "".join(_TCVN3.get(b) or _single_byte(b) if b >= 0x80 else chr(b) for b in raw)
        return _WORD.sub(_vn3_capitals, unicodedata.normalize("NFC", text))
    if charset == "viscii":
        return unicodedata.normalize("NFC", "".join(_VISCII.get(b) or chr(b) for b in raw))
    raise ValueError(f"unknown legacy charset {charset!r}")


def _vn3_capitals(match: re.Match[str]) -> str:
    """A word set in capitals, as VN3 wrote it: capital ASCII letters, lower-case toned bytes
    ("CñA" for "CỦA"). Two capitals and no lower-case ASCII letter make it a capital word;
    one ("Hµ") is a capitalised one and stays "Hà"."""
    word = match.group()
    ascii_letters = [c for c in word if c.isascii()]
    if any(c.islower() for c in ascii_letters) or sum(c.isupper() for c in word) < 2:
        return word
    return word.upper()


def _decode_vni(raw: bytes) -> str:
    out: list[str] = []
    index = 0
    while index < len(raw):
        byte = raw[index]
        letter = _VNI_SINGLE.get(byte) or (chr(byte) if byte < 0x80 else None)
        if letter is not None and index + 1 < len(raw):
            marks = _mark_of(raw[index + 1])
            if marks and _takes(letter, marks):
                out.append(letter + marks)
                index += 2
                continue
        out.append(letter if letter is not None else _single_byte(byte))
        index += 1
    return "".join(out)


def _takes(letter: str, marks: str) -> bool:
    """Whether a VNI base letter can carry these marks (so "uâ" stays u + â, as in "quaân")."""
    base = letter.lower()
    shape = marks[0] if marks[0] in _SHAPE_BASES else None
    if shape:
        return base in _SHAPE_BASES[shape]
    return base in _TONE_BASES


# -- encoding (for replies to legacy systems and for tests) -----------------------------------

_TCVN3_ENCODE = {letter: byte for byte, letter in _TCVN3.items() if len(letter) == 1 and not unicodedata.combining(letter)}
_VISCII_ENCODE = {letter: byte for byte, letter in _VISCII.items()}
_VNI_SINGLE_ENCODE = {letter: byte for byte, letter in _VNI_SINGLE.items()}
_VNI_MARKS_ENCODE = {marks: byte for byte, marks in _VNI_MARKS.items()}


def encode_legacy(text: str, charset: Charset) -> bytes:
    """``text`` in a legacy encoding. A capital TCVN3 has no byte for is written lower-case
    (as the ``.VnTimeH`` fonts did); anything else the encoding cannot hold raises ``ValueError``."""
    out = bytearray()
    for char in unicodedata.normalize("NFC", text):
        if char.isascii() and not (charset == "viscii" and ord(char) in _VISCII):
            out.append(ord(char))
        elif charset == "tcvn3" and (byte := _TCVN3_ENCODE.get(char, _TCVN3_ENCODE.get(char.lower()))):
            out.append(byte)
        elif charset == "viscii" and char in _VISCII_ENCODE:
            out.append(_VISCII_ENCODE[char])
        elif charset == "vni" and (encoded := _encode_vni(char)):
            out += encoded
        elif (byte_of := misread_bytes(char)) and decode_legacy(byte_of, charset) == char:
            out += byte_of  # punctuation the legacy set shares with cp1252 (“ ” – …, no-break space)
        else:
            raise ValueError(f"{charset} cannot hold {char!r}")
    return bytes(out)


def _encode_vni(char: str) -> bytes | None:
    if char in _VNI_SINGLE_ENCODE:
        return bytes([_VNI_SINGLE_ENCODE[char]])
    base, *marks = unicodedata.normalize("NFD", char)
    if _HORN in marks:
        marks.remove(_HORN)
        base = unicodedata.normalize("NFC", base + _HORN)
        if base not in _VNI_SINGLE_ENCODE:
            return None
        head = bytes([_VNI_SINGLE_ENCODE[base]])
    elif base.isascii() and base.isalpha():
        head = base.encode()
    else:
        return None
    if not marks:
        return head
    byte = _VNI_MARKS_ENCODE.get("".join(sorted(marks, key=lambda m: m not in _SHAPE_BASES)))
    if byte is None:
        return None
    return head + bytes([byte - 0x20 if base.isupper() else byte])


# -- text that was legacy bytes read as cp1252 or latin-1 -------------------------------------


def misread_bytes(text: str) -> bytes | None:
    """The bytes ``text`` was decoded from, if it is 8-bit bytes read as cp1252 or latin-1."""
    out = bytearray()
    for char in text:
        code = ord(char)
        if code < 0x80:
            out.append(code)
            continue
        try:
            out += char.encode("cp1252")
        except UnicodeEncodeError:
            if code > 0xFF:
                return None
            out.append(code)  # latin-1: a byte cp1252 leaves undefined, or a C1 control
    return bytes(out)


def repair_misread(text: str, charset: Charset) -> str | None:
    """Proper NFC Unicode for ``text`` that is ``charset`` bytes read as cp1252 or latin-1,
    or None when it does not read as Vietnamese in that charset (or holds nothing to convert)."""
    raw = misread_bytes(text)
    if raw is None or raw.isascii():
        return None
    result = decode_legacy(raw, charset)
    if result == unicodedata.normalize("NFC", text) or not reads_as_vietnamese(result):
        return None
    return result


def repair_utf8_misread(text: str) -> str | None:
    """Text for UTF-8 that was read as cp1252 or latin-1 ("HÃ  Ná»™i" → "Hà Nội"), or None.

    Lossless: UTF-8 either decodes or it does not. Read twice over ("HÃƒÂ "), it is undone twice.
    """
    fixed = None
    for _ in range(3):
        raw = misread_bytes(fixed or text)
        if raw is None or raw.isascii():
            break
        try:
            candidate = raw.decode("utf-8")
        except UnicodeDecodeError:
            break
        if candidate == (fixed or text):
            break
        fixed = candidate
    return unicodedata.normalize("NFC", fixed) if fixed is not None else None


def guess_legacy_charset(text: str) -> Charset | None:
    """Which legacy encoding ``text`` (read as cp1252/latin-1) was in, or None when none fits
    cleanly or two fit equally well. Scored by how many of the converted words are Vietnamese."""
    scores: dict[Charset, tuple[int, str]] = {}
    for charset in CHARSETS:
        result = repair_misread(text, charset)
        if result is not None:
            valid, _invalid = syllable_counts(result)
            scores[charset] = (valid, result)
    if not scores:
        return None
    best = max(score for score, _ in scores.values())
    winners = {result for score, result in scores.values() if score == best}
    if len(winners) > 1:
        return None  # two readings as good as each other: a person decides
    return next(charset for charset, (score, _) in scores.items() if score == best)


# -- reading the result -----------------------------------------------------------------------

_INITIALS = "ngh|ng|nh|ch|gh|gi|kh|ph|th|tr|qu|[bcdđghklmnprstvx]"
#: Vowel groups that end a syllable on their own (no final consonant may follow).
_OPEN = (
    "a e ê i o ô ơ u ư y ai ao au ay âu ây eo êu ia iu oa oe oi ôi ơi ua uê ui uy ưa ưi ưu uơ "
    "iêu yêu oai oay oao oeo uây uôi ươi ươu uya uyu"
).split()
#: Vowel groups that take (and for ă, â, iê, yê, uâ, uô, ươ, oă, uyê, oo: need) a final consonant.
_CLOSED = "a ă â e ê i o ô ơ u ư y iê yê oa oă oe oo uâ uê uô ươ uy uyê".split()
_FINALS = "ch|nh|ng|c|m|n|p|t"
_SYLLABLE = re.compile(
    rf"(?P<initial>{_INITIALS})?"
    rf"(?:(?P<open>{'|'.join(sorted(_OPEN, key=len, reverse=True))})"
    rf"|(?P<closed>{'|'.join(sorted(_CLOSED, key=len, reverse=True))})(?P<final>{_FINALS}))"
)
_WORD = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=8192)
def vietnamese_syllable(word: str) -> bool:
    """Whether ``word`` (any case, NFC or NFD) is a well-formed Vietnamese syllable."""
    word = unicodedata.normalize("NFC", word)
    if not word or not (word.islower() or word.isupper() or word.istitle()):
        return False  # "hÀ": a capital inside a word is a converted byte, not a letter someone typed
    decomposed = unicodedata.normalize("NFD", word.lower())
    tones = [c for c in decomposed if c in _TONES]
    if len(tones) > 1:
        return False
    plain = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES))
    match = _SYLLABLE.fullmatch(plain)
    if match is None:
        return False
    if match["final"] in ("c", "ch", "p", "t") and tones and tones[0] not in (_ACUTE, _DOT):
        return False  # a stopped syllable takes only the sắc or nặng tone
    return True


def syllable_counts(text: str) -> tuple[int, int]:
    """(Vietnamese syllables, other words) among the words of ``text`` that are not plain ASCII."""
    valid = invalid = 0
    for word in _WORD.findall(text):
        if word.isascii():
            continue
        if vietnamese_syllable(word):
            valid += 1
        else:
            invalid += 1
    return valid, invalid


def reads_as_vietnamese(text: str) -> bool:
    """Whether converted text reads cleanly: its accented words are (nine in ten at least)
    Vietnamese syllables and nothing in it still looks like a legacy byte."""
    valid, invalid = syllable_counts(text)
    return valid > 0 and invalid * 10 <= valid + invalid and legacy_encoding(text) is None


# -- the connector's policy -------------------------------------------------------------------


def convert_legacy_text(text: str, mode: LegacyText) -> tuple[str, str] | None:
    """``text`` in proper Unicode and what it was ("utf-8", "tcvn3", "vni", "viscii"), when
    ``mode`` allows converting it and it needs converting; None otherwise (the text is then
    checked as it is, and quarantined if it still looks garbled).

    - ``reject``: never converts.
    - every other mode repairs UTF-8 read as cp1252 ("HÃ  Ná»™i"): lossless, so always safe.
    - a named charset converts text that does not read as Vietnamese (``legacy_encoding``
      flags it, or one of its accented words is no Vietnamese syllable) and reads cleanly
      once converted from that charset.
    - ``auto`` does the same with whichever of the three reads best, and nothing when none
      reads cleanly or two read equally well.

    Text that already reads as Vietnamese is left alone, so a source that sends both Unicode
    and legacy text is safe; the cost is a short legacy text that happens to read as other
    Vietnamese (TCVN3 writes "phố" as "phè") passing unconverted.
    """
    if mode == "reject" or text.isascii():
        return None
    if mode not in ("auto", *CHARSETS):
        raise ValueError(f"unknown legacy_text mode {mode!r}")
    if legacy_encoding(text) and (fixed := repair_utf8_misread(text)) is not None:
        return fixed, "utf-8"
    if legacy_encoding(text) is None and syllable_counts(text)[1] == 0:
        return None
    charset = guess_legacy_charset(text) if mode == "auto" else mode
    fixed = repair_misread(text, charset) if charset else None
    return (fixed, charset) if fixed is not None else None
