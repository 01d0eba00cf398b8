"""SIGKILL the scrape job at random moments and check that what is published still restores and answers.

Used by ``tests/test_crash_publish.py`` (a few trials in the suite) and ``bench/crash_publish.py`` (50+).
Each trial edits a page of the fixture site so the run has something to publish, starts ``run_scrape`` in
a child process, kills it with SIGKILL after a random delay drawn over the length of a whole run (so kills
land in crawl, embed, pack, upload and pointer swap), then restores the published snapshot into a fresh
directory and asks it a question. A "torn" result is any restore that fails, falls back to an older
snapshot than the pointer names, or opens an index that cannot answer.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from google.api_core import exceptions as gexc

from shared import gcp
from shared.config import Settings
from shared.knowledge.index import KnowledgeIndex
from shared.knowledge.snapshots import SnapshotStore
from tests import sites

CHILD = """
import sys, time
from shared.config import get_settings
from shared.knowledge.scrape import run_scrape
def progress(stage, done, total):
    print(f"STAGE {time.monotonic():.3f} {stage}", flush=True)
run = run_scrape(get_settings(), progress)
print(f"DONE {run.status.value} {run.snapshot_id}", flush=True)
"""


@dataclass
class TrialReport:
    trials: int = 0
    killed: int = 0
    finished: int = 0
    torn: int = 0
    published_after_kill: int = 0
    stages_at_kill: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GOOGLE_CLOUD_PROJECT": settings.project_id,
            "ASKBASE_ENV": "test",
            "ASKBASE_BUCKET": settings.bucket,
            "ASKBASE_DATA_DIR": settings.data_dir,
            "ASKBASE_SOURCES": "[" + ",".join(s.model_dump_json() for s in settings.sources) + "]",
            "ASKBASE_CRAWL_TIMEOUT_SECONDS": "2",
            "ASKBASE_CRAWL_RETRIES": "1",
            "ASKBASE_SCRAPE_LEASE_SECONDS": "60",
        }
    )
    return env


def run_child(env: dict[str, str], kill_after: float | None) -> tuple[bool, str, float, dict[str, float]]:
    """Run one scrape in a child; SIGKILL it ``kill_after`` s after its first progress line.

    The clock starts at the first progress line, not at process start, so kills are spread over the
    run's work (restore, crawl, embed, pack, upload, pointer swap) rather than over interpreter start-up.
    Returns (killed, last stage reached, seconds from the first progress line to exit, and when each
    stage was first reached, in seconds from the first progress line).
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    first_stage = threading.Event()
    started: list[float] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.rstrip("\n"))
            if line.startswith("STAGE ") and not first_stage.is_set():
                started.append(time.monotonic())
                first_stage.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    if kill_after is not None and first_stage.wait(timeout=120) and proc.poll() is None:
        try:
            proc.wait(timeout=max(0.0, started[0] + kill_after - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            killed = True
    proc.wait(timeout=600)
    reader.join(timeout=10)
    elapsed = time.monotonic() - (started[0] if started else time.monotonic())
    stage_lines = [line.split(" ", 2) for line in lines if line.startswith("STAGE ")]
    first_at = float(stage_lines[0][1]) if stage_lines else 0.0
    reached: dict[str, float] = {}
    for _, at, stage in stage_lines:
        reached.setdefault(stage, float(at) - first_at)
    last = stage_lines[-1][2] if stage_lines else "start-up"
    if not killed and proc.returncode != 0:
        raise RuntimeError(f"scrape child exited {proc.returncode}: {lines[-20:]}")
    return killed, last, elapsed, reached


def check_published(settings: Settings, embedder, scratch: Path) -> str | None:
    """Restore what the pointer names and ask it something; return a problem, or None if it is whole."""
    bucket = gcp.storage_client(settings.project_id).bucket(settings.bucket)
    store = SnapshotStore(bucket, settings.snapshot_prefix)
    pointer, _ = store.read_pointer()
    if pointer is None:
        return "no pointer"
    restored = store.restore(scratch)
    if restored is None:
        return "nothing restorable"
    if restored.snapshot_id != pointer.snapshot_id:
        return f"pointer names {pointer.snapshot_id} but only {restored.snapshot_id} restored"
    index = KnowledgeIndex.open(restored.path, embedder)
    try:
        if index.chunk_count() == 0 or not index.search("how do I install askbase", k=3):
            return f"snapshot {restored.snapshot_id} restored but cannot answer"
    finally:
        index.close()
    return None


def clear_lease(settings: Settings) -> None:
    """Drop a killed run's lease (expiry is tested on its own) so the next trial can start at once."""
    doc = gcp.firestore_client(settings.project_id).collection("leases").document("scrape")
    for attempt in range(30):
        try:
            doc.delete()
            return
        except gexc.Aborted:
            # The child died inside a lease transaction; the emulator holds that lock until it times out.
            time.sleep(0.5 + attempt * 0.1)
    doc.delete()


def run_trials(
    settings: Settings,
    site: sites.FixtureSite,
    embedder,
    scratch_root: Path,
    trials: int,
    seed: int = 1,
    min_kills: int = 0,
) -> TrialReport:
    """Baseline publish, then ``trials`` runs with a kill scheduled, each followed by a restore-and-answer
    check. With ``min_kills``, trials go on (up to three times ``trials``) until that many runs were
    really killed: a run that finished before its kill tells how long a run takes now, so the next
    delays are drawn within that. Counting kills instead of trusting one calibration run keeps the
    proof honest on a machine whose speed changes under load."""
    rng = random.Random(seed)
    env = child_env(settings)
    report = TrialReport()
    run_child(env, kill_after=None)  # baseline: a complete published snapshot
    problem = check_published(settings, embedder, scratch_root / "baseline")
    if problem:
        raise RuntimeError(f"baseline snapshot is not whole: {problem}")
    # Calibrate on an incremental run like the trials' (one page changed), not on the full build.
    site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=1000))
    _, _, run_seconds, reached = run_child(env, kill_after=None)
    publish_at = reached.get("publish", run_seconds * 0.8)
    bucket = gcp.storage_client(settings.project_id).bucket(settings.bucket)
    store = SnapshotStore(bucket, settings.snapshot_prefix)
    trial = -1
    while report.trials < trials or (report.killed < min_kills and report.trials < 3 * trials):
        trial += 1
        report.trials += 1
        site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=trial + 2))
        before, _ = store.read_pointer()
        # Every other trial aims at the short pack / upload / pointer-swap window, which a delay drawn
        # over the whole run would rarely hit.
        window = (publish_at, run_seconds) if trial % 2 else (0.0, run_seconds)
        killed, stage, elapsed, reached_now = run_child(env, kill_after=rng.uniform(*window))
        if not killed:  # this run was faster than the calibration: aim within what it took
            run_seconds = min(run_seconds, elapsed)
            publish_at = min(publish_at, reached_now.get("publish", run_seconds * 0.8), run_seconds)
        report.killed += killed
        report.finished += not killed
        report.stages_at_kill[stage if killed else "finished"] += 1
        after, _ = store.read_pointer()
        if killed and before and after and after.snapshot_id != before.snapshot_id:
            report.published_after_kill += 1  # the kill landed after the pointer swap
        problem = check_published(settings, embedder, scratch_root / f"trial-{trial}")
        if problem:
            report.torn += 1
            report.failures.append(f"trial {trial} (killed in {stage}): {problem}")
        clear_lease(settings)
    return report
