"""Screenshots of every page of the web app, for each kind of user, at 1280x900 and 390x844, light and dark.

Runs the browser UX test (``tests/test_browser_ux.py``: one stack on the emulators, one headless
Chromium) with ``ASKBASE_UX_SCREENS`` pointed at ``bench/ux/``, so the pictures are exactly the pages the
test audits; then writes ``bench/ux/index.html``, a contact sheet grouping them by page. ``bench/ux/`` is
gitignored: a made artifact, rebuilt from scratch on every run.

    .venv/bin/python bench/ux_screens.py

Exits with the test's status: the screenshots are written either way, and a failing audit prints what
failed (console errors, CSP violations, sideways scroll, unnamed controls, axe violations).
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "ux"
TEST = "tests/test_browser_ux.py::test_every_page_for_every_user_at_both_sizes_light_and_dark"


def capture(out: Path = OUT) -> int:
    """Run the audit with screenshots on; its exit status (0: every page passed)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()  # a page renamed or removed must not leave a stale picture behind
    env = dict(os.environ, ASKBASE_UX_SCREENS=str(out))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", TEST]
    return subprocess.call(command, cwd=ROOT, env=env)


def contact_sheet(out: Path = OUT) -> Path:
    """``index.html`` beside the screenshots: one row per page, its four variants side by side."""
    rows: dict[str, list[str]] = {}
    for shot in sorted(out.glob("*.png")):
        page, size, scheme = shot.stem.rsplit("-", 2)
        rows.setdefault(page, []).append(
            f'<figure><a href="{html.escape(shot.name)}"><img src="{html.escape(shot.name)}" width="240" '
            f'alt="{html.escape(page)} at {size}, {scheme}" loading="lazy"></a>'
            f"<figcaption>{size} {scheme}</figcaption></figure>"
        )
    body = "\n".join(
        f"<section><h2>{html.escape(page)}</h2><div>{''.join(figures)}</div></section>"
        for page, figures in rows.items()
    )
    count = sum(len(figures) for figures in rows.values())
    index = out / "index.html"
    index.write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>askbase pages</title>'
        "<style>div{display:flex;gap:1rem;align-items:flex-start;flex-wrap:wrap}"
        "figure{margin:0}img{border:1px solid #ccc}</style></head>"
        f"<body><h1>askbase pages ({count} screenshots)</h1>\n{body}</body></html>\n"
    )
    return index


def main() -> int:
    started = time.monotonic()
    status = capture()
    index = contact_sheet()
    shots = len(list(OUT.glob("*.png")))
    print(
        f"{shots} screenshots in {OUT.relative_to(ROOT)}/ ({time.monotonic() - started:.0f} s); "
        f"contact sheet: {index.relative_to(ROOT)}; audit {'passed' if status == 0 else 'FAILED'}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
