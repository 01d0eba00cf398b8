"""Answer quality on the PostgreSQL 15 documentation: ``evals/postgresql.json`` against the real docs.

    .venv/bin/python bench/eval_postgresql.py                         # index once (cached), run, print
    .venv/bin/python bench/eval_postgresql.py --json report.json      # also save the full report
    .venv/bin/python bench/eval_postgresql.py --compare evals/postgresql.baseline.json
    .venv/bin/python bench/eval_postgresql.py --data-dir /tmp/pg-eval --index-only

The corpus is Debian's ``postgresql-doc-15`` (1,169 HTML pages under
``/usr/share/doc/postgresql-doc-15/html``; ``apt-get install postgresql-doc-15``, or run
``scripts/system-deps.sh`` as root). It is served on loopback by the static server the tests use and
crawled from ``index.html`` by the real crawler (link crawl, conditional GETs), extracted, chunked and
embedded like a scrape does (:func:`shared.knowledge.file_corpus.crawl_html_files`). The index is cached
under ``<data dir>/local-index/``: the first run embeds every chunk (many minutes on two cores), later
runs re-check each page with one 304 and embed nothing. Then every case goes through
:func:`shared.qa.ask.answer_question` (the ``/api/ask`` path) exactly as ``askbase eval`` runs it, and
the harness's table is printed. ``askbase eval evals/postgresql.json`` does the same run.

Not part of the test command: ``tests/test_evaluation_postgresql.py`` runs a ten-page slice instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.config import Settings  # noqa: E402
from shared.qa.answerers import get_answerer  # noqa: E402
from shared.qa.eval_corpus import CorpusMissing, open_eval_index  # noqa: E402
from shared.qa.eval_sets import load_eval_set  # noqa: E402
from shared.qa.evaluation import compare, flipped_cases, format_table, run_eval  # noqa: E402
from shared.qa.local_asker import LocalAsker  # noqa: E402

DEFAULT_SET = ROOT / "evals" / "postgresql.json"
log = logging.getLogger("bench.eval_postgresql")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("set", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--data-dir", help="ASKBASE_DATA_DIR for the cached index (default: the setting)")
    parser.add_argument("--answerer", default="extractive", choices=["extractive", "gemini"])
    parser.add_argument("--json", type=Path, help="write the full report (askbase eval --json) here")
    parser.add_argument("--compare", type=Path, help="a saved report; exit 1 on a regression")
    parser.add_argument("--index-only", action="store_true", help="build or update the index, run nothing")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per crawled page otherwise
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    eval_set = load_eval_set(args.set)
    if eval_set.corpus is None:
        parser.error(f"{args.set} names no corpus")

    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 10 or done == total:
            last[0] = time.monotonic()
            log.info("crawl and index: %d/%d pages", done, total)

    started = time.perf_counter()
    try:
        index = open_eval_index(settings, eval_set.corpus, progress)
    except CorpusMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("index ready in %.1f s: %d chunks", time.perf_counter() - started, index.chunk_count())
    try:
        if args.index_only:
            return 0
        asker = LocalAsker(index, get_answerer(args.answerer, settings), settings.retrieval_top_k)
        report = run_eval(eval_set, asker.respond, args.answerer)
    finally:
        index.close()
    print(format_table(report))
    if args.json:
        args.json.write_text(
            json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    if args.compare:
        baseline = json.loads(args.compare.read_text(encoding="utf-8"))
        regressions = compare(report.metrics, baseline)
        for r in regressions:
            print(f"regression: {r.metric} {r.baseline:.3f} -> {r.current}", file=sys.stderr)
        flipped = flipped_cases(report, baseline)
        if flipped:
            print(f"cases that passed in the baseline and fail now: {', '.join(flipped)}", file=sys.stderr)
        if regressions:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
