"""Vietnamese text written the way legacy 8-bit systems wrote it, then read as cp1252/latin-1.

Test data only: enough of TCVN3 (ABC), VNI-Windows and VISCII to produce the garbled text a
bridge meets when an old system's bytes are decoded as Western European (the "Hµ Néi"
look). Not a converter: the conversion itself is issue 4.
"""

from __future__ import annotations

import unicodedata

# TCVN3 (ABC, the .VnTime fonts): lower-case letters; upper-case tone letters have no code
# point of their own (a separate .VnTimeH font), so they are written lower-case here.
_TCVN3 = dict(zip(
    "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵĂÂĐÊÔƠƯ",
    bytes([
        0xB5, 0xB8, 0xB6, 0xB7, 0xB9, 0xA8, 0xBB, 0xBE, 0xBC, 0xBD, 0xC6, 0xA9, 0xC7, 0xCA, 0xC8, 0xC9, 0xCB, 0xAE,
        0xCC, 0xD0, 0xCE, 0xCF, 0xD1, 0xAA, 0xD2, 0xD5, 0xD3, 0xD4, 0xD6, 0xD7, 0xDD, 0xD8, 0xDC, 0xDE,
        0xDF, 0xE3, 0xE1, 0xE2, 0xE4, 0xAB, 0xE5, 0xE8, 0xE6, 0xE7, 0xE9, 0xAC, 0xEA, 0xED, 0xEB, 0xEC, 0xEE,
        0xEF, 0xF3, 0xF1, 0xF2, 0xF4, 0xAD, 0xF5, 0xF8, 0xF6, 0xF7, 0xF9, 0xFA, 0xFD, 0xFB, 0xFC, 0xFE,
        0xA1, 0xA2, 0xA7, 0xA3, 0xA4, 0xA5, 0xA6,
    ]),
))

# VNI-Windows: a base letter followed by a byte for its marks.
_VNI_SHAPE = {"\u0302": 0xE2, "\u0306": 0xEA}  # circumflex, breve
_VNI_TONE = {"\u0300": 0xF8, "\u0301": 0xF9, "\u0309": 0xFB, "\u0303": 0xF5, "\u0323": 0xEF}
_VNI_CIRCUMFLEX_TONE = {"\u0300": 0xE0, "\u0301": 0xE1, "\u0309": 0xE5, "\u0303": 0xE3, "\u0323": 0xE4}
_VNI_BREVE_TONE = {"\u0300": 0xE8, "\u0301": 0xE9, "\u0309": 0xFA, "\u0303": 0xFC, "\u0323": 0xEB}
_VNI_HORN = {"o": 0xF4, "O": 0xD4, "u": 0xF6, "U": 0xD6}

# VISCII (RFC 1456): every precomposed letter has a byte; Latin-1's own letters keep theirs.
_VISCII = dict(zip(
    "ẠẮẰẶẤẦẨẬẼẸẾỀỂỄỆỐỒỔỖỘỢỚỜỞỊỎỌỈỦŨỤỲÕắằặấầẩậẽẹếềểễệốồổỗỠƠộờởịỰỨỪỬơớƯÀÁÂÃẢĂẳẵÈÉÊẺÌÍĨỳĐứÒÓÔạỷừửÙÚỹỵÝỡư"
    "àáâãảăữẫèéêẻìíĩỉđựòóôõỏọụùúũủýợỮ",
    bytes(range(0x80, 0x100)),
))


def _latin(data: bytes) -> str:
    """Bytes as a Western-European system shows them: cp1252 where it defines a byte, latin-1 elsewhere."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or bytes([b]).decode("latin-1") for b in data)


def tcvn3(text: str) -> str:
    out = bytearray()
    for char in unicodedata.normalize("NFC", text):
        code = _TCVN3.get(char, _TCVN3.get(char.lower()))
        out += bytes([code]) if code is not None else char.encode("latin-1", errors="replace")
    return _latin(bytes(out))


def vni(text: str) -> str:
    out = bytearray()
    for char in unicodedata.normalize("NFC", text):
        if char in "đĐ":
            out.append(0xF1 if char == "đ" else 0xD1)
            continue
        base, *marks = unicodedata.normalize("NFD", char)
        if base in _VNI_HORN and "\u031b" in marks:
            out.append(_VNI_HORN[base])
            marks.remove("\u031b")
        else:
            out += base.encode("latin-1", errors="replace")
        shape = next((m for m in marks if m in _VNI_SHAPE), None)
        tone = next((m for m in marks if m in _VNI_TONE), None)
        if shape == "\u0302" and tone:
            out.append(_VNI_CIRCUMFLEX_TONE[tone])
        elif shape == "\u0306" and tone:
            out.append(_VNI_BREVE_TONE[tone])
        elif shape:
            out.append(_VNI_SHAPE[shape])
        elif tone:
            out.append(_VNI_TONE[tone])
    return _latin(bytes(out))


def viscii(text: str) -> str:
    out = bytearray()
    for char in unicodedata.normalize("NFC", text):
        code = _VISCII.get(char)
        out += bytes([code]) if code is not None else char.encode("latin-1", errors="replace")
    return _latin(bytes(out))


def utf8_as_cp1252(text: str) -> str:
    return _latin(text.encode("utf-8"))


ENCODERS = {"tcvn3": tcvn3, "vni": vni, "viscii": viscii, "utf8_as_cp1252": utf8_as_cp1252}
