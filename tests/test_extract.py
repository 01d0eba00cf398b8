"""Main-text extraction: title, headings and anchors kept; navigation and boilerplate dropped."""

from __future__ import annotations

import pytest

from shared.knowledge import extract
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
