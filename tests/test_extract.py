"""Main-text extraction: title, headings and anchors kept; navigation and boilerplate dropped."""

from __future__ import annotations

import pytest

from shared.knowledge import extract
from shared.knowledge.chunker import chunk_page
from shared.knowledge.docbook import strip_section_label
from shared.knowledge.extract import ExtractedPage, Section, extract_page, slugify

PAGE = """<!doctype html>
<html><head>
  <title>Install Guide - Acme Docs</title>
  <link rel="canonical" href="/docs/install">
</head>
<body>
  <nav><ul><li><a href="/">Home</a></li><li><a href="/pricing">Pricing plans</a></li>
       <li><a href="/about">About the Acme company</a></li></ul></nav>
  <div class="cookie-banner">We use cookies to improve your experience. Accept all cookies.</div>
  <main><article>
    <h1 id="install-guide">Install Guide</h1>
    <p>This guide explains how to install Acme on Linux and macOS. It takes about five minutes and
       needs a recent Python interpreter.</p>
    <h2 id="reqs">Requirements</h2>
    <p>You need Python 3.11 or newer and at least 2 GB of free disk space on the target machine.</p>
    <ul><li>Python 3.11</li><li>pip 23 or newer</li></ul>
    <h2>Running the installer</h2>
    <p>Run the installer script with sudo privileges. The script downloads packages and configures
       the background services.</p>
    <h3><a name="trouble"></a>Troubleshooting</h3>
    <p>If the installer fails with error E42, remove the lock file and run the installer again.</p>
    <pre><code>rm /var/lock/acme.lock
acme-install --retry</code></pre>
    <h2>Running the installer</h2>
    <p>A second section with the same heading text must get its own anchor, not a duplicate.</p>
  </article></main>
  <footer><p>Copyright 2024 Acme Inc. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>
"""


def _page() -> ExtractedPage:
    page = extract_page(PAGE, "https://acme.dev/docs/install?ref=nav")
    assert page is not None
    return page


def _all_text(page: ExtractedPage) -> str:
    return "\n".join(f"{s.heading}\n{s.text}" for s in page.sections)


def test_title_and_headings_are_kept_in_order() -> None:
    page = _page()
    assert page.title == "Install Guide"
    assert [(s.heading, s.level) for s in page.sections] == [
        ("Install Guide", 1),
        ("Requirements", 2),
        ("Running the installer", 2),
        ("Troubleshooting", 3),
        ("Running the installer", 2),
    ]
    assert page.url == "https://acme.dev/docs/install?ref=nav"


def test_section_text_belongs_to_its_heading() -> None:
    sections = {s.anchor: s for s in _page().sections}
    assert "2 GB of free disk space" in sections["reqs"].text
    assert "- Python 3.11\n- pip 23 or newer" in sections["reqs"].text
    assert "error E42" in sections["trouble"].text
    # Code keeps its line breaks.
    assert "rm /var/lock/acme.lock\nacme-install --retry" in sections["trouble"].text
    assert "error E42" not in sections["reqs"].text


def test_anchors_come_from_ids_then_slugs_and_are_unique() -> None:
    anchors = [s.anchor for s in _page().sections]
    # id on the heading, id on an inner <a name>, then slugs for headings without one.
    assert anchors == ["install-guide", "reqs", "running-the-installer", "trouble", "running-the-installer-1"]


def test_navigation_cookie_banner_and_footer_are_dropped() -> None:
    text = _all_text(_page())
    for boilerplate in ("Pricing plans", "About the Acme company", "cookies", "Copyright", "Privacy policy"):
        assert boilerplate not in text


def test_canonical_url_is_made_absolute() -> None:
    assert _page().canonical_url == "https://acme.dev/docs/install"


def test_no_canonical_link_gives_none() -> None:
    html = PAGE.replace('<link rel="canonical" href="/docs/install">', "")
    page = extract_page(html, "https://acme.dev/x")
    assert page is not None
    assert page.canonical_url is None


def test_text_before_the_first_heading_is_a_level_zero_section() -> None:
    html = """<html><head><title>Release notes</title></head><body><article>
      <p>Version 4.2 brings faster startup and a new command line flag for quiet mode operation.</p>
      <h2>Fixes</h2><p>The scheduler no longer skips jobs that start exactly at midnight UTC.</p>
    </article></body></html>"""
    page = extract_page(html, "https://acme.dev/notes")
    assert page is not None
    assert page.sections[0] == Section(
        heading="",
        anchor="",
        level=0,
        text="Version 4.2 brings faster startup and a new command line flag for quiet mode operation.",
    )
    assert page.sections[1].heading == "Fixes"
    assert page.sections[1].anchor == "fixes"
    assert page.title == "Release notes"


def test_pages_without_main_text_give_none() -> None:
    assert extract_page("", "https://acme.dev/") is None
    assert extract_page("   ", "https://acme.dev/") is None
    nav_only = "<html><body><nav><a href='/a'>A</a> <a href='/b'>B</a></nav></body></html>"
    assert extract_page(nav_only, "https://acme.dev/") is None


def test_slugify_matches_common_doc_generators() -> None:
    assert slugify("Running the installer") == "running-the-installer"
    assert slugify("Troubleshooting & errors!") == "troubleshooting--errors"
    assert slugify("  Étape 2: Überblick ") == "étape-2-überblick"


@pytest.mark.parametrize(
    ("generator", "heading_html"),
    [
        ("mkdocs", '<h2 id="reqs">Requirements<a class="headerlink" href="#reqs">¶</a></h2>'),
        ("docusaurus", '<h2 id="reqs">Requirements<a href="#reqs" class="hash-link">\u200b</a></h2>'),
        ("gitbook", '<h2 id="reqs"><a href="#reqs">Requirements</a></h2>'),
    ],
)
def test_permalink_markers_of_doc_generators_are_not_part_of_headings(
    generator: str, heading_html: str
) -> None:
    html = f"""<html><head><title>Docs</title></head><body><main><article>
      <p>This page explains the installation of the product on every supported platform.</p>
      {heading_html}<p>You need Python 3.11 or newer and two gigabytes of free disk space.</p>
      <h2 id="csharp">Using it from C#</h2><p>The .NET client wraps the REST API for C# programs.</p>
    </article></main></body></html>"""
    page = extract_page(html, "https://acme.dev/install")
    assert page is not None
    assert [(s.heading, s.anchor) for s in page.sections[1:]] == [
        ("Requirements", "reqs"),
        ("Using it from C#", "csharp"),
    ], generator


def test_tables_keep_rows_and_cells_apart() -> None:
    html = """<html><head><title>Limits</title></head><body><main><article><h1>Limits</h1>
      <p>The following table lists the default limits of every plan that Acme offers to customers.</p>
      <table><tr><th>Plan</th><th>Requests per minute</th></tr><tr><td>Free</td><td>60</td></tr>
        <tr><td>Pro</td><td>600</td></tr></table>
      <blockquote>Limits can be raised on request by contacting the support team.</blockquote>
    </article></main></body></html>"""
    page = extract_page(html, "https://acme.dev/limits")
    assert page is not None
    text = page.sections[0].text
    assert "Plan | Requests per minute\nFree | 60\nPro | 600" in text
    assert text.endswith("Limits can be raised on request by contacting the support team.")


def test_xhtml_with_an_xml_declaration_is_extracted() -> None:
    html = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Legacy docs</title>
<link rel="canonical" href="https://acme.dev/legacy"/></head><body><div id="content">
<h1 id="top">Legacy guide</h1>
<p>This guide explains the configuration of the old server product for admins. Größe ✓</p>
<h2 id="cfg">Config</h2>
<p>Edit the server.conf file and restart the daemon to apply the new configuration.</p>
</div></body></html>"""
    page = extract_page(html, "https://acme.dev/legacy?print=1")
    assert page is not None
    assert [(s.heading, s.anchor) for s in page.sections] == [("Legacy guide", "top"), ("Config", "cfg")]
    assert "Größe ✓" in page.sections[0].text
    assert page.canonical_url == "https://acme.dev/legacy"


def test_an_extractor_crash_on_one_page_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> str:
        raise RecursionError("pathologically nested markup")

    monkeypatch.setattr(extract.trafilatura, "extract", crash)
    assert extract_page(PAGE, "https://acme.dev/docs/install") is None


# DocBook XSL output as Debian's postgresql-doc-15 ships it (runtime-config-connection.html, cut down:
# the same elements, classes, ids and line wrapping, fewer parameters). trafilatura drops every one of
# these headings on its own.
_DOCBOOK_HEAD = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" \
"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\
<html xmlns="http://www.w3.org/1999/xhtml"><head>\
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />\
<title>{title}</title><link rel="stylesheet" type="text/css" href="stylesheet.css" />\
<meta name="generator" content="DocBook XSL Stylesheets Vsnapshot" /></head>\
<body id="docContent" class="container-fluid col-10"><div class="navheader"><table width="100%" \
summary="Navigation header"><tr><th colspan="5" align="center">{title}</th></tr><tr><td width="10%" \
align="left"><a accesskey="p" href="runtime-config-file-locations.html" \
title="20.2. File Locations">Prev</a> </td>\
<td width="10%" align="left"><a accesskey="u" href="{up_href}" title="{up}">Up</a></td>\
<th width="60%" align="center">{up}</th><td width="10%" align="right"><a accesskey="h" href="index.html" \
title="PostgreSQL 15.18 Documentation">Home</a></td><td width="10%" align="right"> \
<a accesskey="n" href="runtime-config-resource.html" title="20.4. Resource Consumption">Next</a>\
</td></tr></table><hr /></div>"""
_DOCBOOK_FOOT = """<div class="navfooter"><hr /><table width="100%" summary="Navigation footer"><tr>\
<td width="40%" align="left"><a accesskey="p" href="runtime-config-file-locations.html">Prev</a> </td>\
<td width="20%" align="center"><a accesskey="u" href="runtime-config.html">Up</a></td>\
<td width="40%" align="right"> <a accesskey="n" href="runtime-config-resource.html">Next</a></td>\
</tr></table></div>\
</body></html>"""

DOCBOOK_SECTION_PAGE = (
    _DOCBOOK_HEAD.format(
        title="20.3.\u00a0Connections and Authentication",
        up="Chapter\u00a020.\u00a0Server Configuration",
        up_href="runtime-config.html",
    )
    + """<div class="sect1" id="RUNTIME-CONFIG-CONNECTION"><div class="titlepage"><div><div>\
<h2 class="title" style="clear: both">20.3.\u00a0Connections and Authentication</h2></div></div></div>\
<div class="toc"><dl class="toc"><dt><span class="sect2">\
<a href="runtime-config-connection.html#RUNTIME-CONFIG-CONNECTION-SETTINGS">\
20.3.1. Connection Settings</a></span></dt></dl></div><p>
  This section describes the settings that control how clients
  connect to the server and how they are authenticated.
 </p><div class="sect2" id="RUNTIME-CONFIG-CONNECTION-SETTINGS"><div class="titlepage"><div><div>\
<h3 class="title">20.3.1.\u00a0Connection Settings</h3></div></div></div><div class="variablelist">\
<dl class="variablelist"><dt id="GUC-PORT"><span class="term"><code class="varname">port</code> \
(<code class="type">integer</code>)<a id="id-1.6.6.6.2.2.2.1.3" class="indexterm"></a></span></dt><dd><p>
        The TCP port the server listens on; 5432 by default.  Note that the
        same port number is used for all IP addresses the server listens on.
        This parameter can only be set at server start.
       </p></dd><dt id="GUC-MAX-CONNECTIONS"><span class="term"><code class="varname">max_connections</code> \
(<code class="type">integer</code>)</span></dt><dd><p>
        Determines the maximum number of concurrent connections to the
        database server. The default is typically 100 connections.
       </p><div class="note"><h3 class="title">Note</h3><p>
         When running a standby server, you must set this parameter to the
         same or higher value than on the primary server.
        </p></div><pre class="programlisting">
max_connections = 200
  # restart required
</pre></dd></dl></div></div></div>"""
    + _DOCBOOK_FOOT
)

# A chapter page (brin.html): its title, a table of contents and the navigation bars, nothing else.
DOCBOOK_CHAPTER_PAGE = (
    _DOCBOOK_HEAD.format(
        title="Chapter\u00a071.\u00a0BRIN Indexes",
        up="Part\u00a0VII.\u00a0Internals",
        up_href="internals.html",
    )
    + """<div class="chapter" id="BRIN"><div class="titlepage"><div><div>\
<h2 class="title">Chapter\u00a071.\u00a0BRIN Indexes</h2></div></div></div><div class="toc">\
<p><strong>Table of Contents</strong></p><dl class="toc"><dt><span class="sect1">\
<a href="brin-intro.html">71.1. Introduction</a></span></dt><dd><dl><dt><span class="sect2">\
<a href="brin-intro.html#BRIN-OPERATION">71.1.1. Index Maintenance</a></span></dt></dl></dd>\
<dt><span class="sect1"><a href="brin-extensibility.html">71.3. Extensibility</a></span></dt></dl></div>\
<a id="id-1.10.22.2" class="indexterm"></a></div>"""
    + _DOCBOOK_FOOT
)

# A reference page (sql-altersystem.html): refsect1 sections whose <h2> is not in a title block.
DOCBOOK_REFENTRY_PAGE = (
    _DOCBOOK_HEAD.format(title="ALTER SYSTEM", up="SQL Commands", up_href="sql-commands.html")
    + """<div class="refentry" id="SQL-ALTERSYSTEM"><div class="titlepage"></div>\
<a id="id-1.9.3.34.1" class="indexterm"></a><div class="refnamediv"><h2>\
<span class="refentrytitle">ALTER SYSTEM</span></h2><p>ALTER SYSTEM — change a server configuration \
parameter</p></div><div class="refsect1" id="id-1.9.3.34.5"><h2>Description</h2><p>
   <code class="command">ALTER SYSTEM</code> writes the given parameter setting to
   the <code class="filename">postgresql.auto.conf</code> file, which is read in
   addition to <code class="filename">postgresql.conf</code>.
  </p></div></div>"""
    + _DOCBOOK_FOOT
)


def _docbook(html: str, name: str) -> ExtractedPage:
    page = extract_page(html, f"http://postgresql.askbase.test/{name}")
    assert page is not None
    return page


def test_docbook_section_headings_come_with_their_section_ids() -> None:
    page = _docbook(DOCBOOK_SECTION_PAGE, "runtime-config-connection.html")
    # The bare "20.3. Connections and Authentication" says nothing of the topic: the chapter goes first.
    assert page.title == "Server Configuration: Connections and Authentication"
    assert [(s.heading, s.anchor, s.level) for s in page.sections] == [
        ("Server Configuration: Connections and Authentication", "RUNTIME-CONFIG-CONNECTION", 2),
        ("Connection Settings", "RUNTIME-CONFIG-CONNECTION-SETTINGS", 3),
        ("port (integer)", "GUC-PORT", 4),
        ("max_connections (integer)", "GUC-MAX-CONNECTIONS", 4),
    ]
    assert page.sections[2].text == (
        "The TCP port the server listens on; 5432 by default. Note that the same port number is used "
        "for all IP addresses the server listens on. This parameter can only be set at server start."
    )


def test_docbook_navigation_and_tables_of_contents_are_dropped() -> None:
    text = _all_text(_docbook(DOCBOOK_SECTION_PAGE, "runtime-config-connection.html"))
    assert "Prev" not in text and "Next" not in text and "Home" not in text
    assert "20.3.1" not in text  # the table of contents' entry
    assert "This section describes the settings" in text


def test_a_docbook_note_label_and_code_stay_in_their_section() -> None:
    page = _docbook(DOCBOOK_SECTION_PAGE, "runtime-config-connection.html")
    max_connections = page.sections[3]
    assert "Note" not in [s.heading for s in page.sections]
    assert "When running a standby server, you must set this parameter" in max_connections.text
    assert "max_connections = 200" in max_connections.text


def test_a_docbook_page_that_is_only_a_table_of_contents_is_left_out() -> None:
    assert extract_page(DOCBOOK_CHAPTER_PAGE, "http://postgresql.askbase.test/brin.html") is None


def test_docbook_reference_page_sections() -> None:
    page = _docbook(DOCBOOK_REFENTRY_PAGE, "sql-altersystem.html")
    assert page.title == "ALTER SYSTEM"  # not a numbered section: no chapter in front
    assert [(s.heading, s.anchor) for s in page.sections][1] == ("Description", "id-1.9.3.34.5")
    assert page.sections[1].text.startswith(
        "ALTER SYSTEM writes the given parameter setting to the postgresql.auto.conf file"
    )


def test_docbook_heading_path_names_chapter_section_and_parameter() -> None:
    page = _docbook(DOCBOOK_SECTION_PAGE, "runtime-config-connection.html")
    chunks = chunk_page(page, "docs", max_chars=1200, overlap=150)
    port = next(chunk for chunk in chunks if chunk.anchor == "GUC-PORT")
    assert port.text.startswith(
        "Server Configuration: Connections and Authentication > Connection Settings > port (integer)\n\n"
    )


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("71.1.1. Index Maintenance", "Index Maintenance"),
        ("Chapter 20. Server Configuration", "Server Configuration"),
        ("Part VII. Internals", "Internals"),
        ("F.3. auto_explain", "auto_explain"),
        ("Description", "Description"),
        ("3.5 is not a label", "3.5 is not a label"),
    ],
)
def test_section_labels_are_stripped(heading: str, expected: str) -> None:
    assert strip_section_label(heading) == expected
