"""Citizens' free text: markup removed, and broken or legacy-encoded text recognised.

A citizen app passes on whatever its users type, and some apps (or the web forms in front
of them) send HTML. Policy, applied by the citizen connector:

- **Markup** is removed and the report kept: ``<script>``/``<style>`` blocks go with their
  content, other tags go and their text stays, entities are decoded, and a ``<`` that could
  still open a tag downstream becomes ``‹``. No document system ever receives a tag.
- **Control characters and unpaired surrogates** (a NUL, a stray UTF-16 half) cannot be
  stored or sent as XML: the report is quarantined with the field named.
- **Legacy 8-bit text** (TCVN3/ABC, VNI-Windows or VISCII bytes read as cp1252/latin-1,
  the "Hµ Néi" look) and UTF-8 read as cp1252 ("HÃ  Ná»™i") cannot be routed or read by an
  agency: quarantined with the reason unless the source's ``legacy_text`` setting converts
  them (``paht_bridge.normalise.legacy_charsets``, issue 4).

Detection is a heuristic over characters, not a dictionary: it looks for characters no
Vietnamese word contains (``µ ¸ ¶ ø ï ö ñ ä``…) sitting next to letters, and for letter pairs
Vietnamese never has (VNI's "aù"). Its limit: a legacy byte that reads as another valid
Vietnamese letter (TCVN3 writes "phố" as "phè") is invisible on its own, so a very short
text can pass; a sentence has enough other letters to be caught.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

# -- markup ---------------------------------------------------------------------------------

_DANGEROUS_BLOCK = re.compile(
    r"<(script|style|iframe|object|embed|noscript|template|svg|math)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_BREAK = re.compile(r"<(?:br|hr|/p|/div|/li|/tr|/h[1-6])\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?(?:-->|\Z)|<!\[CDATA\[.*?(?:\]\]>|\Z)|<![^<>]*>|<\?[^<>]*>", re.DOTALL)
_TAG_OPENER = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_SPACES = re.compile(r"[ \t\u00a0]{2,}")


def has_markup(text: str) -> bool:
    return bool(_TAG.search(text) or _ENTITY.search(text))


def strip_markup(text: str) -> str:
    """Plain text from text that may hold HTML; unchanged when it holds none.

    Repeated until stable, so markup hidden in entities (``&lt;script&gt;``) goes as well.
    """
    if "<" not in text and "&" not in text:
        return text
    for _ in range(5):
        before = text
        if _ENTITY.search(text):
            text = html.unescape(text)
        text = _DANGEROUS_BLOCK.sub(" ", text)
        text = _BREAK.sub("\n", text)
        text = _TAG.sub("", text)
        if text == before:
            break
    text = _TAG_OPENER.sub("‹", text)  # whatever is left can never open a tag in an agency's viewer
    return _SPACES.sub(" ", text)


# -- characters that cannot be stored or sent ------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_STACKED_MARKS = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff]{3,}")


def text_problem(text: str, *, legacy: bool = True) -> str | None:
    """The first reason ``text`` cannot be taken as it is, or None.

    Legacy encodings are named before control characters: text in VISCII read as latin-1
    carries C1 controls, and "legacy-encoded" says what to do about it.
    """
    if match := _SURROGATE.search(text):
        return f"contains an unpaired surrogate U+{ord(match.group()):04X} (broken UTF-16)"
    return (legacy_encoding(text) if legacy else None) or unusable_characters(text)


def unusable_characters(text: str) -> str | None:
    """Why ``text`` cannot be stored or sent as it is, or None."""
    if match := _SURROGATE.search(text):
        return f"contains an unpaired surrogate U+{ord(match.group()):04X} (broken UTF-16)"
    if match := _CONTROL.search(text):
        return f"contains control character U+{ord(match.group()):04X}"
    if match := _STACKED_MARKS.search(text):
        return f"contains {len(match.group())} stacked combining marks (garbled text)"
    return None


# -- legacy encodings -------------------------------------------------------------------------

_TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")  # grave, acute, tilde, hook above, dot below
_SHAPES = {"\u0302": "aeo", "\u0306": "a", "\u031b": "ou"}  # circumflex, breve, horn: on these vowels only
_CP1252_SPECIALS = frozenset("‚ƒ„†‡ˆ‰Š‹ŒŽ˜™š›œžŸ")  # cp1252's 0x80–0x9F letters and signs, minus everyday punctuation
_HARMLESS = frozenset("\u00a0°")  # common beside letters in real text (30°C, 5 m²... the non-breaking space)
_MARKED_VOWELS = "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ"
#: VNI writes a vowel's marks as a second letter: "Caây" for "Cây", "raùc" for "rác". In Vietnamese a
#: plain a or e is never followed by a marked vowel (the tone sits on the a or e), nor an o by â or ê.
_VNI_PAIRS = re.compile(f"[aAeE][{_MARKED_VOWELS}{_MARKED_VOWELS.upper()}]|[oO][âêÂÊ]")


@lru_cache(maxsize=4096)
def _vietnamese_letter(char: str) -> bool:
    """A letter of the Vietnamese alphabet (any case, any tone), or a plain ASCII letter."""
    if char in "đĐ" or ("a" <= char.lower() <= "z" and char.isascii()):
        return True
    base, *marks = unicodedata.normalize("NFD", char)
    if not (base.isascii() and base.lower() in "aeiouy"):
        return False
    shapes = [m for m in marks if m in _SHAPES]
    tones = [m for m in marks if m in _TONES]
    return (
        len(shapes) + len(tones) == len(marks) and len(shapes) <= 1 and len(tones) <= 1
        and all(base.lower() in _SHAPES[m] for m in shapes)
    )


#: Only these can be strays (``_stray``): the Latin-1 range and cp1252's specials.
_MAYBE_STRAY = re.compile("[\x80-\xff" + re.escape("".join(sorted(_CP1252_SPECIALS))) + "]")


def _stray(char: str) -> bool:
    code = ord(char)
    if char in _HARMLESS or char.isspace():
        return False
    if char in _CP1252_SPECIALS:
        return True
    return 0x80 <= code <= 0xFF and not _vietnamese_letter(char)


def _utf8_read_as_8bit(text: str) -> bool:
    """UTF-8 bytes decoded as cp1252 or latin-1: re-encoding them gives back valid, different UTF-8."""
    if text.isascii():
        return False
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != text and not fixed.isascii():
            return True
    return False


def legacy_encoding(text: str) -> str | None:
    """Why ``text`` looks like Vietnamese in a legacy 8-bit encoding read the wrong way, or None."""
    if text.isascii():
        return None
    if _utf8_read_as_8bit(text):
        return "looks like UTF-8 read as cp1252/latin-1 (mojibake)"
    strays: list[str] = []
    for found in _MAYBE_STRAY.finditer(text):  # the few characters that can be strays, not every one
        char, index = found.group(), found.start()
        if _stray(char):
            beside = text[index - 1 : index] + text[index + 1 : index + 2]
            if any(c.isalpha() for c in beside):  # "Hµ", "Haø": inside a word, not a lone © or «»
                strays.append(char)
    strays += [pair[1] for pair in _VNI_PAIRS.findall(text)]
    if len(strays) >= 2 or (strays and len(strays) * 12 >= sum(map(str.isalpha, text))):
        sample = "".join(dict.fromkeys(strays))[:6]
        return (
            f"looks like legacy-encoded Vietnamese (TCVN3/VNI/VISCII read as cp1252): "
            f"{len(strays)} stray character{'s' if len(strays) > 1 else ''} such as {sample!r}"
        )
    return None
