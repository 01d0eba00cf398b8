"""The gaps report over 100,000 stored questions: time and peak memory of one report.

    .venv/bin/python bench/gaps.py                        # 100,000 answers, mixed and all-gaps, 3 runs each
    .venv/bin/python bench/gaps.py --rows 20000 --runs 1  # smaller, quicker

What runs for real: the Firestore emulator holds the answers (started here with a 3 GB heap and the
JVM's default JIT: with the test stack's 512 MB it ran out of heap before 100,000 were written), written
with the fields ``AnswerLog.document`` gives every answer (``shared/qa/answer_log.py``); each report is
one fresh process that does what ``/gaps`` and ``askbase gaps`` do for an admin (``GapsService``: the
range query over the period, projected, read as raw protobufs on a single-threaded stream channel;
grouping; page table), timed from the call to the finished report. Peak memory is that process's
maximum RSS (``VmHWM``), printed with its RSS just before the call (interpreter, numpy, the Firestore
client), so the report's own share shows.

What is synthetic: the questions. 1,000 topics (40 subjects x 25 actions) are asked in 8 phrasings each
(8,000 distinct texts), embedded once with the real MiniLM through ``QuestionVectors`` (cached in
``$ASKBASE_DATA_DIR/bench-gaps-vectors.npz``: about a minute the first time). Every stored row then gets
its own vector (the phrasing's plus noise: cosine about 0.97 with it) and its own text (a case number),
so no two rows are identical and the report groups 100,000 distinct questions: the worst case, where
repeated questions (merged before grouping) do not help. Scenarios:

  mixed     65 % of the answers are gaps (50 % refused, 10 % low support, 5 % rated down), the rest
            confident: they count for the page table only and carry no vector, as production stores them
  all-gaps  every answer refused: 100,000 questions to group
  many-groups  every answer refused, each vector near one of 2,000 random directions (not MiniLM
            vectors: the phrasings above settle into a few dozen groups): the grouping at its cap of
            2,000 groups, its most expensive case

The time excludes writing the data (printed separately) and the embedding of questions, which happens
once per answer when it is recorded (``/api/ask``), not when the report is read.

Each report runs twice per round, interleaved: with numpy's OpenBLAS as installed (a thread per core)
and with ``OPENBLAS_NUM_THREADS=1``. On a machine whose cores are busy, BLAS threads spin waiting for
each other, and the grouping's matrix products take several times longer; the two rows show how much.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

PROJECT = "askbase-bench-gaps"
SUBJECTS = [
    "SAML single sign-on", "the Slack app", "PDF uploads", "the iOS app", "the Android app",
    "usage analytics", "the chat widget", "custom branding", "Zendesk webhooks", "the Confluence connector",
    "Notion pages", "SharePoint sites", "REST API keys", "rate limits", "team workspaces", "user roles",
    "audit logs", "EU data residency", "GDPR exports", "invoices", "the enterprise plan", "the free trial",
    "two-factor login", "SCIM provisioning", "the Microsoft Teams bot", "WhatsApp answers",
    "voice questions", "multilingual answers", "answer length", "the dark theme", "email digests",
    "offline mode", "the CLI on Windows", "Kubernetes deployment", "AWS hosting", "Azure hosting",
    "on-premise installs", "the browser extension", "Google Drive files", "video transcripts",
]  # fmt: skip
ACTIONS = [
    "set up", "configure", "turn off", "pay for", "troubleshoot", "export", "limit", "test", "migrate",
    "secure", "monitor", "automate", "back up", "translate", "audit", "share", "delete", "rename",
    "schedule", "debug", "speed up", "integrate", "customise", "update", "restrict access to",
]  # fmt: skip
PHRASINGS = [
    "How do I {a} {s}?", "Can I {a} {s}?", "Is there a way to {a} {s}?", "{s}: how to {a} it?",
    "I want to {a} {s}", "Where is the guide to {a} {s}?", "Does it let me {a} {s}?", "{a} {s} help",
]  # fmt: skip
NOISE = 0.0128  # per dimension: cosine about 0.97 between a row's vector and its phrasing's
PAGES = 500


@contextlib.contextmanager
def firestore_emulator(heap: str = "3g") -> Iterator[dict[str, str]]:
    """A Firestore emulator of its own (the environment variables that point at it)."""
    from shared.emulators import FIRESTORE_JAR, free_port
    from shared.processes import with_parent_death

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="askbase-bench-gaps-"))
    main_class = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
    argv = ["java", f"-Xmx{heap}", "-cp", str(FIRESTORE_JAR), main_class, "start", "--host=127.0.0.1"]
    with open(workdir / "firestore.log", "wb") as log:
        proc = subprocess.Popen(
            with_parent_death([*argv, f"--port={port}"]),  # gone with the bench, even when it is killed
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((workdir / "firestore.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}", "GOOGLE_CLOUD_PROJECT": PROJECT}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


def texts() -> list[str]:
    return [p.format(a=a, s=s) for s in SUBJECTS for a in ACTIONS for p in PHRASINGS]


def phrasing_vectors(cache: Path) -> np.ndarray:
    """The 8,000 phrasings embedded as the answer log embeds questions (float32), cached."""
    from shared.qa.answer_log import QuestionVectors

    all_texts = texts()
    key = hashlib.sha256("\n".join(all_texts).encode()).hexdigest()[:16]
    if cache.exists():
        data = np.load(cache)
        if str(data["key"]) == key:
            return data["vectors"]
    started = time.perf_counter()
    vectors = QuestionVectors("minilm-l6-v2")(all_texts).astype(np.float32)
    print(f"embedded {len(all_texts)} phrasings in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors, key=key)
    return vectors


def generate(rows: int, scenario: str, vectors: np.ndarray, now: datetime) -> float:
    """Write ``rows`` answers to the emulator; returns the seconds it took."""
    from shared.gcp import firestore_client
    from shared.qa.answer_log import ANSWERS, AnswerFacts, AnswerLog

    db = firestore_client(PROJECT)
    log = AnswerLog(db, retention_days=365)
    all_texts = texts()
    rng = np.random.default_rng(14)
    kinds = rng.random(rows)
    phrasing = rng.integers(0, len(all_texts), rows)
    pages = rng.integers(0, PAGES, (rows, 2))
    ages = rng.random(rows) * 29.0  # days, inside the report's 30
    directions = rng.normal(size=(2000, vectors.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)

    def document(i: int) -> tuple[str, dict]:
        kind = float(kinds[i]) if scenario == "mixed" else 0.0
        refused, score, down = kind < 0.50, 0.9, 0
        if 0.50 <= kind < 0.60:
            score = 0.38  # low support
        elif 0.60 <= kind < 0.65:
            down = 1
        gap = kind < 0.65
        cited = [] if refused else [
            {"title": f"Page {p} > Section", "url": f"https://docs.example.com/page-{p}#s", "score": score}
            for p in dict.fromkeys(int(x) for x in pages[i])
        ]  # fmt: skip
        related = [{"title": f"Page {pages[i][0]}", "url": f"https://docs.example.com/page-{pages[i][0]}"}]
        question = f"{all_texts[phrasing[i]]} (case {i})"
        facts = AnswerFacts(
            f"bench-{i}", question, "An answer. [1]", cited, "extractive", refused,
            related if refused else [],
        )  # fmt: skip
        vector = None
        if scenario == "many-groups":
            noisy = directions[i % len(directions)] + rng_row(i).normal(0, 0.03, directions.shape[1])
            vector = (noisy / np.linalg.norm(noisy)).astype(np.float32)
        elif gap:
            noisy = vectors[phrasing[i]] + rng_row(i).normal(0, NOISE, vectors.shape[1]).astype(np.float32)
            vector = noisy / np.linalg.norm(noisy)
        doc = log.document(facts, f"user:bench{i % 500}@example.com", now - timedelta(days=float(ages[i])),
                           lambda url: "blog" if url.endswith(("7", "7#s")) else "docs", vector)  # fmt: skip
        if down:
            doc["down_votes"] = 1
        return facts.id, doc

    def write(start: int) -> None:
        batch = db.batch()
        for i in range(start, min(start + 500, rows)):
            answer_id, doc = document(i)
            batch.set(db.collection(ANSWERS).document(answer_id), doc)
        batch.commit()

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(0, rows, 500)))
    return time.perf_counter() - started


def rng_row(i: int) -> np.random.Generator:
    return np.random.default_rng(1_000_000 + i)


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB. Not ``ru_maxrss``: Linux carries that
    over from the parent across exec, so a child would report the bench's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def report_once() -> None:
    """Child process: one admin report over the last 30 days; prints its figures as JSON."""
    from shared.gcp import firestore_client
    from shared.qa.answer_log import QuestionVectors
    from shared.qa.answer_rows import read_rows
    from shared.qa.gaps import GapsService, Viewer
    from shared.qa.gaps_filters import parse_filters
    from shared.qa.gaps_report import build_report

    db = firestore_client(PROJECT)
    service = GapsService(db, QuestionVectors("minilm-l6-v2"), similarity=0.3, low_support_score=0.45)
    filters = parse_filters({"days": "30"}, datetime.now(UTC))
    db.collection("answers").limit(1).get()  # open the channel: not part of the report
    before = memory_mb("VmRSS")
    cpu0, started = time.process_time(), time.perf_counter()
    rows = read_rows(db, filters, service.scope(Viewer("bench@example.com", True), None))
    read, read_cpu = time.perf_counter() - started, time.process_time() - cpu0
    report = build_report(rows, filters, similarity=0.3, low_support_score=0.45)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    peak = memory_mb("VmHWM")
    print(
        json.dumps(
            {
                "answers": report.answers,
                "gaps": report.gaps,
                "groups": report.total_groups,
                "read_s": read,
                "read_cpu_s": read_cpu,
                "group_s": total - read,
                "total_s": total,
                "cpu_s": cpu,
                "rss_before_mb": before,
                "peak_mb": peak,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="mixed,all-gaps,many-groups")
    parser.add_argument("--report-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report_once:
        report_once()
        return

    cache = Path(os.environ.get("ASKBASE_DATA_DIR", tempfile.gettempdir())) / "bench-gaps-vectors.npz"
    vectors = phrasing_vectors(cache)
    print(f"load average at start: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    table = []
    for scenario in args.scenarios.split(","):
        with firestore_emulator() as emulator_env:
            os.environ.update(emulator_env)
            written = generate(args.rows, scenario, vectors, datetime.now(UTC))
            print(f"{scenario}: wrote {args.rows} answers in {written:.1f} s", file=sys.stderr)
            runs: dict[str, list[dict]] = {"default": [], "1": []}
            for _ in range(args.runs):
                for threads in runs:  # interleaved: both variants see the same load
                    blas = {} if threads == "default" else {"OPENBLAS_NUM_THREADS": threads}
                    out = subprocess.run(
                        [sys.executable, __file__, "--report-once"],
                        env={**os.environ, **emulator_env, **blas},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    runs[threads].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(f"  BLAS threads {threads}: {runs[threads][-1]}", file=sys.stderr)
            for threads, variant in runs.items():
                table.append((f"{scenario}, BLAS threads {threads}", variant, os.getloadavg()[0]))
    print(f"\n{args.rows:,} stored answers, median of {args.runs} report(s), each in a fresh process\n")
    print(
        "| scenario | gaps | groups | read (Firestore emulator) | group + pages | total "
        "| CPU: read / all | RSS before → peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for scenario, runs, load in table:

        def med(key: str, runs: list[dict] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        print(
            f"| {scenario} (load {load:.1f}) | {int(med('gaps')):,} | {int(med('groups')):,} | "
            f"{med('read_s'):.2f} s | {med('group_s'):.2f} s | {med('total_s'):.2f} s | "
            f"{med('read_cpu_s'):.2f} / {med('cpu_s'):.2f} s | "
            f"{med('rss_before_mb'):.0f} → {med('peak_mb'):.0f} MB |"
        )


if __name__ == "__main__":
    main()
