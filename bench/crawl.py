"""Full crawl + index of a generated loopback site, then unchanged and one-page-edited re-crawls.

    .venv/bin/python bench/crawl.py                          # 500 pages, 3 runs
    .venv/bin/python bench/crawl.py --pages 200 --runs 5
    .venv/bin/python bench/crawl.py --compare /tmp/before    # this tree and another, interleaved
    .venv/bin/python bench/crawl.py --static /usr/share/doc/postgresql-doc-15/html --runs 1

Everything is the real job (:func:`shared.knowledge.scrape.run_scrape`): emulators for Firestore and
GCS, the fixture site server (uvicorn, keep-alive) with ETag/Last-Modified, the real MiniLM embedder,
zstd snapshot published by CAS. Pages have 3 headed sections of 5 sentences (~1 chunk per section at the
default 1200-character chunk limit).

``--static DIR`` crawls a real documentation site instead: the directory served on loopback
(``shared.devstack.site_server.static_app``: ETag/Last-Modified, 304s), a link crawl from
``/index.html``; the PostgreSQL 15 manual (Debian ``postgresql-doc-15``, 1,171 pages) is one. Its
phases are the full build and the unchanged re-crawl (nothing is edited).

Each phase of a run is a fresh process (``--child``) on the code of one tree (this checkout, or the
``--compare`` directories (repeatable), e.g. ``git archive HEAD | tar -x -C /tmp/before``), timed around
``run_scrape`` alone (imports and the model load are outside the figure): a full build into a new
bucket, an unchanged re-crawl, then a re-crawl after one page was edited. With ``--compare`` the trees
take turns run by run (A B, B A, ...; A B C, B C A, ...) so the machine's load falls on all alike.
The site is served by this process and shared by the trees.

Columns, per phase: wall time, the child's CPU time (user + system of every thread), the seconds spent
inside the embedder (the model's calls, wherever they ran), and for the full build:

- *model alone*: what embedding the same number of chunks costs with nothing else running, from a
  sample of 128 of the run's chunks embedded in one call after the run (in that child);
- *overhead*: wall / model alone - 1, what the crawl, extraction, chunking, index writes and publishing
  add to the embedding (the issue's figure: 45 % before, target ≤ 15 %);
- the pipeline's own breakdown where the tree records it in the run (:data:`BREAKDOWN`: fetch, the
  main thread's waits, extraction and chunking, the embedding thread inside the model, the writing
  thread inside the index, and the model's idle time);
- failed pages (a request that timed out after its retries) — must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 128  # chunks re-embedded alone after a full build, for the "model alone" rate
# The run's per-source breakdown (shared/knowledge/scrape.py), in pipeline order. The three threads
# overlap, so these do not add up to the wall time: the figure to watch is the model's idle time.
BREAKDOWN = [
    ("seconds", "fetch: the crawl loop, first request to last result handed over"),
    ("crawl_wait_seconds", "main thread waiting for the next fetched page"),
    ("extract_seconds", "main thread extracting"),
    ("chunk_seconds", "main thread chunking"),
    ("submit_wait_seconds", "main thread waiting for room in the pipeline"),
    ("index_wait_seconds", "main thread waiting for the pipeline's tail"),
    ("embed_seconds", "embed: the embedding thread inside the model"),
    ("write_seconds", "write: the writing thread inside the index"),
    ("model_idle_seconds", "idle: the model not running (source wall - embed)"),
]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimedEmbedder:
    """The real embedder, counting texts and the seconds spent inside it (from any thread)."""

    def __init__(self, inner: Any) -> None:
        import threading

        self.inner = inner
        self.id = inner.id
        self.dimension = inner.dimension
        self.texts: list[str] = []
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Any:
        started = time.perf_counter()
        out = self.inner.embed(texts)
        elapsed = time.perf_counter() - started
        with self._lock:
            self.seconds += elapsed
            self.texts.extend(texts)
            self.calls += 1
        return out


def child(args: argparse.Namespace) -> int:
    """One phase on one tree; prints one JSON line."""
    sys.path.insert(0, str(Path(args.tree).resolve()))
    import logging

    logging.basicConfig(level=logging.WARNING)
    from shared.config import Environment, Settings, Source, SourceKind
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.scrape import run_scrape

    settings = Settings(
        project_id=os.environ["GOOGLE_CLOUD_PROJECT"],
        env=Environment.TEST,
        bucket=args.bucket,
        data_dir=args.data_dir,
        sources=[Source(name="gen", kind=SourceKind(args.kind), url=args.site, max_pages=100_000)],
    )
    embedder = TimedEmbedder(load_embedder())
    cpu = _cpu()
    started = time.perf_counter()
    run = run_scrape(settings, embedder=embedder)
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu
    out: dict[str, Any] = {
        "wall": wall,
        "cpu": cpu,
        "status": run.status.value,
        "error": run.error,
        "embed_seconds": embedder.seconds,
        "embed_calls": embedder.calls,
        "texts": len(embedder.texts),
        "pages_changed": run.pages_changed,
        "pages_failed": run.pages_failed,
        "source": run.sources.get("gen", {}),
    }
    if args.phase == "full" and embedder.texts:
        sample = embedder.texts[:SAMPLE]
        embedder.inner.embed(sample[:8])
        started = time.perf_counter()
        embedder.inner.embed(sample)
        rate = len(sample) / (time.perf_counter() - started)
        out["model_alone"] = len(embedder.texts) / rate
    print(json.dumps(out))
    return 0


def _phase(tree: Path, phase: str, bucket: str, site: str, data_dir: Path, kind: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        phase,
        "--tree",
        str(tree),
        "--bucket",
        bucket,
        "--site",
        site,
        "--data-dir",
        str(data_dir),
        "--kind",
        kind,
    ]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{phase} on {tree} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] not in ("published", "unchanged"):
        raise SystemExit(f"{phase} on {tree}: run {result['status']}: {result['error']}")
    return result


def _med(values: list[float], unit: str = "s", digits: int = 1) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} {unit}"
    return (
        f"{statistics.median(values):.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--compare", type=Path, action="append", default=[], help="another tree to interleave with this one"
    )
    parser.add_argument("--child", choices=["full", "unchanged", "edited"], help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--site", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="sitemap", help=argparse.SUPPRESS)
    parser.add_argument(
        "--static", type=Path, help="crawl this directory of HTML (served on loopback) instead"
    )
    args = parser.parse_args(argv)
    if args.child:
        args.phase = args.child
        return child(args)

    sys.path.insert(0, str(ROOT))
    from shared.devstack.site_server import SiteServer, static_app
    from shared.emulators import running_stack
    from tests import sites

    trees = {f"compare ({tree})": tree.resolve() for tree in args.compare} | {"this tree": ROOT}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in trees}
    loads = [os.getloadavg()[0]]
    phase_names: tuple[str, ...]
    if args.static:
        served: Any = SiteServer(static_app(args.static))
        start, kind, phase_names = "/index.html", "crawl", ("full", "unchanged")
        title = f"{args.static} served on loopback, link crawl"
    else:
        served = sites.generated_site(args.pages)
        start, kind, phase_names = "/sitemap.xml", "sitemap", ("full", "unchanged", "edited")
        title = f"{args.pages}-page loopback site"
    with (
        running_stack("askbase-bench") as _stack,
        served as site,
        tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp,
    ):
        names = list(trees)
        for run in range(args.runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:  # each tree first in turn
                tree = trees[name]
                bucket = f"bench-{uuid.uuid4().hex[:8]}"
                data = Path(tmp) / f"{bucket}"
                path = f"/gen/page-{run:04d}"
                original = None if args.static else site.pages[path].body.decode()
                for phase in phase_names:
                    if phase == "edited":
                        html = sites.doc_html(
                            f"Edited {run} {name}", [("Changed", sites.prose(f"edit-{run}-{name}"))]
                        )
                        site.edit_page(path, html)
                    result = _phase(tree, phase, bucket, site.url(start), data, kind)
                    results[name].setdefault(phase, []).append(result)
                    print(
                        f"run {run + 1} {name} {phase}: {result['wall']:.1f} s wall, "
                        f"{result['cpu']:.1f} s CPU, {result['texts']} embedded, "
                        f"load {os.getloadavg()[0]:.1f}",
                        file=sys.stderr,
                    )
                if original is not None:
                    site.edit_page(path, original)  # the next tree builds the same site
            loads.append(os.getloadavg()[0])

    print(f"\n{title}, real MiniLM embedder, emulated Firestore + GCS; "
          f"median (min-max) of {args.runs} runs")  # fmt: skip
    for name, phases in results.items():
        full = phases["full"]
        print(f"\n{name}")
        rows = [
            ("full: wall / CPU", f"{_med([r['wall'] for r in full])} / {_med([r['cpu'] for r in full])}"),
            ("full: chunks per second, end to end", _med([r["texts"] / r["wall"] for r in full], "chunks/s")),
            ("full: pages indexed / chunks embedded / failed pages",
             f"{full[0]['pages_changed']} / {full[0]['texts']} / {max(r['pages_failed'] for r in full)}"),
            ("full: inside the embedder / model alone", f"{_med([r['embed_seconds'] for r in full])} / "
             f"{_med([r['model_alone'] for r in full])}"),
            ("full: overhead = wall / model alone - 1",
             _med([100 * (r["wall"] / r["model_alone"] - 1) for r in full], "%", 0)),
            ("full: overhead = (wall - inside the embedder) / inside",
             _med([100 * (r["wall"] - r["embed_seconds"]) / r["embed_seconds"] for r in full], "%", 0)),
            ("full: embedder calls", _med([float(r["embed_calls"]) for r in full], "", 0)),
        ]  # fmt: skip
        for key, label in BREAKDOWN:
            values = [r["source"][key] for r in full if key in r["source"]]
            if values:
                rows.append((f"full: {label}", _med(values)))
        for phase in ("unchanged", "edited"):
            if phase not in phases:
                continue
            values = phases[phase]
            rows.append(
                (
                    f"{phase} re-crawl: wall / CPU / embedded",
                    f"{_med([r['wall'] for r in values], digits=2)} / "
                    f"{_med([r['cpu'] for r in values], digits=2)} / {max(r['texts'] for r in values)}",
                )
            )
        width = max(len(k) for k, _ in rows) + 2
        for key, value in rows:
            print(f"  {key:<{width}}{value}")
    print(f"\nload average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
