"""Which encoding an HTML page is decoded with when its Content-Type does not say (WHATWG sniffing)."""

from __future__ import annotations

import codecs

import pytest

from shared.knowledge import charsets
from shared.knowledge.charsets import html_encoding

CAFE = "<title>Café crème</title><p>naïve façade \u2013 “quoted”</p>"


def _page(head: str, encoding: str, text: str = CAFE) -> bytes:
    return f"<!doctype html><html><head>{head}</head><body>{text}</body></html>".encode(encoding)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ('<meta charset="windows-1252">', "cp1252"),
        ("<meta charset=windows-1252>", "cp1252"),
        ("<META CHARSET='Windows-1252'>", "cp1252"),
        ('<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">', "cp1252"),
        ("<meta content=\"text/html;charset='cp1252'\" http-equiv=content-type>", "cp1252"),
        # Browsers read latin-1 and ASCII as windows-1252, which has letters where they have controls.
        ('<meta charset="ISO-8859-1">', "cp1252"),
        ('<meta charset=" latin1 ">', "cp1252"),
        ('<meta charset="us-ascii">', "cp1252"),
        ('<meta charset="iso-8859-15">', "iso8859_15"),
        ('<meta charset="koi8-r">', "koi8_r"),
        ('<meta charset="shift_jis">', "cp932"),
        ('<meta charset="gb2312">', "gb18030"),
        ('<meta charset="utf-16">', "utf-8"),  # a page whose bytes a prescan could read is not UTF-16
    ],
)
def test_meta_declarations(head: str, expected: str) -> None:
    assert html_encoding("text/html", _page(head, "ascii", "x")) == expected


def test_a_windows_1252_page_declared_in_meta_decodes_cleanly() -> None:
    body = _page('<meta charset="windows-1252">', "cp1252")
    encoding = html_encoding("text/html", body)
    assert body.decode(encoding) == _page('<meta charset="windows-1252">', "utf-8").decode()


def test_what_the_prescan_skips() -> None:
    hidden = "<!-- <meta charset=koi8-r> -->"
    assert html_encoding("text/html", _page(hidden + "<meta charset=cp1251>", "ascii", "x")) == "cp1251"
    # A content attribute without http-equiv=content-type is not a declaration; nor is a charset
    # named in another element's attribute.
    assert html_encoding(None, _page('<meta content="charset=koi8-r">', "ascii", "x")) == "utf-8"
    assert html_encoding(None, _page('<div title="<meta charset=koi8-r>">', "ascii", "x")) == "utf-8"
    # The first declaration counts; an unknown label is passed over for the next one.
    assert html_encoding(None, _page("<meta charset=koi8-u><meta charset=cp1251>", "ascii", "x")) == "koi8_u"
    assert html_encoding(None, _page("<meta charset=x-bogus><meta charset=cp1251>", "ascii", "x")) == "cp1251"
    # Only the first 1024 bytes are looked at.
    late = b"<html>" + b" " * 1024 + b'<meta charset="koi8-r">' + "é".encode()
    assert html_encoding(None, late) == "utf-8"


def test_header_bom_and_fallback() -> None:
    meta = _page('<meta charset="koi8-r">', "utf-8")
    # The header's charset wins over <meta>, normalised the same way; an unknown one is ignored.
    assert html_encoding("text/html; charset=UTF-8", meta) == "utf-8"
    assert html_encoding('text/html; charset="iso-8859-1"', meta) == "cp1252"
    assert html_encoding("text/html; charset=nonsense", meta) == "koi8_r"
    # A byte-order mark wins over everything, as in browsers.
    assert html_encoding("text/html; charset=iso-8859-1", codecs.BOM_UTF8 + meta) == "utf-8-sig"
    assert html_encoding(None, codecs.BOM_UTF16_LE + "<p>x</p>".encode("utf-16-le")) == "utf-16"
    assert html_encoding(None, codecs.BOM_UTF16_BE + "<p>x</p>".encode("utf-16-be")) == "utf-16"
    # Nothing declared: UTF-8 when the bytes are UTF-8, else windows-1252.
    assert html_encoding("text/html", _page("", "utf-8")) == "utf-8"
    assert html_encoding("text/html", _page("", "cp1252")) == "cp1252"
    assert html_encoding(None, b"") == "utf-8"


def test_every_label_names_a_text_codec() -> None:
    for label, codec in charsets.LABELS.items():
        assert label == label.strip().lower()
        assert codecs.lookup(codec)._is_text_encoding, (label, codec)
        b"abcd".decode(codec)


def test_a_utf8_page_with_a_few_stray_bytes_stays_utf8() -> None:
    # One byte of another encoding (a pasted snippet, a template seam) in a UTF-8 page: a few U+FFFD,
    # not every accented letter of the page as mojibake.
    body = _page("", "utf-8") + b"\xa0"
    assert html_encoding("text/html", body) == "utf-8"
    long_body = _page("", "utf-8", CAFE * 200) + b"\xe9 \x92 \x96"
    assert html_encoding("text/html", long_body) == "utf-8"
    # Stray bytes everywhere (a meaningful share) in a page that also has some UTF-8: windows-1252.
    mixed = _page("", "cp1252", CAFE * 50) + "déjà".encode()
    assert html_encoding("text/html", mixed) == "cp1252"
    # Legacy text with no UTF-8 at all, however few its non-ASCII bytes: windows-1252.
    assert html_encoding("text/html", _page("", "ascii", "x" * 5000) + b"\x92") == "cp1252"


def test_a_meta_after_the_first_1024_bytes_in_the_head_is_read() -> None:
    padding = '<link rel="stylesheet" href="/x.css">' * 40
    body = _page(padding + '<meta charset="shift_jis">', "ascii", "x") + "日本語".encode("shift_jis")
    assert len(body.split(b"<meta")[0]) > charsets.PRESCAN_BYTES
    assert html_encoding("text/html", body) == "cp932"
    # Bounded: a head running on past HEAD_SCAN_BYTES is not read to its end.
    huge = _page('<link rel="x">' * 6000 + '<meta charset="koi8-r">', "ascii", "x")
    assert html_encoding("text/html", huge) == "utf-8"


def test_an_xml_declaration_is_honoured() -> None:
    sj = "日本語のドキュメント".encode("shift_jis")
    body = b'<?xml version="1.0" encoding="shift_jis"?><html><body>' + sj
    assert html_encoding("application/xhtml+xml", body) == "cp932"
    assert html_encoding(None, b"<?xml version='1.0' encoding='ISO-8859-1'?><p>caf\xe9</p>") == "cp1252"
    # The header still wins.
    assert html_encoding("application/xhtml+xml; charset=utf-8", body) == "utf-8"
