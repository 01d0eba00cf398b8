"""A tiny real knowledge base for the Q&A tests: a few documentation pages, indexed with the real
MiniLM embedder and published as snapshots to the GCS emulator through the real SnapshotStore."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings
from shared.gcp import ensure_bucket, storage_client
from shared.knowledge.chunker import chunk_page, page_content_hash
from shared.knowledge.embeddings import load_embedder
from shared.knowledge.extract import ExtractedPage, Section
from shared.knowledge.index import KnowledgeIndex, PageRecord
from shared.knowledge.snapshot_archive import Manifest
from shared.knowledge.snapshots import SnapshotStore

BASE = "https://docs.example.com"

PAGES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "/snapshots": (
        "Snapshots",
        [
            (
                "Publishing",
                "publishing",
                "After every crawl the scrape job publishes a snapshot of the index to Cloud Storage. "
                "The pointer file LATEST.json names the newest snapshot and is replaced by compare-and-swap.",
            ),
            (
                "Live swap",
                "live-swap",
                "The Q&A service polls the snapshot pointer every 30 seconds. When a newer snapshot appears "
                "it is restored into a new directory and swapped in without a restart.",
            ),
        ],
    ),
    "/bots/telegram": (
        "Telegram bots",
        [
            (
                "Registering",
                "registering",
                "To add a Telegram bot, create it with BotFather, copy the bot token and paste it on the "
                "Bots page. askbase encrypts the token and registers a webhook for it.",
            ),
            (
                "Rotating the token",
                "rotating",
                "To rotate a bot token, stop the bot, paste the new token and start it again.",
            ),
        ],
    ),
    "/crawling": (
        "Crawling",
        [
            (
                "Sources",
                "sources",
                "Sources are websites, GitBook spaces or blogs. A sitemap source reads sitemap.xml; a crawl "
                "source follows links; a feed source reads an RSS or Atom feed.",
            ),
            (
                "Schedule",
                "schedule",
                "The scrape job runs every 30 minutes from Cloud Scheduler. Unchanged pages are skipped "
                "using ETag and Last-Modified headers.",
            ),
        ],
    ),
}


def build_index(path: Path, settings: Settings, version: int = 1) -> KnowledgeIndex:
    """Index :data:`PAGES`; ``version`` > 1 adds a page so two snapshots differ."""
    index = KnowledgeIndex.open(path, load_embedder(settings.embedder), collection=settings.collection)
    pages = dict(PAGES)
    if version > 1:
        pages[f"/release-notes/v{version}"] = (
            f"Release notes v{version}",
            [("Changes", "changes", f"Version {version} of askbase adds release notes number {version}.")],
        )
    for route, (title, sections) in pages.items():
        url = BASE + route
        page = ExtractedPage(
            url=url,
            title=title,
            sections=[Section(heading=h, anchor=a, level=2, text=t) for h, a, t in sections],
            canonical_url=None,
        )
        chunks = chunk_page(page, "docs", settings.chunk_max_chars, settings.chunk_overlap_chars)
        record = PageRecord(
            url=url,
            source="docs",
            content_hash=page_content_hash(chunks),
            title=title,
            chunk_count=len(chunks),
            etag=None,
            last_modified=None,
            fetched_at="2026-11-23T00:00:00Z",
        )
        index.upsert_page(record, chunks)
    return index


def snapshot_store(settings: Settings) -> SnapshotStore:
    bucket = ensure_bucket(storage_client(settings.project_id), settings.bucket)
    return SnapshotStore(bucket, prefix=settings.snapshot_prefix, keep=settings.snapshot_keep)


def publish(settings: Settings, work: Path, version: int = 1) -> Manifest:
    """Build the corpus in ``work`` and publish it as the newest snapshot."""
    store = snapshot_store(settings)
    pointer, generation = store.read_pointer()
    index = build_index(work / f"build-{version}", settings, version)
    try:
        return store.publish(
            index, {}, pointer.snapshot_id if pointer else None, expected_generation=generation
        )
    finally:
        index.close()
