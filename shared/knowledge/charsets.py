"""The character encoding of an HTML page, decided as a browser decides it (WHATWG HTML and Encoding).

Pure. Many sites send a bare ``Content-Type: text/html`` and name their encoding only in a ``<meta>``;
decoding those as UTF-8 (httpx's default) turned every accented letter of a windows-1252 page into
U+FFFD in its title, its chunks and its search terms. The order, as in browsers: a byte-order mark, the
header's charset, an XML declaration (XHTML), a ``<meta>`` in the first 1024 bytes or later in the
``<head>`` (up to 64 KB), then UTF-8 when the bytes are UTF-8, or nearly so, and windows-1252 when they
are not (what an undeclared legacy page almost always is; see :func:`undeclared_encoding`).

Labels are mapped as the WHATWG Encoding Standard maps them, so ``iso-8859-1``, ``latin1`` and
``us-ascii`` read as windows-1252 (letters and curly quotes where latin-1 has control characters), and
a label outside the standard (``utf-7``, a Python-only codec name, a typo) is ignored, never passed to
:meth:`bytes.decode`.
"""

from __future__ import annotations

import codecs
import re
from email.message import Message

PRESCAN_BYTES = 1024  # how much of a page a <meta> declaration is looked for in (WHATWG)
# Browsers also honour a <meta> found later while parsing the <head> (by reloading the page): one after
# 1024 bytes of stylesheets and scripts is read too, up to the end of the <head> within this many bytes.
HEAD_SCAN_BYTES = 65_536
# An undeclared page that is mostly UTF-8 stays UTF-8 unless its invalid bytes are more than this many
# and more than one in STRAY_BYTES_PER bytes (see undeclared_encoding).
STRAY_BYTES_TOLERATED = 8
STRAY_BYTES_PER = 1000
_XML_DECLARATION = re.compile(rb"""<\?xml\s[^>]*?encoding\s*=\s*(["'])([A-Za-z0-9._:-]+)\1""")

_WHATWG_LABELS = {
    # Python codec: the WHATWG labels of the encoding it implements.
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 "
    "iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 "
    "iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 "
    "iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 "
    "iso88598 iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    # x-user-defined (its high bytes are private-use characters, no text to index) read as in a prescan.
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1 "
    "iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252 x-user-defined",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 "
    "l5 latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    # WHATWG decodes GBK with its gb18030 decoder, Big5 as Big5-HKSCS, Shift_JIS and EUC-KR with
    # Microsoft's extensions: the Python codecs below are those supersets.
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 "
    "ksc_5601 windows-949",
    "utf-16-be": "unicodefffe utf-16be",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
}
# Every WHATWG label (trimmed, lower-case) → the Python codec to decode with. The "replacement" labels
# (iso-2022-kr, hz-gb-2312, ...) are left out: WHATWG decodes them to a single U+FFFD, nothing to index.
LABELS: dict[str, str] = {
    label: codec for codec, labels in _WHATWG_LABELS.items() for label in labels.split()
}

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),  # the -sig codec drops the mark instead of decoding it as U+FEFF
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF16_LE, "utf-16"),
)
_SPACE_CHARS = "\t\n\x0c\r "
_SPACE = frozenset(_SPACE_CHARS.encode())
_SLASH, _EQUALS, _GT, _LT = b"/=><"


def encoding_for_label(label: str) -> str | None:
    """The Python codec for a WHATWG encoding label (``" Latin1 "`` → ``cp1252``); None for an unknown one."""
    return LABELS.get(label.strip(_SPACE_CHARS).lower())


def bom_encoding(body: bytes) -> str | None:
    """The codec a byte-order mark at the start of ``body`` names, else None."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec
    return None


def header_charset(content_type: str | None) -> str | None:
    """The codec for the ``charset`` parameter of a Content-Type header: None if absent or unknown."""
    if not content_type:
        return None
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    return encoding_for_label(charset) if isinstance(charset, str) else None


def html_encoding(content_type: str | None, body: bytes) -> str:
    """The codec to decode an HTML page with: a byte-order mark, else the Content-Type's charset, else
    an XML declaration's encoding (XHTML), else a ``<meta>`` declaration (:func:`prescan` of the first
    :data:`PRESCAN_BYTES`, then of the rest of the ``<head>`` up to :data:`HEAD_SCAN_BYTES`), else
    :func:`undeclared_encoding`.
    """
    found = (
        bom_encoding(body)
        or header_charset(content_type)
        or xml_declaration(body)
        or prescan(body[:PRESCAN_BYTES])
        or prescan(body[: _head_end(body)])
    )
    return found or undeclared_encoding(body)


def undeclared_encoding(body: bytes) -> str:
    """UTF-8 or windows-1252 for a page that declares nothing.

    UTF-8 when the bytes are UTF-8. windows-1252 when they hold no UTF-8 multi-byte character at all
    (legacy text: it decodes exactly), or when invalid bytes are a meaningful share: more than
    :data:`STRAY_BYTES_TOLERATED` and more than one in :data:`STRAY_BYTES_PER` bytes. A page of real UTF-8
    text with a few stray bytes (a pasted windows-1252 snippet, a seam in a template, a lone \\xa0) stays
    UTF-8 with a U+FFFD for each: a handful of lost characters, where windows-1252 would garble every
    accented letter of the page. A windows-1252 page that happens to hold a byte pair valid as UTF-8
    has an invalid byte for nearly every accented letter, far over both bounds.
    """
    text = body.decode("utf-8", errors="replace")
    stray = text.count("\ufffd") - body.count("\ufffd".encode())
    if stray <= 0:
        return "utf-8"
    if not any(ord(ch) > 0x7F and ch != "\ufffd" for ch in text):
        return "cp1252"
    if stray > STRAY_BYTES_TOLERATED and stray * STRAY_BYTES_PER > len(body):
        return "cp1252"
    return "utf-8"


def xml_declaration(body: bytes) -> str | None:
    """The known encoding an XML declaration at the very start of ``body`` names (XHTML), or None."""
    match = _XML_DECLARATION.match(body[:PRESCAN_BYTES])
    if match is None:
        return None
    codec = encoding_for_label(match.group(2).decode("ascii"))
    return "utf-8" if codec in ("utf-16-be", "utf-16-le") else codec


def _head_end(body: bytes) -> int:
    """Where the ``<head>`` ends (``</head>`` or ``<body``) within :data:`HEAD_SCAN_BYTES`; else
    :data:`PRESCAN_BYTES` (a head that runs on is not read to an unknown end)."""
    window = body[:HEAD_SCAN_BYTES].lower()
    ends = [i for i in (window.find(b"</head"), window.find(b"<body")) if i >= 0]
    return min(ends) if ends else PRESCAN_BYTES


def prescan(head: bytes) -> str | None:
    """The codec the first ``<meta charset>`` or ``<meta http-equiv=content-type content=...>`` with a
    known label in ``head`` declares, skipping comments and other tags' attributes (the WHATWG "prescan
    a byte stream to determine its encoding"); None when there is none."""
    pos = 0
    end = len(head)
    while pos < end:
        if head.startswith(b"<!--", pos):
            close = head.find(b"-->", pos + 2)
            if close < 0:
                return None
            pos = close + 3
        elif head[pos : pos + 5].lower() == b"<meta" and head[pos + 5 : pos + 6] in _META_END:
            pos, codec = _meta(head, pos + 6)
            if codec:
                return codec
        elif _starts_tag(head, pos):
            while pos < end and head[pos] not in _SPACE and head[pos] != _GT:
                pos += 1
            while (attribute := _attribute(head, pos)) is not None:
                pos = attribute[2]
            pos += 1
        elif head[pos : pos + 2] in (b"<!", b"</", b"<?"):
            close = head.find(b">", pos)
            if close < 0:
                return None
            pos = close + 1
        else:
            pos += 1
    return None


_META_END = (b"\t", b"\n", b"\x0c", b"\r", b" ", b"/")


def _starts_tag(head: bytes, pos: int) -> bool:
    """``<`` and a letter, or ``</`` and a letter, at ``pos``."""
    name = pos + 2 if head[pos + 1 : pos + 2] == b"/" else pos + 1
    return head[pos] == _LT and head[name : name + 1].isalpha()


def _meta(head: bytes, pos: int) -> tuple[int, str | None]:
    """The attributes of one ``<meta`` from ``pos``: ``(position after them, codec or None)``."""
    seen: set[bytes] = set()
    got_pragma = False
    need_pragma: bool | None = None
    charset: str | None = None
    while (attribute := _attribute(head, pos)) is not None:
        name, value, pos = attribute
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            got_pragma = got_pragma or value == b"content-type"
        elif name == b"content" and charset is None:
            declared = _charset_in_content(value.decode("ascii", "replace"))
            if declared is not None:
                charset, need_pragma = declared, True
        elif name == b"charset":
            charset, need_pragma = value.decode("ascii", "replace"), False
    if need_pragma is None or (need_pragma and not got_pragma) or charset is None:
        return pos + 1, None
    codec = encoding_for_label(charset)
    if codec in ("utf-16-be", "utf-16-le"):
        codec = "utf-8"  # bytes a prescan could read as ASCII are not UTF-16, whatever they claim
    return pos + 1, codec


def _attribute(head: bytes, pos: int) -> tuple[bytes, bytes, int] | None:
    """WHATWG "get an attribute": ``(lower-cased name, value, position after it)``, or None at ``>`` or
    the end of ``head``."""
    end = len(head)
    while pos < end and (head[pos] in _SPACE or head[pos] == _SLASH):
        pos += 1
    if pos >= end or head[pos] == _GT:
        return None
    name = bytearray()
    while True:
        if pos >= end:
            return None
        c = head[pos]
        if c == _EQUALS and name:
            pos += 1
            break
        if c in _SPACE:
            while pos < end and head[pos] in _SPACE:
                pos += 1
            if pos >= end or head[pos] != _EQUALS:
                return bytes(name), b"", pos
            pos += 1
            break
        if c in (_SLASH, _GT):
            return bytes(name), b"", pos
        name += bytes([c]).lower()
        pos += 1
    while pos < end and head[pos] in _SPACE:
        pos += 1
    if pos >= end:
        return None
    quote = head[pos : pos + 1]
    if quote in (b'"', b"'"):
        close = head.find(quote, pos + 1)
        if close < 0:
            return None
        return bytes(name), head[pos + 1 : close].lower(), close + 1
    if quote == b">":
        return bytes(name), b"", pos
    value = bytearray()
    while pos < end and head[pos] not in _SPACE and head[pos] != _GT:
        value += head[pos : pos + 1].lower()
        pos += 1
    return bytes(name), bytes(value), pos


def _charset_in_content(content: str) -> str | None:
    """WHATWG "extract a character encoding from a meta element": the label after ``charset=`` in a
    ``content`` value such as ``text/html; charset=windows-1252``, or None."""
    lower = content.lower()
    pos = 0
    while True:
        found = lower.find("charset", pos)
        if found < 0:
            return None
        pos = found + len("charset")
        while pos < len(content) and content[pos] in _SPACE_CHARS:
            pos += 1
        if pos < len(content) and content[pos] == "=":
            break
    pos += 1
    while pos < len(content) and content[pos] in _SPACE_CHARS:
        pos += 1
    if pos >= len(content):
        return None
    if content[pos] in "\"'":
        close = content.find(content[pos], pos + 1)
        return content[pos + 1 : close] if close >= 0 else None
    stop = pos
    while stop < len(content) and content[stop] not in _SPACE_CHARS + ";":
        stop += 1
    return content[pos:stop]
