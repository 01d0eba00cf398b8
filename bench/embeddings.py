"""Benchmark the knowledge-base core: embedder build/load, embedding throughput, query latency, index
search latency at two sizes, and a small retrieval-quality probe for the fusion choice.

    .venv/bin/python bench/embeddings.py            # default run, about 2-3 minutes on 2 cores
    .venv/bin/python bench/embeddings.py --runs 5 --sizes 465,10000,20000
    .venv/bin/python bench/embeddings.py --runs 9 --embedder-only --compare /tmp/before   # A/B, interleaved
    .venv/bin/python bench/embeddings.py --runs 9 --embedder-only --threads 1,2   # thread counts, interleaved

Every figure is the median of ``--runs`` runs (latencies: p50/p99 over many queries). Synthetic text is
generated from a fixed seed, so two runs on one machine measure the same work.

Building a 10,000-chunk index with real MiniLM vectors would take ~9 minutes of embedding, so the index
benchmark gives chunks vectors mixed from real MiniLM vectors of a few hundred topic sentences (same
dimension, same kind of geometry) and measures what a query costs: MiniLM for the question, Chroma's
HNSW search, BM25 and fusion.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.knowledge import embeddings as embeddings_module
from shared.knowledge.chunker import Chunk, chunk_id, content_hash
from shared.knowledge.embeddings import MINILM_DIMENSION, MINILM_ID, Embedder, MiniLMEmbedder
from shared.knowledge.index import KnowledgeIndex, PageRecord
from shared.knowledge.retrieval import BM25, reciprocal_rank_fusion, tokenize

SEED = 20261123
TOPICS = [
    "installation", "configuration", "authentication", "billing", "networking", "storage", "backups",
    "monitoring", "alerts", "permissions", "webhooks", "deployments", "databases", "caching", "logging",
    "upgrades", "migrations", "quotas", "regions", "encryption", "tokens", "sessions", "search", "exports",
]  # fmt: skip
WORDS = [
    "service", "request", "server", "client", "account", "project", "user", "team", "setting", "option",
    "value", "file", "folder", "command", "flag", "error", "warning", "limit", "quota", "region", "zone",
    "cluster", "node", "instance", "version", "release", "update", "install", "remove", "enable",
    "disable", "create", "delete", "list", "show", "run", "start", "stop", "restart", "check", "default",
    "custom", "private", "public", "secure", "encrypted", "daily", "weekly", "monthly", "hourly",
    "automatic", "manual", "first", "last", "new", "old", "next", "previous", "faster", "slower",
    "larger", "smaller", "available", "missing", "expired", "valid",
]  # fmt: skip
CHUNKS_PER_PAGE = 40  # big pages: fewer Chroma commits, so a 10k build fits the time budget


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def synthetic_text(rng: random.Random, topic: str, target_tokens: int) -> str:
    """Sentences of plausible doc words around a topic; ~1.25 tokens per word for MiniLM."""
    sentences = []
    words = 0
    while words * 1.25 < target_tokens:
        length = rng.randint(8, 18)
        body = rng.choices(WORDS, k=length)
        body.insert(rng.randrange(length), topic)
        if rng.random() < 0.3:
            body.insert(rng.randrange(length), f"{topic[:4].upper()}_{rng.randint(100, 999)}")
        sentences.append(" ".join(body).capitalize() + ".")
        words += len(body)
    return " ".join(sentences)


# --- embedder ---------------------------------------------------------------------------------------


# The modules of shared/knowledge/ that embeddings.py builds on, in import order: the other checkout's
# embedder must run with its own graph builder and table reader, not with this tree's.
EMBEDDER_MODULES = ("word_table", "onnx_graph", "embeddings")


def load_embeddings_module(tree: Path) -> ModuleType:
    """``shared/knowledge/embeddings.py`` of another checkout, imported beside this tree's under its own
    name, so both embedders run in one process and their runs can alternate.

    Its own ``onnx_graph.py`` (and ``word_table.py``, where it has one) are imported the same way and
    stand in for this tree's while its modules import, so it builds and runs the graph its code
    expects (e.g. a graph that still holds the word table)."""
    tag = abs(hash(str(tree)))
    saved = {name: sys.modules.get(f"shared.knowledge.{name}") for name in EMBEDDER_MODULES}
    module: ModuleType | None = None
    try:
        for name in EMBEDDER_MODULES:
            path = tree / "shared" / "knowledge" / f"{name}.py"
            if not path.is_file():
                continue
            spec = importlib.util.spec_from_file_location(f"{name}_{tag}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            sys.modules[f"shared.knowledge.{name}"] = module
            spec.loader.exec_module(module)
    finally:
        for name, original in saved.items():
            if original is None:
                sys.modules.pop(f"shared.knowledge.{name}", None)
            else:
                sys.modules[f"shared.knowledge.{name}"] = original
    assert module is not None, f"no shared/knowledge/embeddings.py under {tree}"
    return module


def mixed_chunks(rng: random.Random, count: int) -> list[str]:
    """Chunks of mixed length, as a real docs site gives: a third short (20-60 tokens: one-line
    sections, headings with a sentence), a third mid-sized (80-180), a third at or past the 256 limit."""
    targets = [
        rng.choice([rng.randint(20, 60), rng.randint(80, 180), rng.randint(240, 320)]) for _ in range(count)
    ]
    return [synthetic_text(rng, rng.choice(TOPICS), target) for target in targets]


def bench_embedder(
    runs: int, compare: Path | None, threads: Sequence[int] = ()
) -> tuple[dict[str, str], MiniLMEmbedder]:
    """Build/load time, throughput on uniform and mixed chunks, query latency; with ``compare``, the same
    for the other tree's embedder, the two alternating run by run (wall and process CPU per figure).
    With ``threads``, this tree's embedder once per onnxruntime intra-op thread count, alternating the
    same way (``0``: the default, one per CPU this process may use)."""
    trees: dict[str, ModuleType] = {"this tree": embeddings_module}
    thread_counts: dict[str, int] = {}
    if compare is not None:
        trees = {"compare": load_embeddings_module(compare), "this tree": embeddings_module}
    for count in threads:
        name = "this tree" if count == 0 else f"this tree, {count} thread{'s' if count > 1 else ''}"
        trees[name] = embeddings_module
        thread_counts[name] = count
    rows: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="askbase-bench-cache-") as tmp:
        embedders: dict[str, Any] = {}
        for name, module in trees.items():
            cache = (
                Path(tmp) / f"warm-{name.replace(' ', '-')}"
            )  # one cache per tree: each deletes other graphs
            started = time.perf_counter()
            embedders[name] = module.MiniLMEmbedder(cache=cache, threads=thread_counts.get(name, 0))
            rows[f"{name}: ONNX graph build from safetensors + load (first start)"] = (
                f"{time.perf_counter() - started:.2f} s"
            )
        loads: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for run in range(max(runs, 3)):
            for name in trees if run % 2 == 0 else reversed(list(trees)):
                cache = Path(tmp) / f"warm-{name.replace(' ', '-')}"
                wall, cpu = time.perf_counter(), time.process_time()
                trees[name].MiniLMEmbedder(cache=cache, threads=thread_counts.get(name, 0))
                loads[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        for name in trees:
            rows[f"{name}: embedder load, graph cached"] = _wall_cpu(loads[name])

        rng = random.Random(SEED)
        uniform = [synthetic_text(rng, rng.choice(TOPICS), 200) for _ in range(96)]
        mixed = mixed_chunks(rng, 96)
        queries = [f"how do I configure {topic} for my team" for topic in TOPICS]
        current = embedders["this tree"]
        tokens = statistics.median(current.token_count(text) for text in uniform)
        mixed_tokens = statistics.median(current.token_count(text) for text in mixed)
        for embedder in embedders.values():
            embedder.embed(uniform[:8])  # warm-up: first run pays for allocations
        if compare is not None:
            texts = [*uniform[:32], *mixed[:32], *queries]
            difference = np.abs(embedders["compare"].embed(texts) - current.embed(texts)).max()
            rows["vectors: max abs difference, compare vs this tree (64 chunks, 24 queries)"] = (
                f"{difference:.2g}"
            )

        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for run in range(runs):
            for name in trees if run % 2 == 0 else reversed(list(trees)):
                embedder = embedders[name]
                for label, texts in (("uniform", uniform), ("mixed", mixed)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    embedder.embed(texts)
                    samples.setdefault((name, label), []).append(
                        (time.perf_counter() - wall, time.process_time() - cpu)
                    )
                wall, cpu = time.perf_counter(), time.process_time()
                for query in queries:
                    embedder.embed([query])
                samples.setdefault((name, "query"), []).append(
                    ((time.perf_counter() - wall) / len(queries), (time.process_time() - cpu) / len(queries))
                )
        for name in trees:
            for label, texts, what in (
                ("uniform", uniform, f"~{tokens:.0f}-token chunks"),
                ("mixed", mixed, f"mixed chunks (median {mixed_tokens:.0f} tokens, 20-320)"),
            ):
                values = samples[(name, label)]
                rate = statistics.median(len(texts) / wall for wall, _ in values)
                cpu_ms = statistics.median(1000 * cpu / len(texts) for _, cpu in values)
                rates = [len(texts) / w for w, _ in values]
                spread = f"{min(rates):.1f}-{max(rates):.1f}"
                rows[f"{name}: embedding, {what}"] = (
                    f"{rate:.1f} chunks/s ({spread}), CPU {cpu_ms:.0f} ms/chunk"
                )
            values = samples[(name, "query")]
            rows[f"{name}: embedding one short query"] = (
                f"{statistics.median(w for w, _ in values) * 1000:.1f} ms, "
                f"CPU {statistics.median(c for _, c in values) * 1000:.1f} ms"
            )
    return rows, embedders["this tree"]


def _wall_cpu(values: list[tuple[float, float]]) -> str:
    wall = statistics.median(w for w, _ in values)
    return f"{wall:.2f} s (CPU {statistics.median(c for _, c in values):.2f} s)"


# --- index -----------------------------------------------------------------------------------------


class MixedVectorEmbedder:
    """Pretends to be MiniLM for building big indexes fast: each text's vector is a fixed mix of real
    MiniLM vectors of topic sentences plus noise. Never used to answer: the index is reopened with the
    real embedder before searching."""

    id = MINILM_ID
    dimension = MINILM_DIMENSION

    def __init__(self, real: Embedder) -> None:
        sentences = [f"{topic} {word}" for topic in TOPICS for word in WORDS[::6]]
        self._basis = real.embed(sentences)
        self._by_topic = {topic: i for i, topic in enumerate(TOPICS)}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        per_topic = len(self._basis) // len(TOPICS)
        for row, text in enumerate(texts):
            rng = np.random.default_rng(int(content_hash(text)[:12], 16))
            topic = next((t for t in TOPICS if t in text), TOPICS[0])
            base = self._by_topic[topic] * per_topic
            picks = self._basis[base + rng.choice(per_topic, size=3, replace=False)]
            vector = picks.mean(axis=0) + rng.normal(0, 0.02, self.dimension).astype(np.float32)
            out[row] = vector / np.linalg.norm(vector)
        return out


def build_synthetic_index(path: Path, size: int, fake: MixedVectorEmbedder) -> float:
    rng = random.Random(SEED + size)
    started = time.perf_counter()
    with KnowledgeIndex.open(path, fake) as index:
        for page_no in range(math.ceil(size / CHUNKS_PER_PAGE)):
            url = f"https://docs.example.com/{page_no}"
            topic = TOPICS[page_no % len(TOPICS)]
            count = min(CHUNKS_PER_PAGE, size - page_no * CHUNKS_PER_PAGE)
            chunks = []
            for position in range(count):
                text = f"Guide {page_no} > {topic.title()} {position}\n\n" + synthetic_text(rng, topic, 200)
                text_hash = content_hash(text)
                chunks.append(
                    Chunk(
                        id=chunk_id(url, position, text_hash),
                        text=text,
                        url=url,
                        title=f"Guide {page_no}",
                        anchor=f"s{position}",
                        source="docs",
                        content_hash=text_hash,
                        position=position,
                    )
                )
            record = PageRecord(
                url, "docs", content_hash(url + str(size)), f"Guide {page_no}", 0, None, None, ""
            )
            index.upsert_page(record, chunks)
    return time.perf_counter() - started


def bench_index(sizes: Sequence[int], runs: int, embedder: MiniLMEmbedder) -> dict[str, str]:
    rows: dict[str, str] = {}
    fake = MixedVectorEmbedder(embedder)
    rng = random.Random(SEED)
    questions = [
        f"how do I {rng.choice(WORDS)} the {rng.choice(TOPICS)} {rng.choice(WORDS)}" for _ in range(150)
    ] + [f"what does {topic[:4].upper()}_{rng.randint(100, 999)} mean" for topic in TOPICS * 2]
    with tempfile.TemporaryDirectory(prefix="askbase-bench-index-") as tmp:
        for size in sizes:
            path = Path(tmp) / f"index-{size}"
            build_s = build_synthetic_index(path, size, fake)
            open_times = []
            p50s, p99s = [], []
            for _ in range(runs):
                started = time.perf_counter()
                index = KnowledgeIndex.open(path, embedder)
                open_times.append(time.perf_counter() - started)
                try:
                    index.search("warm up", k=5)
                    timings = []
                    for question in questions:
                        started = time.perf_counter()
                        index.search(question, k=5)
                        timings.append((time.perf_counter() - started) * 1000)
                    p50s.append(percentile(timings, 50))
                    p99s.append(percentile(timings, 99))
                finally:
                    index.close()
            disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
            rows[f"{size:,} chunks: write (Chroma + sidecar, vectors precomputed)"] = f"{build_s:.1f} s"
            rows[f"{size:,} chunks: open (load chunks, build BM25)"] = (
                f"{statistics.median(open_times):.2f} s"
            )
            rows[f"{size:,} chunks: search p50 / p99 (embed + HNSW + BM25)"] = (
                f"{statistics.median(p50s):.1f} / {statistics.median(p99s):.1f} ms"
            )
            rows[f"{size:,} chunks: directory size"] = f"{disk:.1f} MB"
    return rows


# --- retrieval quality -----------------------------------------------------------------------------

PROBE_SECTIONS = {
    "System requirements": "Acme runs on Linux and macOS. It needs Python 3.11 and 2 GB of free disk space.",
    "Running the installer": "Download the installer and run it with administrator rights.",
    "Upgrading": "To move to a newer release, stop the services, run the installer again and restart.",
    "Network errors": "Connection timeouts usually mean a proxy blocks outgoing traffic on port 443.",
    "Authentication failures": "An expired API token is rejected with HTTP 401; create a new token.",
    "Invoices": "Invoices are emailed on the first day of each month as PDF attachments.",
    "Refund policy": "If you cancel within 30 days we return the full amount to your payment method.",
    "Changing plans": "Plan changes take effect immediately and are prorated on the next invoice.",
    "Our office": "Our office is in Lisbon, a short walk from the river. We have a cat named Pixel.",
    "Hiring": "We are hiring engineers who enjoy building developer tools.",
}
PROBE_PARAPHRASES = [
    ("Can I get my money back?", "Refund policy"),
    ("Does it work on a Mac?", "System requirements"),
    ("how do I update to the latest version", "Upgrading"),
    ("my API key stopped working", "Authentication failures"),
    ("requests hang behind the corporate firewall", "Network errors"),
    ("where is the company located", "Our office"),
    ("when will I receive my bill", "Invoices"),
    ("switch to a bigger subscription", "Changing plans"),
    ("what is needed to install acme", "System requirements"),
    ("how to run the installer", "Running the installer"),
]
PROBE_THINGS = [
    "workspace quota", "build cache", "artifact store", "deploy queue", "webhook relay", "audit log",
    "token vault", "metrics agent", "search shard", "backup job", "license server", "mail relay",
    "image registry", "job scheduler", "config store", "dns resolver",
]  # fmt: skip
PROBE_STATES = ["is full", "timed out", "is unreachable", "rejected the request", "is misconfigured"]


def bench_quality(embedder: MiniLMEmbedder) -> dict[str, str]:
    """Top-1 accuracy of each retriever on exact-code and paraphrase questions (34 probes)."""
    ids, texts = [], []
    for i, thing in enumerate(PROBE_THINGS):
        code = f"ACME_ERR_{7700 + 3 * i}"
        ids.append(code)
        texts.append(
            f"Error reference > {code}\n\nThe {code} error is raised when the {thing} "
            f"{PROBE_STATES[i % len(PROBE_STATES)]}. Check the {thing} settings and retry."
        )
    for heading, body in PROBE_SECTIONS.items():
        ids.append(heading)
        texts.append(f"Acme docs > {heading}\n\n{body}")
    probes = [(f"What does {code} mean?", code) for code in ids[: len(PROBE_THINGS)]]
    probes += [(code, code) for code in ids[: len(PROBE_THINGS) : 2]]
    probes += PROBE_PARAPHRASES

    vectors = embedder.embed(texts)
    bm25 = BM25(ids, texts)
    correct = {"vector only": 0, "BM25 only": 0, "reciprocal rank fusion": 0, "score fusion (used)": 0}
    for question, gold in probes:
        cosine = vectors @ embedder.embed([question])[0]
        vector_rank = [ids[i] for i in np.argsort(-cosine)]
        keyword = bm25.top(question, len(ids))
        normalised = dict(bm25.top_normalized(question, len(ids)))
        rrf = reciprocal_rank_fusion([vector_rank[:30], [doc for doc, _ in keyword[:30]]])
        fused = {
            doc: 0.5 * max(0.0, float(cosine[i])) + 0.5 * normalised.get(doc, 0.0)
            for i, doc in enumerate(ids)
        }
        correct["vector only"] += vector_rank[0] == gold
        correct["BM25 only"] += bool(keyword) and keyword[0][0] == gold
        correct["reciprocal rank fusion"] += rrf[0][0] == gold
        correct["score fusion (used)"] += max(fused, key=lambda doc: fused[doc]) == gold
    assert all(tokenize(q) for q, _ in probes)
    return {
        f"top-1 on {len(probes)} probes: {name}": f"{hits}/{len(probes)}" for name, hits in correct.items()
    }


# --- main ------------------------------------------------------------------------------------------


def print_table(rows: dict[str, str]) -> None:
    width = max(len(key) for key in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 20}")
    for key, value in rows.items():
        print(f"{key.ljust(width)}  {value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is shown")
    parser.add_argument("--sizes", default="465,10000", help="index sizes in chunks, comma-separated")
    parser.add_argument(
        "--compare", type=Path, help="another checkout: its embedder alternates with this one's, run by run"
    )
    parser.add_argument("--embedder-only", action="store_true", help="skip the index and quality parts")
    parser.add_argument(
        "--threads", default="", help="onnxruntime thread counts to alternate, e.g. 1,2 (0: one per CPU)"
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]

    started = time.perf_counter()
    threads = [int(count) for count in args.threads.split(",") if count.strip()]
    rows, embedder = bench_embedder(args.runs, args.compare, threads)
    if not args.embedder_only:
        rows.update(bench_index(sizes, args.runs, embedder))
        rows.update(bench_quality(embedder))
    print_table(rows)
    load = os.getloadavg()[0]
    print(
        f"\n(total {time.perf_counter() - started:.0f} s, median of {args.runs} runs, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end: figures above ~1 per CPU are noisy)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
