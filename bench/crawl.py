"""Full crawl + index of a generated loopback site, then unchanged and one-page-edited re-crawls.

    .venv/bin/python bench/crawl.py                  # 500 pages, 3 re-crawl runs
    .venv/bin/python bench/crawl.py --pages 200 --runs 5

Everything is the real job (:func:`shared.knowledge.scrape.run_scrape`): emulators for Firestore and
GCS, the fixture site server (uvicorn, keep-alive) with ETag/Last-Modified, the real MiniLM embedder,
zstd snapshot published by CAS. Pages have 3 headed sections of 5 sentences (~1 chunk per section at the
default 1200-character chunk limit). Re-crawl figures are medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class TimedEmbedder:
    """The real embedder, counting texts and the seconds spent embedding them."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.id = inner.id
        self.dimension = inner.dimension
        self.texts = 0
        self.seconds = 0.0
        self.chars = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        out = self.inner.embed(texts)
        self.seconds += time.perf_counter() - started
        self.texts += len(texts)
        self.chars += sum(len(t) for t in texts)
        return out

    def reset(self) -> None:
        self.texts, self.seconds, self.chars = 0, 0.0, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from shared.config import Settings, Source, SourceKind
    from shared.emulators import running_stack
    from shared.knowledge.crawler import CrawlConfig, Outcome, crawl_source
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.runs import RunStatus
    from shared.knowledge.scrape import run_scrape
    from tests import sites

    rows: list[tuple[str, str]] = []
    with (
        running_stack("askbase-bench") as stack,
        sites.generated_site(args.pages) as site,
        tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp,
    ):
        settings = Settings(
            project_id=stack.project,
            env="test",
            bucket=f"bench-{uuid.uuid4().hex[:8]}",
            data_dir=str(Path(tmp) / "data"),
            sources=[
                Source(name="gen", kind=SourceKind.SITEMAP, url=site.url("/sitemap.xml"), max_pages=100_000)
            ],
        )
        source = settings.sources[0]
        config = CrawlConfig.from_settings(settings)

        # Fetching alone, no index: what the network side costs.
        started = time.perf_counter()
        fetched = [r for r in crawl_source(source, config) if r.outcome is Outcome.FETCHED]
        fetch_seconds = time.perf_counter() - started
        previous = {r.url: r for r in fetched}
        started = time.perf_counter()
        unchanged = [r for r in crawl_source(source, config, previous) if r.outcome is Outcome.UNCHANGED]
        conditional_seconds = time.perf_counter() - started
        rows.append(
            (
                "crawl only: pages fetched (200)",
                f"{len(fetched)} in {fetch_seconds:.2f} s ({len(fetched) / fetch_seconds:.0f} pages/s)",
            )
        )
        rows.append(
            ("crawl only: conditional re-fetch (304)", f"{len(unchanged)} in {conditional_seconds:.2f} s")
        )

        embedder = TimedEmbedder(load_embedder())
        started = time.perf_counter()
        full = run_scrape(settings, embedder=embedder)
        full_seconds = time.perf_counter() - started
        assert full.status is RunStatus.PUBLISHED, full.error
        avg_chars = embedder.chars / max(embedder.texts, 1)
        rows.append(("full crawl + index: wall time", f"{full_seconds:.1f} s"))
        rows.append(("full: pages indexed / chunks embedded", f"{full.pages_changed} / {full.embeddings}"))
        rows.append(
            (
                "full: embedding time, throughput",
                f"{embedder.seconds:.1f} s, {embedder.texts / embedder.seconds:.1f} chunks/s "
                f"(avg {avg_chars:.0f} chars/chunk)",
            )
        )
        rows.append(("full: everything but embedding", f"{full_seconds - embedder.seconds:.1f} s"))

        times, embeds, statuses = [], [], set()
        for _ in range(args.runs):
            embedder.reset()
            started = time.perf_counter()
            again = run_scrape(settings, embedder=embedder)
            times.append(time.perf_counter() - started)
            embeds.append(embedder.texts)
            statuses.add(again.status.value)
        rows.append(
            (
                "unchanged re-crawl: wall time (median)",
                f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})",
            )
        )
        rows.append(
            ("unchanged re-crawl: embeddings / status", f"{max(embeds)} / {','.join(sorted(statuses))}")
        )

        edit_times = []
        for run in range(args.runs):
            path = f"/gen/page-{run:04d}"
            site.edit_page(path, sites.doc_html(f"Edited {run}", [("Changed", sites.prose(f"edit-{run}"))]))
            embedder.reset()
            started = time.perf_counter()
            edited = run_scrape(settings, embedder=embedder)
            edit_times.append(time.perf_counter() - started)
        rows.append(("one page edited: wall time (median)", f"{statistics.median(edit_times):.2f} s"))
        rows.append(("one page edited: embeddings / status", f"{embedder.texts} / {edited.status.value}"))

    width = max(len(k) for k, _ in rows) + 2
    print(f"\n{args.pages}-page loopback site, real MiniLM embedder, emulated Firestore + GCS")
    for key, value in rows:
        print(f"{key:<{width}}{value}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 cores; other work inflates every figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
