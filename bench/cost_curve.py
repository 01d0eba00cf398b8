"""The cost curve of "every qa instance holds the whole index": size, start, memory and retrieval by size.

    .venv/bin/python bench/cost_curve.py                                # 1k, 10k, 30k, 100k chunks
    .venv/bin/python bench/cost_curve.py --sizes 1000,10000 --starts 3

For each size, one synthetic index is built and published to the GCS emulator with the real
SnapshotStore, then measured:

- *archive / directory*: the published ``.tar.zst`` and the index directory it was packed from;
- *restore → first answer*: the qa service started as its container starts it (gunicorn,
  ``services.qa.wsgi:app``, 1 worker) with a new data directory: spawn → the first ``POST /api/ask``
  answered 200 with sources (download from the emulator, verify, unpack, open, load the embedder,
  search, answer, Firestore write); wall and the CPU of the service's processes; median of
  ``--starts``;
- *qa RSS*: the gunicorn worker's resident memory after the first answer and 50 more questions;
- with ``--compare DIR``: the same starts, RSS and CPU for another checkout's qa (e.g. ``git archive HEAD
  | tar -x -C /tmp/before``), its start and this tree's alternating on the same published snapshot, so
  the machine's load falls on both alike (the cost of a code change at each size);
- *retrieval p50 / p99*: :meth:`KnowledgeIndex.search` in this process on a restored copy opened
  read-only, as qa opens it (embed the question with the real MiniLM, HNSW, BM25, heading score,
  fusion), ``--queries`` questions.

Chunks are ~200-token synthetic doc paragraphs (bench/embeddings.py ``synthetic_text``); their vectors are
not MiniLM's own: each is a mix of real MiniLM vectors of topic sentences plus noise (bench/embeddings.py
``MixedVectorEmbedder``). Size, restore time, memory and search cost depend on the count and dimension
of the vectors, not on what they mean, so this is what the figures need, and 100k chunks are not
embedded (that would take over an hour here). Questions are embedded by the real model. Pages hold 40
chunks each, so building is mostly Chroma's own writing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from embeddings import TOPICS, WORDS, MixedVectorEmbedder, build_synthetic_index, percentile  # noqa: E402
from qa_latency import BOT, PROJECT, QUESTIONS, Service, ask, service_env  # noqa: E402
from service_coldstart import cpu_seconds  # noqa: E402

from shared.emulators import free_port, running_stack  # noqa: E402
from shared.gcp import ensure_bucket, firestore_client, storage_client  # noqa: E402
from shared.knowledge.embeddings import load_embedder  # noqa: E402
from shared.knowledge.index import KnowledgeIndex  # noqa: E402
from shared.knowledge.snapshots import SnapshotStore  # noqa: E402

START_LIMIT = 1800.0  # seconds a start may take before the bench gives up on that size


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def publish(size: int, tmp: Path, bucket_name: str, fake: MixedVectorEmbedder) -> dict[str, float]:
    """Build ``size`` chunks, publish them; archive and directory sizes and the build time."""
    path = tmp / f"build-{size}"
    build = build_synthetic_index(path, size, fake)
    store = SnapshotStore(ensure_bucket(storage_client(PROJECT), bucket_name))
    started = time.perf_counter()
    with KnowledgeIndex.open(path, fake) as index:
        pointer, generation = store.read_pointer()
        manifest = store.publish(index, {}, pointer.snapshot_id if pointer else None, generation)
    publish_s = time.perf_counter() - started
    directory = dir_mb(path)
    shutil.rmtree(path, ignore_errors=True)
    return {
        "chunks": manifest.chunk_count,
        "archive_mb": manifest.size / 1e6,
        "dir_mb": directory,
        "build_s": build,
        "publish_s": publish_s,
    }


def tree_cache(tree: Path) -> Path:
    """``XDG_CACHE_HOME`` for another checkout's qa: its own ONNX graph cache. Two graph versions in
    one cache would each delete the other's files, and every start would rebuild its graph."""
    digest = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"askbase-cost-cache-{digest}"


class TreeService(Service):
    """:class:`Service` run from another checkout: its cwd (gunicorn and ``-m`` put the cwd first on
    the path), ``PYTHONPATH`` and graph cache (:func:`tree_cache`), so that tree's code answers."""

    def __init__(self, env: dict[str, str], port: int, log: Path, tree: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(log, "ab")  # noqa: SIM115 - lives as long as the process
        command = ["-m", "gunicorn", "--config", "services/qa/gunicorn.conf.py"]
        self.proc = subprocess.Popen(
            [sys.executable, *command, "--bind", f"127.0.0.1:{port}", "services.qa.wsgi:app"],
            cwd=tree,
            env=env | {"PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(tree_cache(tree))},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


def cold_start(bucket: str, tmp: Path, run: str, tree: Path | None = None) -> dict[str, float]:
    """Spawn qa (this checkout's, or ``tree``'s), time the first answer, then ask 50 more and read the
    worker's RSS."""
    port = free_port()
    env = service_env(bucket, tmp / f"data-{run}", port)
    log = tmp / "qa.log"
    started = time.perf_counter()
    service = Service(env, port, log) if tree is None else TreeService(env, port, log, tree)
    try:
        with httpx.Client(timeout=60) as client:
            while True:
                if service.proc.poll() is not None:
                    raise RuntimeError(f"qa exited during start; see {log}")
                try:
                    response = ask(client, service.base, QUESTIONS[0], "bench:cold")
                    if response.status_code == 200 and response.json()["sources"]:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > START_LIMIT:
                    raise RuntimeError(f"qa did not answer within {START_LIMIT:.0f} s; see {log}")
                time.sleep(0.05)
            wall = time.perf_counter() - started
            cpu = cpu_seconds(service.proc.pid)
            for i in range(50):
                ask(
                    client, service.base, QUESTIONS[i % len(QUESTIONS)], f"bench:rss{i % 5}"
                ).raise_for_status()
            rss = service.rss_mb()
        return {"wall": wall, "cpu": cpu, "rss_mb": rss}
    finally:
        service.stop()
        shutil.rmtree(tmp / f"data-{run}", ignore_errors=True)


def retrieval(bucket: str, tmp: Path, queries: int) -> dict[str, float]:
    """Search latency in this process on a restored copy (what the 20 / 100 ms targets are about)."""
    import random

    store = SnapshotStore(storage_client(PROJECT).bucket(bucket))
    started = time.perf_counter()
    restored = store.restore(tmp / "retrieval")
    assert restored is not None
    restore_s = time.perf_counter() - started
    rng = random.Random(20261201)
    questions = [
        f"how do I {rng.choice(WORDS)} the {rng.choice(TOPICS)} {rng.choice(WORDS)}" for _ in range(queries)
    ]
    started = time.perf_counter()
    index = KnowledgeIndex.open(restored.path, load_embedder(), read_only=True)  # as qa opens it
    open_s = time.perf_counter() - started
    try:
        for question in questions[:5]:
            index.search(question, k=5)
        timings = []
        for question in questions:
            started = time.perf_counter()
            index.search(question, k=5)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        index.close()
        shutil.rmtree(tmp / "retrieval", ignore_errors=True)
    return {
        "restore_s": restore_s,
        "open_s": open_s,
        "p50": percentile(timings, 50),
        "p99": percentile(timings, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,30000,100000", help="chunk counts, comma-separated")
    parser.add_argument("--starts", type=int, default=2, help="qa cold starts per size (median)")
    parser.add_argument("--queries", type=int, default=200, help="retrieval questions per size")
    parser.add_argument("--compare", type=Path, help="another checkout (its qa alternates)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]

    rows: list[dict[str, float]] = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="askbase-cost-") as tmp_name, running_stack(PROJECT):
        tmp = Path(tmp_name)
        # The questions are asked as a bot's worker asks them (qa_latency.ask): the bot must exist.
        firestore_client(PROJECT).collection("bots").document(BOT).set(
            {"owner": "user:bench@example.com", "owner_email": "bench@example.com", "model": "extractive"}
        )
        fake = MixedVectorEmbedder(load_embedder())
        if args.compare is not None:  # its graph is built before any start, as the qa image build does
            subprocess.run(
                [sys.executable, "-m", "shared.knowledge.embeddings"],
                cwd=args.compare,
                env=os.environ
                | {"PYTHONPATH": str(args.compare), "XDG_CACHE_HOME": str(tree_cache(args.compare))},
                check=True,
                capture_output=True,
            )
        for size in sizes:
            bucket = f"askbase-cost-{size}-{uuid.uuid4().hex[:6]}"
            print(f"{size:,} chunks: building and publishing…", file=sys.stderr)
            row = publish(size, tmp, bucket, fake)
            print(f"  built in {row['build_s']:.0f} s, archive {row['archive_mb']:.1f} MB", file=sys.stderr)
            starts: list[dict[str, float]] = []
            others: list[dict[str, float]] = []
            for i in range(args.starts):
                if args.compare is not None:  # the other tree first in even runs, second in odd ones
                    if i % 2 == 0:
                        others.append(cold_start(bucket, tmp, f"{size}-{i}-other", args.compare))
                    starts.append(cold_start(bucket, tmp, f"{size}-{i}"))
                    if i % 2 == 1:
                        others.append(cold_start(bucket, tmp, f"{size}-{i}-other", args.compare))
                else:
                    starts.append(cold_start(bucket, tmp, f"{size}-{i}"))
            for name, runs in (("this tree", starts), (str(args.compare), others)):
                if runs:
                    print(
                        f"  {name}: "
                        + "; ".join(
                            f"{r['wall']:.2f} s / {r['cpu']:.2f} s CPU / {r['rss_mb']:.0f} MB" for r in runs
                        ),
                        file=sys.stderr,
                    )
            if others:
                row["other_wall"] = statistics.median(s["wall"] for s in others)
                row["other_cpu"] = statistics.median(s["cpu"] for s in others)
                row["other_rss_mb"] = statistics.median(s["rss_mb"] for s in others)
            row["start_wall"] = statistics.median(s["wall"] for s in starts)
            row["start_cpu"] = statistics.median(s["cpu"] for s in starts)
            row["start_min"] = min(s["wall"] for s in starts)
            row["start_max"] = max(s["wall"] for s in starts)
            row["rss_mb"] = statistics.median(s["rss_mb"] for s in starts)
            print(f"  first answer {row['start_wall']:.1f} s, RSS {row['rss_mb']:.0f} MB", file=sys.stderr)
            row.update(retrieval(bucket, tmp, args.queries))
            row["load"] = os.getloadavg()[0]
            loads.append(row["load"])
            rows.append(row)
            # The emulator keeps objects in memory: a 100k archive is hundreds of MB.
            storage_client(PROJECT).bucket(bucket).delete(force=True)

    header = (
        f"{'chunks':>8} {'archive MB':>11} {'dir MB':>8} {'build s':>8} {'restore→answer s (min-max)':>27} "
        f"{'CPU s':>6} {'qa RSS MB':>10} {'restore s':>9} {'open s':>7} {'p50 / p99 ms':>14} {'load':>5}"
    )
    print("\nsynthetic chunks (~200 tokens, mixed MiniLM vectors); qa from the dev virtualenv, 1 worker")
    print(header)
    for r in rows:
        span = f"{r['start_wall']:.1f} ({r['start_min']:.1f}-{r['start_max']:.1f})"
        print(
            f"{int(r['chunks']):>8,} {r['archive_mb']:>11.1f} {r['dir_mb']:>8.0f} {r['build_s']:>8.0f} "
            f"{span:>27} {r['start_cpu']:>6.1f} {r['rss_mb']:>10.0f} {r['restore_s']:>9.1f} "
            f"{r['open_s']:>7.2f} {r['p50']:>6.1f} / {r['p99']:<6.1f} {r['load']:>5.1f}"
        )
    if args.compare is not None:
        print(f"\n{args.compare} (alternating with this tree): wall / CPU / qa RSS, medians")
        for r in rows:
            print(
                f"{int(r['chunks']):>8,}  {r['other_wall']:.2f} s / {r['other_cpu']:.2f} s / "
                f"{r['other_rss_mb']:.0f} MB   (this tree {r['start_wall']:.2f} s / {r['start_cpu']:.2f} s / "
                f"{r['rss_mb']:.0f} MB)"
            )
    print(f"\nload average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
