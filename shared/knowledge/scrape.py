"""The scrape job: crawl every source, update the index incrementally, publish a snapshot.

One run, start to end (:func:`run_scrape`):

1. take the Firestore lease (``leases/scrape``); if another run holds it, return a ``skipped`` run;
2. restore the newest snapshot into a private work directory; start an empty index only when nothing
   was ever published or every published snapshot is broken (checksum, archive, open-check). When a
   snapshot cannot be *read* (a Cloud Storage 5xx, a network or disk error) the run fails instead:
   rebuilding then would drop every page whose crawl happens to fail, and the pointer stays untouched;
3. crawl each source with conditional GETs built from the stored page records; upsert changed pages,
   touch unchanged ones, remove vanished ones (only when that source's crawl is complete: see
   :mod:`~shared.knowledge.crawler`, and :data:`MAX_REMOVED_SHARE`). A source left incomplete keeps its
   pages and is named in the run's record. Crawling stops at the run's deadline
   (:func:`run_budget_seconds`), and what was indexed by then is published;
   Fetching, extracting, embedding and writing overlap: the crawl runs on its own event loop, this
   thread extracts and chunks, and :class:`~shared.knowledge.indexing.IndexingPipeline` embeds and
   writes in two threads behind it;
4. if anything changed, publish by compare-and-swap; on :class:`PublishConflict` start over once from
   the new base (cheap: conditional GETs and reused vectors), then stop cleanly. A conflict with a
   *rollback* (``askbase snapshots rollback`` while this run crawled: the pointer carries a
   ``rolled_back_at`` mark it did not have when the run started) ends the run as ``conflict`` at once:
   starting over from the rolled-back snapshot would publish the content the rollback removed;
5. record the run in ``scrape_runs`` and release the lease.

A re-crawl where nothing changed embeds nothing and publishes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.config import Settings, Source
from shared.knowledge.crawler import CrawlConfig, Outcome, crawl_source
from shared.knowledge.indexing import IndexingPipeline, PrecomputedVectors
from shared.knowledge.leases import Clock, Lease, LeaseHeld, utc_now
from shared.knowledge.run_progress import ProgressRecorder
from shared.knowledge.runs import RunStatus, ScrapeRun, list_runs, new_run, save_run
from shared.knowledge.snapshots import Pointer, PublishConflict, SnapshotStore, SnapshotUnavailable

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# How long the consumer waits for the crawl's next result before it looks at the run's clock again.
RESULT_WAIT_SECONDS = 1.0
MAX_ATTEMPTS = 2  # the first try, plus one start-over after losing the publish race
# A crawl that would take away more than this share of a source's indexed pages at once removes none
# of them and leaves the source incomplete. Docs sites lose a few pages per release, not most of them;
# a run finding most pages gone is far more likely seeing the site broken (a CMS answering 404 for
# every page, a login wall, a sitemap emptied by a deploy) than a site that shrank, and publishing it
# would empty the answers for that source until the next run. A real mass removal is done on purpose:
# renaming the source drops its old pages (see drop_unconfigured).
#
# The valve is bounded, so a real change is never held back for ever:
# - pages cut by the source's max_pages are not "lost": they are removed as the budget says (the
#   operator chose it), and do not count toward the share;
# - a source with fewer than VALVE_MIN_PAGES pages is not held back: one or two removals are already
#   most of a three-page source, and a small site broken as a whole is still caught by the crawler's own
#   checks (its start page, or every page its sitemap or feed lists, not served leaves it incomplete;
#   so does every fetch failing);
# - the same removal (the same set of lost URLs) is applied once it was held back in VALVE_RUNS
#   consecutive runs *and* VALVE_HOLD_HOURS have passed since it was first held back: a broken deploy
#   is usually fixed within hours, a restructure stays. Each run records what it held back in its
#   scrape_runs document (sources[name]["held_back"]: the removal's fingerprint, how many consecutive
#   runs saw it, and since when, ISO UTC); the next run reads the newest run that crawled the source
#   (held_back_of). A run that removes, or holds back another removal, starts the count over.
#
# The valve also divides by the pages the source keeps under its budget (indexed pages minus those
# max_pages cut): lowering max_pages during an outage would otherwise shrink the lost share.
#
# Independently of the source's size, a crawl where more than HOLLOW_SHARE of the pages the site served
# this run have no main text or are copies of another page (a JS app shell, a maintenance page, an SPA
# fallback answering 200 for every URL) is incomplete: those pages were served, but not as themselves.
MAX_REMOVED_SHARE = 0.5
VALVE_MIN_PAGES = 10
VALVE_RUNS = 3
# Counted in time as well as runs: the schedule may run the scrape every 30 minutes, and three runs are
# then one hour, shorter than many outages (a broken deploy over a weekend night, a CMS being restored).
# A day gives someone time to notice; a real restructure waits a day longer to leave the index.
VALVE_HOLD_HOURS = 24
HOLLOW_SHARE = 0.5


class ScrapeError(RuntimeError):
    """The run cannot start (bad configuration); the message says what to fix."""


# Gen2 HTTP functions run at most this long; infra gives the scrape function min(lease, this) as its
# timeout (infra/config.py, scrape_timeout_seconds), so the run's own budget is derived the same way.
FUNCTION_TIMEOUT_CAP_SECONDS = 3600
# The share of that timeout (or of the Scheduler's attempt deadline, if shorter) spent crawling. A
# function killed at its timeout leaves its run record "running" forever and publishes nothing; past
# this point the run stops taking crawl results, lets the pages already handed to the indexing pipeline
# finish (the index holds only whole pages), and publishes them with the sources marked incomplete
# (nothing removed). The rest of the time is for the pipeline's tail, the snapshot upload and the
# record; the next run goes on with conditional GETs.
DEADLINE_SHARE = 0.75


# Cloud Scheduler waits at most this long for the function's answer (infra/program.py,
# attempt_deadline="1800s", the Scheduler's maximum for HTTP targets). Past it Scheduler records the
# attempt as failed (DEADLINE_EXCEEDED) and retries by its retry policy, while the function goes on: the
# retry then finds the lease held (a "skipped" run) and the job's history shows a failure for a run that
# did finish. So the run's budget is also taken from this, the shorter of the two limits in practice.
SCHEDULER_ATTEMPT_DEADLINE_SECONDS = 1800


def run_budget_seconds(settings: Settings) -> float:
    """How long a run may crawl before it stops to publish (see :data:`DEADLINE_SHARE`): a share of the
    shortest of the lease, the function's timeout cap and the Scheduler's attempt deadline."""
    base = min(
        settings.scrape_lease_seconds, FUNCTION_TIMEOUT_CAP_SECONDS, SCHEDULER_ATTEMPT_DEADLINE_SECONDS
    )
    return base * DEADLINE_SHARE


def _noop(stage: str, done: int, total: int) -> None:
    return None


class _Attempt:
    """One pass over every source against one base snapshot. Owns the opened index."""

    def __init__(
        self,
        settings: Settings,
        run: ScrapeRun,
        embedder: Any,
        progress: Progress,
        crawl_config: CrawlConfig,
        deadline: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
        held_back: Mapping[str, Any] | None = None,
        now: Clock = utc_now,
    ) -> None:
        self.settings = settings
        #: The run's wall clock (UTC): when a held-back removal began (see :data:`VALVE_HOLD_HOURS`).
        self.now = now
        #: Source name -> the removal the previous run held back for it (see :data:`VALVE_RUNS`).
        self.held_back = dict(held_back or {})
        #: On ``clock`` (see :func:`run_deadline`): past it no more result is taken from a crawl.
        self.deadline = deadline
        self.clock = clock
        self.out_of_time = False
        self.run = run
        self.embedder = embedder
        self.progress = progress
        self.crawl_config = crawl_config
        self.changed = False
        #: The pointer the base snapshot was chosen from (set by :meth:`open_index`).
        self.base_pointer: Pointer | None = None
        # The index is opened with this: the pipeline's embedding thread fills it ahead of the writes.
        self.vectors = PrecomputedVectors(embedder)
        # Duplicate content. A page is a copy only of a page seen alive in *this* run (fetched, or a
        # 304): the index's owners of a content hash may be the very pages this run finds moved (a
        # new host, a renamed source, a 301), and skipping their new URLs as copies while the old ones
        # are removed empties the source. A page whose content an indexed page not yet seen holds is
        # deferred, and indexed after the removals if no page holding that content is left.
        self._alive_owner: dict[str, str] = {}  # content hash -> the URL seen alive with it this run
        self._indexed_owners: dict[str, set[str]] = {}  # content hash -> URLs holding it at the start
        self._fetched_hashes: set[str] = set()  # content this run found served, indexed or deferred
        self._deferred: list[tuple[Source, Any, list[Any]]] = []
        # Gone pages whose content a deferred page holds (the page moved): removed only once the deferred
        # pages are indexed, so a run stopped at its deadline in between keeps that content under the old
        # URL. URL -> the source it is removed from (None: a source no longer configured).
        self._pending_removals: dict[str, str | None] = {}
        # A page two sources reach belongs to the first configured one that gets it in a run; the others
        # report it skipped. Letting each take it in turn rewrote it, and published, on every run.
        self._claimed: dict[str, str] = {}  # URL -> source name

    def open_index(self, store: SnapshotStore, work: Path) -> tuple[Any, str | None, int]:
        """Restore the newest snapshot (or start empty); returns (index, parent id, base generation).

        Raises :class:`SnapshotUnavailable` when a published snapshot cannot be read right now: the run
        then fails and publishes nothing (see the module docstring).
        """
        from shared.knowledge.index import EmbedderMismatch, KnowledgeIndex

        self.progress("restore", 0, 1)
        self.base_pointer, generation = store.read_pointer()
        try:
            restored = store.restore(work / "restore", strict=True)
        except SnapshotUnavailable as exc:
            log.error(
                "scrape run %s: cannot restore the published index (%s); failing the run instead of "
                "rebuilding from scratch, the published snapshot stays as it is",
                self.run.id,
                exc,
                extra={"run_id": self.run.id},
            )
            raise
        self.progress("restore", 1, 1)
        if restored is not None:
            self.base_pointer = restored.pointer  # the store read it again
            try:
                index = KnowledgeIndex.open(restored.path, self.vectors, self.settings.collection)
                log.info("restored snapshot %s (%d chunks)", restored.snapshot_id, index.chunk_count())
                return index, restored.snapshot_id, restored.generation
            except EmbedderMismatch as exc:
                # A new embedder makes every stored vector useless: rebuild from scratch.
                log.warning("%s; rebuilding the whole index", exc)
                generation = restored.generation
        elif generation:
            log.warning("every published snapshot is broken: rebuilding the index from scratch")
        else:
            log.info("no snapshot to restore: building the index from scratch")
        path = work / f"fresh-{uuid.uuid4().hex[:8]}"
        return KnowledgeIndex.open(path, self.vectors, self.settings.collection), None, generation

    def scrape_all(self, index: Any) -> None:
        """Crawl every configured source into ``index``, drop the pages of unconfigured ones, then index
        the deferred pages whose content no page left in the index holds."""
        for url, record in index.pages().items():
            self._indexed_owners.setdefault(record.content_hash, set()).add(url)
        for source in self.settings.sources:
            if self.out_of_time or self._past_deadline():
                self.out_of_time = True
                self._not_crawled(source)
            else:
                self.scrape_source(index, source)
        self.drop_unconfigured(index)
        self._index_deferred(index)

    def _past_deadline(self) -> bool:
        return self.clock() >= self.deadline

    def scrape_source(self, index: Any, source: Source) -> None:
        """Crawl one source and apply what it found to the index (see the module docstring)."""
        pages = index.pages()
        previous = {url: rec for url, rec in pages.items() if rec.source == source.name}
        alive: set[str] = set()  # pages confirmed present (or only transiently failing): never removed
        stats = {"fetched": 0, "unchanged": 0, "changed": 0, "removed": 0, "failed": 0, "skipped": 0}
        # Pages served this run with no main text, or as a copy of another page (see HOLLOW_SHARE).
        stats["hollow"] = 0
        # Where this source's time went (kept in the run, printed by bench/crawl.py). This thread:
        # waiting for the crawl's next result, extracting, chunking, waiting for room in the pipeline,
        # then for its tail. The pipeline's threads: inside the model, inside the index writes. The
        # model's idle time is the source's wall time minus its embedding time.
        timings = {
            "crawl_wait_seconds": 0.0,
            "extract_seconds": 0.0,
            "chunk_seconds": 0.0,
            "submit_wait_seconds": 0.0,
            "index_wait_seconds": 0.0,
            "embed_seconds": 0.0,
            "write_seconds": 0.0,
            "model_idle_seconds": 0.0,
        }
        source_started = time.perf_counter()
        session = crawl_source(source, self.crawl_config, previous, stop=self._past_deadline)
        try:
            with IndexingPipeline(index, self.vectors) as pipeline:
                self._consume(source, session, previous, pages, alive, stats, pipeline, timings)
                stage = f"index {source.name}"
                started = time.perf_counter()
                # The crawl is over: what is left is the pipeline's tail (its last model call and writes).
                self.run.embeddings += pipeline.finish(lambda done, total: self.progress(stage, done, total))
                timings["index_wait_seconds"] = time.perf_counter() - started
                timings["embed_seconds"] = pipeline.times.embed_seconds
                timings["write_seconds"] = pipeline.times.write_seconds
                timings["model_idle_seconds"] = max(
                    0.0, time.perf_counter() - source_started - pipeline.times.embed_seconds
                )
        finally:
            session.close()  # if indexing failed mid-way, let the crawl thread stop
        self._finish_source(index, source, session.summary, previous, alive, stats, timings)

    def _consume(
        self,
        source: Source,
        session: Any,
        previous: dict[str, Any],
        indexed: dict[str, Any],
        alive: set[str],
        stats: dict[str, int],
        pipeline: IndexingPipeline,
        timings: dict[str, float],
    ) -> None:
        """Decide what each crawl result means for the index; hand page writes to ``pipeline``.

        ``previous``: this source's pages in the index; ``indexed``: every page the index holds (any
        source), whose stored vectors it may reuse."""
        from shared.knowledge.chunker import chunk_page, page_content_hash
        from shared.knowledge.extract import extract_page
        from shared.knowledge.index import PageRecord

        run = self.run
        stage = f"crawl {source.name}"
        index_stage = f"index {source.name}"
        index = pipeline.index
        done = 0
        # A bounded wait: a crawl may emit nothing for minutes (a large sitemap, slow servers), and the
        # deadline must end it all the same.
        results = session.results(RESULT_WAIT_SECONDS)
        while True:
            if self._past_deadline():
                self.out_of_time = True
                log.warning("source %s: the run's deadline is reached; stopping the crawl", source.name)
                break
            waited = time.perf_counter()
            try:
                result = next(results)
            except StopIteration:
                break
            finally:
                timings["crawl_wait_seconds"] += time.perf_counter() - waited
            if result is None:
                continue  # nothing yet: look at the clock again
            done += 1
            self.progress(stage, done, max(session.summary.discovered, done))
            self.progress(index_stage, *pipeline.progress)
            if result.outcome in (Outcome.FETCHED, Outcome.UNCHANGED):
                claimer = self._claimed.setdefault(result.url, source.name)
                if claimer != source.name:
                    stats["skipped"] += 1
                    log.debug("%s: belongs to source %s in this run", result.url, claimer)
                    continue
            if result.outcome is Outcome.UNCHANGED:
                alive.add(result.url)
                stats["unchanged"] += 1
                before = previous.get(result.url)
                if before is not None:
                    self._alive_owner.setdefault(before.content_hash, result.url)
                # Every index write rewrites the page sidecar, so 500 touches cost O(n²): write only
                # when the validators moved (fetched_at then stays "when the content was downloaded").
                if before is not None and _validators(before) != (result.etag, result.last_modified):
                    index.touch_page(result.url, result.etag, result.last_modified)
                continue
            if result.outcome is Outcome.FAILED:
                alive.add(result.requested_url)
                stats["failed"] += 1
                log.warning("%s: %s", result.requested_url, result.reason)
                continue
            if result.outcome is not Outcome.FETCHED:
                stats["skipped"] += 1
                log.debug("%s %s: %s", result.outcome, result.requested_url, result.reason)
                continue
            stats["fetched"] += 1
            started = time.perf_counter()
            page = extract_page(result.html or "", result.url)
            extracted = time.perf_counter()
            chunks = (
                chunk_page(
                    page, source.name, self.settings.chunk_max_chars, self.settings.chunk_overlap_chars
                )
                if page
                else []
            )
            timings["extract_seconds"] += extracted - started
            timings["chunk_seconds"] += time.perf_counter() - extracted
            if page is None or not chunks:
                stats["skipped"] += 1
                stats["hollow"] += 1
                log.info("%s: no main text; not indexed", result.url)
                continue
            digest = page_content_hash(chunks)
            self._fetched_hashes.add(digest)
            owner = self._alive_owner.get(digest)
            if owner is not None and owner != result.url:
                stats["skipped"] += 1
                stats["hollow"] += 1
                log.info("%s: same content as %s; indexed once", result.url, owner)
                continue
            holders = self._indexed_owners.get(digest, set())
            # Whatever source it is stored under: a page another source indexed is no news to this one.
            before = indexed.get(result.url)
            record = PageRecord(
                url=result.url,
                source=source.name,
                content_hash=digest,
                title=page.title,
                chunk_count=len(chunks),
                etag=result.etag,
                last_modified=result.last_modified,
                fetched_at=datetime.now(UTC).isoformat(),
            )
            if owner is None and holders and result.url not in holders:
                self._deferred.append((source, record, chunks))
                log.debug("%s: same content as %s, not seen yet; deferred", result.url, sorted(holders)[0])
                continue
            self._alive_owner[digest] = result.url
            alive.add(result.url)
            if (
                before is not None
                and before.content_hash == digest
                and _validators(before) == (result.etag, result.last_modified)
                and before.source == source.name
            ):
                stats["unchanged"] += 1  # a server without conditional GET: same bytes, nothing to write
                continue
            # A URL the index has never held is embedded ahead, but for the chunks whose text the index
            # stores under another URL (IndexingPipeline._embed_ahead).
            started = time.perf_counter()
            pipeline.submit(record, chunks, embed_ahead=result.url not in indexed)
            timings["submit_wait_seconds"] += time.perf_counter() - started
            if before is not None and before.content_hash == digest and before.source == source.name:
                stats["unchanged"] += 1
            else:
                stats["changed"] += 1
                run.chunks_added += len(chunks)
                run.chunks_removed += before.chunk_count if before else 0
                self.changed = True

    def _finish_source(
        self,
        index: Any,
        source: Source,
        summary: Any,
        previous: dict[str, Any],
        alive: set[str],
        stats: dict[str, int],
        timings: dict[str, float],
    ) -> None:
        run = self.run
        complete, error = summary.complete, summary.error
        if self.out_of_time:
            complete, error = False, "stopped at the run's deadline, before the crawl was over"
        # Not alive: not seen, gone, or seen but no longer indexable (no main text any more, a copy of a
        # page alive in this run, deferred as a copy). Only a URL another source claimed in this run is
        # not this source's to remove: its own claims are exactly the pages it saw.
        taken = {url for url, claimer in self._claimed.items() if claimer != source.name}
        gone = sorted(set(previous) - alive - taken)
        # A page whose content this run found at another URL moved, one max_pages cut is removed by the
        # operator's budget: neither is lost (see MAX_REMOVED_SHARE).
        lost = [
            url
            for url in gone
            if url not in summary.cut and previous[url].content_hash not in self._fetched_hashes
        ]
        hollow = stats.pop("hollow")
        served = stats["fetched"] + stats["unchanged"]
        if complete and lost and hollow > HOLLOW_SHARE * served:
            complete = False
            error = (
                f"{hollow} of the {served} pages served in this run have no main text or are copies of "
                "another page (an app shell or maintenance page looks like this); kept its pages"
            )
        # The pages the source keeps under its budget: those max_pages cut are removed, not lost.
        kept = len(previous) - len(summary.cut.intersection(previous))
        held_back: dict[str, Any] | None = None
        if complete and len(previous) >= VALVE_MIN_PAGES and len(lost) > MAX_REMOVED_SHARE * kept:
            removal = _removal_fingerprint(lost)
            prior = self.held_back.get(source.name) or {}
            now = self.now()
            if prior.get("removal") == removal:
                runs = int(prior.get("runs", 0)) + 1
                since = _parse_since(prior.get("since")) or now  # an older record: the day starts now
            else:
                runs, since = 1, now
            due = since + timedelta(hours=VALVE_HOLD_HOURS)
            if runs < VALVE_RUNS or now < due:
                complete = False
                held_back = {"removal": removal, "runs": runs, "since": since.isoformat()}
                error = (
                    f"the crawl would remove {len(lost)} of its {kept} pages (more than "
                    f"{MAX_REMOVED_SHARE:.0%} at once); kept them, as a broken site looks the same "
                    f"(run {runs} of {VALVE_RUNS}, held back since {since:%Y-%m-%d %H:%M} UTC: the same "
                    f"removal seen in {VALVE_RUNS} consecutive runs is applied, not before "
                    f"{due:%Y-%m-%d %H:%M} UTC)"
                )
            else:
                log.warning(
                    "source %s: the same removal of %d of its %d pages seen in %d consecutive runs since "
                    "%s; applied",
                    source.name,
                    len(lost),
                    kept,
                    runs,
                    since.isoformat(),
                )
        if complete:
            deferred = self._deferred_hashes()
            for url in gone:
                if previous[url].content_hash in deferred:
                    self._pending_removals[url] = source.name  # moved: removed after its new URL is in
                    continue
                run.chunks_removed += index.remove_page(url)
                stats["removed"] += 1
                self.changed = True
                log.info("%s: gone from %s; removed", url, source.name)
        else:
            log.warning("source %s: crawl incomplete (%s); keeping its pages", source.name, error)
        run.pages_fetched += stats["fetched"]
        run.pages_unchanged += stats["unchanged"]
        run.pages_changed += stats["changed"]
        run.pages_removed += stats["removed"]
        run.pages_failed += stats["failed"]
        run.pages_skipped += stats["skipped"]
        run.sources[source.name] = {
            **stats,
            "complete": complete,
            "error": error,
            "over_max_pages": summary.over_max_pages,
            "held_back": held_back,
            "seconds": round(summary.seconds, 3),
            **{name: round(value, 3) for name, value in timings.items()},
        }

    def _not_crawled(self, source: Source) -> None:
        """A source the run had no time left for: its pages stay as they were."""
        self.run.sources[source.name] = {
            **dict.fromkeys(("fetched", "unchanged", "changed", "removed", "failed", "skipped"), 0),
            "complete": False,
            "error": "not crawled: the run's deadline was reached first",
            "over_max_pages": 0,
            "seconds": 0.0,
        }
        log.warning("source %s: not crawled, the run's deadline was reached; keeping its pages", source.name)

    def drop_unconfigured(self, index: Any) -> None:
        """Pages of a source removed from the configuration leave the index."""
        configured = {s.name for s in self.settings.sources}
        deferred = self._deferred_hashes()
        for url, record in index.pages().items():
            if record.source not in configured:
                if record.content_hash in deferred:
                    self._pending_removals[url] = None  # moved to a configured source: see _index_deferred
                    continue
                self.run.chunks_removed += index.remove_page(url)
                self.run.pages_removed += 1
                self.changed = True

    def _deferred_hashes(self) -> set[str]:
        return {record.content_hash for _, record, _ in self._deferred}

    def _index_deferred(self, index: Any) -> None:
        """Index each deferred page whose content no page kept in the index holds (its holder is gone:
        the page moved), then remove the gone holders; the others are copies after all.

        Past the run's deadline the rest is left as it is: the deferred pages not indexed, their gone
        holders kept (the content stays findable under its old URL), and the sources involved marked
        incomplete. The next run finds the new URLs again."""
        if not self._deferred:
            return
        # A pending URL another source fetched later in this run is that source's page now: it stays.
        self._pending_removals = {
            url: name for url, name in self._pending_removals.items() if self._claimed.get(url, name) == name
        }
        pages = index.pages()
        held = {record.content_hash for url, record in pages.items() if url not in self._pending_removals}
        run = self.run
        stopped: list[tuple[Source, Any, list[Any]]] = []
        with IndexingPipeline(index, self.vectors) as pipeline:
            for position, (source, record, chunks) in enumerate(self._deferred):
                if self._past_deadline():
                    stopped = self._deferred[position:]
                    break
                stats = run.sources[source.name]
                if record.content_hash in held:
                    stats["skipped"] += 1
                    run.pages_skipped += 1
                    log.info("%s: same content as a page kept in the index; indexed once", record.url)
                    continue
                held.add(record.content_hash)
                before = pages.get(record.url)
                # A moved page's text is still stored under its old URL (removed below): the pipeline
                # embeds ahead none of it, and the index reuses those vectors.
                pipeline.submit(record, chunks, embed_ahead=before is None)
                stats["changed"] += 1
                run.pages_changed += 1
                run.chunks_added += len(chunks)
                run.chunks_removed += before.chunk_count if before else 0
                self.changed = True
            run.embeddings += pipeline.finish()
        if stopped:
            self._stop_deferred(stopped)
            return
        for url, name in self._pending_removals.items():
            run.chunks_removed += index.remove_page(url)
            run.pages_removed += 1
            self.changed = True
            if name is not None:
                run.sources[name]["removed"] += 1
            log.info("%s: moved (its content is indexed under its new URL); removed", url)

    def _stop_deferred(self, stopped: list[tuple[Source, Any, list[Any]]]) -> None:
        """The deadline came while deferred pages were indexed: keep every pending removal (the content
        of a page not indexed yet may be only there) and mark the sources involved incomplete."""
        names = {source.name for source, _, _ in stopped}
        names.update(name for name in self._pending_removals.values() if name is not None)
        for name in names:
            stats = self.run.sources[name]
            if stats["complete"]:
                # Its crawl was complete: its ordinary removals are already applied.
                stats["removals_applied"] = True
                error = (
                    "stopped at the run's deadline while indexing pages moved from other URLs; moved pages "
                    "kept at their old URLs; other removals applied"
                )
            else:
                error = "stopped at the run's deadline while indexing pages moved from other URLs"
            stats["complete"] = False
            stats["error"] = f"{stats['error']}; {error}" if stats["error"] else error
        log.warning(
            "the run's deadline is reached: %d moved pages not indexed, %d old URLs kept",
            len(stopped),
            len(self._pending_removals),
        )


def _open_check(embedder: Any, collection: str) -> Callable[[Path, Any], None]:
    """A restore check: the copy opens with our embedder and holds the chunks its manifest promises.

    A copy that fails it makes the store fall back to the previous snapshot (or to a full rebuild,
    which is also what a changed embedder needs).
    """

    def check(path: Path, manifest: Any) -> None:
        from shared.knowledge.index import KnowledgeIndex
        from shared.knowledge.snapshot_archive import SnapshotError

        index = KnowledgeIndex.open(path, embedder, collection)
        try:
            if index.chunk_count() != manifest.chunk_count:
                raise SnapshotError(
                    f"restored index holds {index.chunk_count()} chunks, manifest says {manifest.chunk_count}"
                )
        finally:
            index.close()

    return check


def _parse_since(value: Any) -> datetime | None:
    """A held-back removal's ``since`` (ISO UTC), or None when the record has none or an odd one."""
    if not isinstance(value, str):
        return None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        return None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def _removal_fingerprint(urls: list[str]) -> str:
    """Names a set of lost URLs in a run record (the URLs themselves could outgrow a Firestore document)."""
    return hashlib.sha256("\n".join(sorted(urls)).encode()).hexdigest()[:32]


def held_back_of(runs: Iterable[ScrapeRun]) -> dict[str, Any]:
    """Source name -> what the newest run that crawled it held back (None: nothing), from ``runs``
    newest first. Runs still going (this one) and skipped runs crawled nothing."""
    found: dict[str, Any] = {}
    for run in runs:
        if run.status in (RunStatus.RUNNING, RunStatus.SKIPPED):
            continue
        for name, stats in run.sources.items():
            # A source the run had no time for ("not crawled") neither agrees nor disagrees: look further.
            if isinstance(stats, dict) and "held_back" in stats:
                found.setdefault(name, stats["held_back"])
    return found


def _read_held_back(fs: Any) -> dict[str, Any]:
    """:func:`held_back_of` the recent runs; nothing when they cannot be read (the valve then holds)."""
    try:
        return held_back_of(list_runs(fs, limit=VALVE_HISTORY))
    except Exception:
        log.exception("could not read the recent scrape runs; the removal valve starts its count over")
        return {}


# How many recent runs are searched for a source's last valve state (sources crawled in every run are
# found in the newest one; a run that failed before crawling has none).
VALVE_HISTORY = 10


def _validators(record: Any) -> tuple[str | None, str | None]:
    return record.etag, record.last_modified


def _reset_counts(run: ScrapeRun) -> None:
    for name in (
        "pages_fetched",
        "pages_unchanged",
        "pages_changed",
        "pages_removed",
        "pages_failed",
        "pages_skipped",
        "chunks_added",
        "chunks_removed",
    ):
        setattr(run, name, 0)
    run.sources = {}
    run.incomplete_sources = []


def run_scrape(
    settings: Settings,
    progress: Progress | None = None,
    *,
    embedder: Any = None,
    firestore: Any = None,
    bucket: Any = None,
    crawl_config: CrawlConfig | None = None,
    clock: Clock = utc_now,
    time_budget_seconds: float | None = None,
) -> ScrapeRun:
    """Run one scrape (see the module docstring) and return its record.

    ``progress(stage, done, total)`` is called as work advances. The keyword arguments replace the
    defaults built from ``settings`` (tests pass a counting embedder, CLIs a shared client). Errors are
    recorded in the returned run (status ``failed``), not raised; a bad configuration raises
    :class:`ScrapeError` before anything starts. ``time_budget_seconds`` (default
    :func:`run_budget_seconds`): crawling stops that long after the call, and what was indexed is
    published with the sources not finished marked incomplete.
    """
    budget = run_budget_seconds(settings) if time_budget_seconds is None else time_budget_seconds
    deadline = time.monotonic() + budget
    if not settings.sources:
        raise ScrapeError("no sources configured: set ASKBASE_SOURCES to a JSON list of sources")
    progress = progress or _noop
    crawl_config = crawl_config or CrawlConfig.from_settings(settings)
    from shared import gcp

    bad = []
    for source in settings.sources:  # fail fast on a bad start URL or regex, before taking the lease
        try:
            crawl_source(source, crawl_config).close()
        except ValueError as exc:
            bad.append(str(exc))
    fs = firestore if firestore is not None else gcp.firestore_client(settings.project_id)
    if bad:
        _record_refusal(fs, "; ".join(bad) + " (fix ASKBASE_SOURCES)")
    lease = Lease(fs, "scrape", settings.scrape_lease_seconds, clock=clock)
    run = new_run(lease.holder)
    try:
        lease.acquire()
    except LeaseHeld as exc:
        run.status = RunStatus.SKIPPED
        run.error = f"skipped: another run holds the lease ({exc})"
        run.ended_at = datetime.now(UTC)
        log.info("%s", run.error)
        try:
            save_run(fs, run)  # the status page shows that a run was due but overlapped
        except Exception:
            log.exception("could not record skipped scrape run %s", run.id)
        return run
    work = Path(settings.data_dir) / "scrape" / run.id
    try:
        save_run(fs, run)
        # Counts also go to the run's document now and then: `askbase dev` shows a long crawl moving.
        progress = ProgressRecorder(fs, run.id, progress)
        lease.start_renewing()
        if bucket is None:
            bucket = gcp.ensure_bucket(gcp.storage_client(settings.project_id), settings.bucket)
        if embedder is None:
            from shared.knowledge.embeddings import load_embedder

            embedder = load_embedder(settings.embedder)
        store = SnapshotStore(
            bucket,
            settings.snapshot_prefix,
            settings.snapshot_keep,
            settings.snapshot_compression,
            verify=_open_check(embedder, settings.collection),
            work_dir=work,
        )
        held_back = _read_held_back(fs)
        _run_attempts(
            settings, run, store, embedder, progress, crawl_config, lease, work, deadline, held_back, clock
        )
        _note_incomplete(run)
    except Exception as exc:
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        log.exception("scrape run %s failed", run.id, extra={"run_id": run.id})
    finally:
        run.ended_at = datetime.now(UTC)
        try:
            save_run(fs, run)
        except Exception:
            log.exception("could not record scrape run %s", run.id)
        try:
            lease.release()
        except Exception:  # it expires on its own
            log.exception("could not release the scrape lease; it expires at %s", lease.expires_at)
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "scrape run %s: %s (%d changed, %d unchanged, %d removed, %d failed, %d embeddings)%s",
        run.id,
        run.status.value,
        run.pages_changed,
        run.pages_unchanged,
        run.pages_removed,
        run.pages_failed,
        run.embeddings,
        f", snapshot {run.snapshot_id}" if run.snapshot_id else "",
        extra={"run_id": run.id},
    )
    return run


def _note_incomplete(run: ScrapeRun) -> None:
    """Name the incomplete sources in the run's record: its status says what happened to the index (a
    source that could not be read changes nothing there), ``error`` that the knowledge may be stale."""
    run.incomplete_sources = sorted(name for name, stats in run.sources.items() if not stats["complete"])
    if not run.incomplete_sources:
        return
    kept = [name for name in run.incomplete_sources if not run.sources[name].get("removals_applied")]
    partly = [name for name in run.incomplete_sources if run.sources[name].get("removals_applied")]
    notes = []
    if kept:
        detail = "; ".join(f"{name}: {run.sources[name]['error']}" for name in kept)
        notes.append(f"incomplete sources, their pages kept as they were: {detail}")
    if partly:
        detail = "; ".join(f"{name}: {run.sources[name]['error']}" for name in partly)
        notes.append(f"incomplete sources, some removals applied: {detail}")
    note = "; ".join(notes)
    run.error = f"{run.error}; {note}" if run.error else note
    log.warning("scrape run %s: %s", run.id, note, extra={"run_id": run.id})


def _record_refusal(fs: Any, message: str) -> None:
    """Record a run the configuration stopped before it started, then raise :class:`ScrapeError`: the
    status page shows why no crawl happens, not a run that never was."""
    run = new_run()
    run.status = RunStatus.FAILED
    run.error = message
    run.ended_at = run.started_at
    log.error("scrape run %s refused: %s", run.id, message, extra={"run_id": run.id})
    try:
        save_run(fs, run)
    except Exception:
        log.exception("could not record refused scrape run %s", run.id)
    raise ScrapeError(message)


def _run_attempts(
    settings: Settings,
    run: ScrapeRun,
    store: SnapshotStore,
    embedder: Any,
    progress: Progress,
    crawl_config: CrawlConfig,
    lease: Lease,
    work: Path,
    deadline: float = math.inf,
    held_back: Mapping[str, Any] | None = None,
    now: Clock = utc_now,
) -> None:
    started_mark = ""  # the rollback mark of the pointer the first attempt started from
    for attempt in range(1, MAX_ATTEMPTS + 1):
        run.attempts = attempt
        _reset_counts(run)
        job = _Attempt(
            settings, run, embedder, progress, crawl_config, deadline, held_back=held_back, now=now
        )
        index, parent_id, generation = job.open_index(store, work / f"attempt-{attempt}")
        try:
            run.parent_snapshot_id = parent_id
            if attempt == 1:
                started_mark = _rollback_mark(job.base_pointer)
            elif (rollback := _new_rollback(job.base_pointer, started_mark)) is not None:
                # Rolled back between the lost race and this restore: same as a rollback found then.
                _stop_for_rollback(run, rollback)
                return
            job.scrape_all(index)
            if not job.changed:
                run.status = RunStatus.UNCHANGED
                run.snapshot_id = parent_id
                return
            lease.check()
            progress("publish", 0, 1)
            manifest = store.publish(
                index,
                {
                    "embedder": {"id": embedder.id, "dimension": embedder.dimension},
                    "run_id": run.id,
                    "sources": [s.name for s in settings.sources],
                },
                parent_id,
                generation,
            )
            progress("publish", 1, 1)
            run.snapshot_id = manifest.id
            run.status = RunStatus.PUBLISHED
            return
        except PublishConflict as exc:
            rollback = _new_rollback(store.read_pointer()[0], started_mark)
            if rollback is not None:
                _stop_for_rollback(run, rollback)
                return
            if attempt == MAX_ATTEMPTS:
                run.status = RunStatus.CONFLICT
                run.error = f"lost the publish race twice; the other run's snapshot stands ({exc})"
                log.warning("%s", run.error)
                return
            log.warning("%s; starting over from the new snapshot", exc)
        finally:
            index.close()
            shutil.rmtree(work / f"attempt-{attempt}", ignore_errors=True)


def _rollback_mark(pointer: Pointer | None) -> str:
    return pointer.rolled_back_at if pointer is not None else ""


def _new_rollback(pointer: Pointer | None, started_mark: str) -> Pointer | None:
    """``pointer`` if a rollback wrote it after the run started, else None. Any publish clears the mark,
    so a marked pointer whose mark differs from the one the run started from is a new rollback."""
    if pointer is not None and pointer.rolled_back and pointer.rolled_back_at != started_mark:
        return pointer
    return None


def _stop_for_rollback(run: ScrapeRun, pointer: Pointer) -> None:
    run.status = RunStatus.CONFLICT
    run.error = (
        f"the snapshot pointer was rolled back to {pointer.snapshot_id} at {pointer.rolled_back_at} "
        "while this run was crawling; not publishing over the rollback (run the scrape again once the "
        "cause is fixed)"
    )
    log.warning("scrape run %s: %s", run.id, run.error, extra={"run_id": run.id})
