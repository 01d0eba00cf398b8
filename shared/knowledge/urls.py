"""Web page addresses: normalisation, "same site", and a source's include/exclude filters.

Every URL the crawler handles goes through :func:`normalize_url` first, so two spellings of one address
(``HTTP://Host:80/a#x`` and ``http://host/a``) are one URL everywhere: in the frontier, in the index and in
the previous crawl's validators.
"""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

# Extensions that are never HTML: skipped before any request is made.
_BINARY_EXTENSIONS = frozenset(
    [
        ".pdf",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".webp",
        ".svg",
        ".ico",
        ".bmp",
        ".tif",
        ".tiff",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
        ".rar",
        ".tar",
        ".mp3",
        ".mp4",
        ".m4a",
        ".wav",
        ".ogg",
        ".webm",
        ".mov",
        ".avi",
        ".mkv",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".css",
        ".js",
        ".json",
        ".exe",
        ".dmg",
        ".iso",
        ".apk",
        ".doc",
        ".docx",
        ".xls",
        ".xlsx",
        ".ppt",
        ".pptx",
        ".csv",
    ]
)


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute http(s) URL without fragment, lower-cased scheme and host, default port dropped.

    Returns None for anything that is not a web page address (mailto:, javascript:, garbage).
    """
    url = url.strip()
    if not url:
        return None
    if base is not None:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    url, _ = urldefrag(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, parts.query, ""))


def site_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what "same site" compares."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_site(url: str, root: str) -> bool:
    """True when ``url`` is on the same scheme, host and port as ``root``.

    http and https of one host count as the same site: many sites redirect one to the other.
    """
    a, b = urlsplit(url), urlsplit(root)
    if a.hostname is None or b.hostname is None:
        return False

    def _port(p: object) -> int | None:
        return None if p.port in (None, 80, 443) else p.port  # type: ignore[attr-defined]

    return a.hostname.lower() == b.hostname.lower() and _port(a) == _port(b)


def compile_patterns(patterns: list[str], what: str) -> list[re.Pattern[str]]:
    """Compile a source's include/exclude regexes, naming the bad one in the error."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"invalid {what} regex {pattern!r}: {exc}") from None
    return compiled


def url_filter_reason(url: str, include: list[re.Pattern[str]], exclude: list[re.Pattern[str]]) -> str | None:
    """Why a URL is filtered out by the source's patterns, or None when it may be crawled."""
    if include and not any(p.search(url) for p in include):
        return "not matched by include patterns"
    for pattern in exclude:
        if pattern.search(url):
            return f"matched exclude pattern {pattern.pattern!r}"
    return None


def binary_extension(url: str) -> str | None:
    """The file extension when the URL names an obviously non-HTML file (``.pdf``, ``.png``...)."""
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    if dot == -1 or "/" in path[dot:]:
        return None
    ext = path[dot:]
    return ext if ext in _BINARY_EXTENSIONS else None
