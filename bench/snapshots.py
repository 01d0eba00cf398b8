"""Snapshot archive size, pack/unpack times (zstd vs gzip) and cold restore → first query.

    .venv/bin/python bench/snapshots.py                 # 465 and 10,000 chunks, 3 runs each
    .venv/bin/python bench/snapshots.py --sizes 465 --runs 5

Indexes are built with bench/embeddings.py's MixedVectorEmbedder (real MiniLM vectors of topic sentences,
mixed per chunk): the same dimension and the same kind of float noise as real vectors, so archive sizes
are representative, without 9 minutes of embedding for 10k chunks. ~200-token chunks, 15 per page.

Columns (medians of ``--runs``):
  pack      tar of the index directory, the part done while holding the index's write lock
  compress  compression of that tar after the lock is released
  unpack    verified-safe decompress + untar (``safe_unpack``)
  cold restore → first query: a fresh Python process reads the pointer from the GCS emulator, downloads,
  verifies sha256, unpacks, opens the index with the real embedder and answers one search; the figure
  is wall time from process spawn to that answer, with its parts (imports, restore, open, query)
  alongside.
"""

from __future__ import annotations

import argparse
import json
import os
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

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from shared.gcp import storage_client
from shared.knowledge.embeddings import load_embedder
from shared.knowledge.index import KnowledgeIndex
from shared.knowledge.snapshots import SnapshotStore
t_import = time.perf_counter()
bucket = storage_client("askbase-bench").bucket(sys.argv[1])
restored = SnapshotStore(bucket).restore(Path(sys.argv[2]))
t_restore = time.perf_counter()
embedder = load_embedder()
t_embedder = time.perf_counter()
index = KnowledgeIndex.open(restored.path, embedder)
t_open = time.perf_counter()
hits = index.search("how do I configure backups for my project", k=5)
t_query = time.perf_counter()
assert hits, "no answer"
print("ANSWERED", flush=True)
print(json.dumps({"imports": t_import - t0, "restore": t_restore - t_import,
                  "embedder": t_embedder - t_restore, "open": t_open - t_embedder,
                  "query": t_query - t_open, "chunks": index.chunk_count()}))
"""


# The same start-up as the qa service (LiveIndex.from_settings, as services.qa.app.create_app calls it):
# a child process fetches the snapshot while this one imports Chroma and loads the model.
SERVICE_CHILD = r"""
import sys
from shared.config import Settings
from shared.qa.live_index import LiveIndex
settings = Settings(project_id="askbase-bench", bucket=sys.argv[1], data_dir=sys.argv[2])
live = LiveIndex.from_settings(settings)
live.start()
assert live.search("how do I configure backups for my project", 5), "no answer"
print("ANSWERED", flush=True)
live.stop()
"""


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_archive(index, tmp: Path, compression: str, level: int | None, runs: int) -> dict[str, float]:
    from shared.knowledge import snapshot_archive as snap

    packs, compresses, unpacks, size = [], [], [], 0
    for run in range(runs):
        tar = tmp / f"a{run}.tar"
        out = tmp / f"a{run}.arc"
        if level is not None:
            snap.ZSTD_LEVEL = level if compression == "zstd" else snap.ZSTD_LEVEL
            snap.GZIP_LEVEL = level if compression == "gzip" else snap.GZIP_LEVEL
        started = time.perf_counter()
        with index.write_lock:
            snap.pack_directory(Path(index.path), tar)
        packs.append(time.perf_counter() - started)
        started = time.perf_counter()
        snap.compress_file(tar, out, compression)  # type: ignore[arg-type]
        compresses.append(time.perf_counter() - started)
        size = out.stat().st_size
        dest = tmp / f"u{run}"
        started = time.perf_counter()
        snap.safe_unpack(out, compression, dest)  # type: ignore[arg-type]
        unpacks.append(time.perf_counter() - started)
        tar.unlink()
        out.unlink()
        subprocess.run(["rm", "-rf", str(dest)], check=True)
    return {"pack": median(packs), "compress": median(compresses), "unpack": median(unpacks), "size": size}


def _run_child(code: str, bucket_name: str, dest: Path) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; return the time from spawn until it printed ANSWERED (its
    first answer; interpreter shutdown afterwards is not part of the figure) and the rest of its
    stdout. Then drop ``dest``."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", code, bucket_name, str(dest)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        assert child.stdout is not None
        answered = None
        while line := child.stdout.readline():
            if line.strip() == "ANSWERED":
                answered = time.perf_counter() - started
                break
        stdout = child.stdout.read()
        if child.wait() != 0 or answered is None:
            errors.seek(0)
            raise RuntimeError(errors.read()[-2000:])
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    return answered, stdout


def cold_restore(bucket_name: str, tmp: Path, runs: int) -> dict[str, float]:
    walls, parts, service_walls = [], [], []
    for run in range(runs):
        wall, stdout = _run_child(CHILD, bucket_name, tmp / f"restore-{run}")
        walls.append(wall)
        parts.append(json.loads(stdout.strip().splitlines()[-1]))
        service_walls.append(_run_child(SERVICE_CHILD, bucket_name, tmp / f"service-{run}")[0])
    result = {"wall": median(walls), "service": median(service_walls)}
    for key in ("imports", "restore", "embedder", "open", "query"):
        result[key] = median([p[key] for p in parts])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="465,10000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from embeddings import MixedVectorEmbedder, build_synthetic_index

    from shared.emulators import running_stack
    from shared.gcp import ensure_bucket, storage_client
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.index import KnowledgeIndex
    from shared.knowledge.snapshots import SnapshotStore

    archive_rows = []
    restore_rows = []
    with running_stack("askbase-bench"), tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp_name:
        tmp = Path(tmp_name)
        fake = MixedVectorEmbedder(load_embedder())
        for size in sizes:
            path = tmp / f"index-{size}"
            build_seconds = build_synthetic_index(path, size, fake)
            print(f"# built {size} chunks in {build_seconds:.1f}s", file=sys.stderr)
            index = KnowledgeIndex.open(path, fake)
            raw = dir_bytes(path)
            variants = [("zstd", 3), ("zstd", 9), ("gzip", 6)]
            if size <= 1000:
                variants.insert(2, ("zstd", 19))
            for compression, level in variants:
                figures = bench_archive(index, tmp, compression, level, args.runs)
                archive_rows.append((size, raw, f"{compression}-{level}", figures))
            from shared.knowledge import snapshot_archive as snap

            snap.ZSTD_LEVEL, snap.GZIP_LEVEL = 9, 6
            bucket_name = f"bench-{uuid.uuid4().hex[:8]}"
            bucket = ensure_bucket(storage_client("askbase-bench"), bucket_name)
            manifest = SnapshotStore(bucket).publish(index, {}, None, 0)
            index.close()
            restore_rows.append((size, manifest.size, cold_restore(bucket_name, tmp, args.runs)))

    print(f"\nArchives (median of {args.runs}; pack = time under the write lock)")
    print(
        f"{'chunks':>7} {'dir MB':>7} {'codec':<9} {'archive MB':>10} {'ratio':>6} {'pack s':>7} "
        f"{'compress s':>10} {'unpack s':>8}"
    )
    for size, raw, codec, f in archive_rows:
        print(
            f"{size:>7} {raw / 1e6:>7.1f} {codec:<9} {f['size'] / 1e6:>10.2f} {raw / f['size']:>6.1f} "
            f"{f['pack']:>7.2f} {f['compress']:>10.2f} {f['unpack']:>8.2f}"
        )
    print(f"\nCold process: restore from the GCS emulator → first query answered (median of {args.runs})")
    print(
        f"{'chunks':>7} {'archive MB':>10} {'service s':>9} {'serial s':>8} {'imports s':>9} "
        f"{'restore s':>9} {'embedder s':>10} {'open s':>7} {'query s':>7}"
    )
    for size, archive, f in restore_rows:
        print(
            f"{size:>7} {archive / 1e6:>10.2f} {f['service']:>9.2f} {f['wall']:>8.2f} {f['imports']:>9.2f} "
            f"{f['restore']:>9.2f} "
            f"{f['embedder']:>10.2f} {f['open']:>7.2f} {f['query']:>7.2f}"
        )
    print(
        "service = process spawn → first answer the way the qa service starts (LiveIndex.from_settings: a\n"
        "child process restores while this one imports Chroma and loads the model); serial = the same steps\n"
        "one after another in one process, broken down in the columns after it (they exclude interpreter\n"
        "start-up). Interpreter shutdown after the answer is not counted."
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores; other work inflates every figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
