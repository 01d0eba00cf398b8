"""SIGKILL the scrape job at random points of crawl, pack, upload and pointer swap; count torn indexes.

Usage: .venv/bin/python bench/crash_publish.py [TRIALS]   (default 50)
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/ is importable

from shared.config import Settings, Source, SourceKind
from shared.emulators import running_stack
from shared.knowledge.embeddings import load_embedder
from tests import sites
from tests.crash_harness import run_trials


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    site = sites.FixtureSite()
    for path in sites.DOC_PAGES:
        site.set_page(path, sites.page_for(path))
    with running_stack("askbase-bench") as stack, site, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            project_id=stack.project,
            env="test",
            bucket=f"bench-{uuid.uuid4().hex[:8]}",
            data_dir=str(Path(tmp) / "data"),
            sources=[Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/sitemap.xml"))],
        )
        started = time.monotonic()
        report = run_trials(settings, site, load_embedder(), Path(tmp) / "scratch", trials=trials)
        elapsed = time.monotonic() - started
    print(f"{'trials':<28}{report.trials}")
    print(f"{'killed mid-run':<28}{report.killed}")
    print(f"{'finished before the kill':<28}{report.finished}")
    print(f"{'killed after pointer swap':<28}{report.published_after_kill}")
    print(f"{'torn indexes served':<28}{report.torn}")
    print(f"{'wall time':<28}{elapsed:.0f} s")
    print("last stage reached before the kill:")
    for stage, count in report.stages_at_kill.most_common():
        print(f"  {stage:<26}{count}")
    for failure in report.failures:
        print("FAIL", failure)
    sys.exit(1 if report.torn else 0)


if __name__ == "__main__":
    main()
