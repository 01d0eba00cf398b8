"""The PostgreSQL eval set: its format and its fidelity to the installed docs, and a ten-page slice run
through the same path as ``bench/eval_postgresql.py`` (served on loopback, crawled by the real crawler,
embedded with MiniLM, answered by the extractive answerer).

The whole set (1,169 pages, many minutes of embedding) is a benchmark, not a test; the slice keeps the
set's format, the loopback crawl and the scoring tested on every run. The docs come from Debian's
``postgresql-doc-15`` (``scripts/system-deps.sh`` installs it); without it these tests fail and say so.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from shared.config import Settings
from shared.knowledge.file_corpus import crawl_html_files
from shared.knowledge.index import KnowledgeIndex
from shared.qa.eval_corpus import CorpusMissing, open_eval_index
from shared.qa.eval_sets import EvalSet, load_eval_set
from shared.qa.evaluation import run_eval
from shared.qa.extractive import ExtractiveAnswerer
from shared.qa.local_asker import LocalAsker

ROOT = Path(__file__).resolve().parent.parent
PG_SET = ROOT / "evals" / "postgresql.json"
PG_BASELINE = ROOT / "evals" / "postgresql.baseline.json"
# Ten answerable cases whose expected pages are small (the slice embeds in seconds) and three
# questions the docs do not answer.
SLICE_ANSWERABLE = (
    "varchar-vs-text",
    "scram",
    "partial-index",
    "brin-when",
    "gen-random-uuid",
    "pgpass",
    "alter-system",
    "truncate",
    "enum-type",
    "limit-offset",
)
SLICE_UNANSWERABLE = ("django", "pgvector", "kafka-debezium")


@pytest.fixture(scope="module")
def pg_set() -> EvalSet:
    eval_set = load_eval_set(PG_SET)
    assert eval_set.corpus is not None
    if not eval_set.corpus.html_dir.is_dir():
        pytest.fail(
            f"{eval_set.corpus.html_dir} is missing: apt-get install postgresql-doc-15 "
            "(scripts/system-deps.sh installs it when run as root)",
            pytrace=False,
        )
    return eval_set


def _page_text(path: Path) -> str:
    """The visible text of a page, whitespace-folded (good enough to check that a term is there)."""
    raw = re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))
    return " ".join(html.unescape(raw).split()).lower()


def test_the_set_is_big_enough_and_true_to_the_installed_docs(pg_set: EvalSet) -> None:
    assert pg_set.corpus is not None and pg_set.corpus.crawl
    assert pg_set.corpus.package == "postgresql-doc-15"
    answerable = [c for c in pg_set.cases if not c.unanswerable]
    assert len(answerable) >= 80 and len(pg_set.cases) - len(answerable) >= 15
    assert all(c.expect_terms for c in answerable)
    docs = pg_set.corpus.html_dir
    texts: dict[str, str] = {}
    for case in answerable:
        pages = []
        for expected in case.expect:
            page, _, anchor = expected.partition("#")
            path = docs / page
            assert path.is_file(), f"{case.id}: {page} is not in the installed docs"
            if anchor:
                assert f'id="{anchor}"' in path.read_text(encoding="utf-8"), f"{case.id}: no #{anchor}"
            pages.append(texts.setdefault(page, _page_text(path)))
        for term in case.expect_terms:
            alternatives = [a.strip().lower() for a in term.split("|")]
            assert any(a in text for a in alternatives for text in pages), (
                f"{case.id}: {term!r} not on its pages"
            )


def test_a_missing_corpus_says_which_package_installs_it(tmp_path: Path, pg_set: EvalSet) -> None:
    assert pg_set.corpus is not None
    missing = replace(pg_set.corpus, html_dir=tmp_path / "nowhere")
    with pytest.raises(CorpusMissing, match="apt-get install postgresql-doc-15"):
        open_eval_index(Settings(data_dir=str(tmp_path)), missing)


@pytest.fixture(scope="module")
def slice_set(pg_set: EvalSet, tmp_path_factory: pytest.TempPathFactory) -> EvalSet:
    """The slice's cases, and its pages copied under a start page that links them (the rest of the
    docs is not there: their links answer 404, as a crawl of a partial mirror would see)."""
    assert pg_set.corpus is not None
    by_id = {case.id: case for case in pg_set.cases}
    cases = [by_id[i] for i in (*SLICE_ANSWERABLE, *SLICE_UNANSWERABLE)]
    root = tmp_path_factory.mktemp("pg-slice")
    pages = sorted({case.expect[0].split("#", 1)[0] for case in cases if case.expect})
    for page in pages:
        shutil.copy(pg_set.corpus.html_dir / page, root / page)
    links = "".join(f'<li><a href="{page}">{page}</a></li>' for page in pages)
    (root / "index.html").write_text(f"<html><body><ul>{links}</ul></body></html>", encoding="utf-8")
    corpus = replace(pg_set.corpus, html_dir=root, package=None)
    return EvalSet(name="postgresql-slice", cases=cases, corpus=corpus)


@pytest.fixture(scope="module")
def slice_index(slice_set: EvalSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeIndex]:
    assert slice_set.corpus is not None
    settings = Settings(data_dir=str(tmp_path_factory.mktemp("pg-slice-data")))
    index = open_eval_index(settings, slice_set.corpus)
    yield index
    index.close()


def test_the_slice_is_crawled_over_loopback_once(slice_set: EvalSet, slice_index: KnowledgeIndex) -> None:
    assert slice_set.corpus is not None
    indexed = set(slice_index.pages())
    # Every linked page, under the site's own name (not the loopback port), and nothing else with text.
    expected = {f"http://postgresql.askbase.test/{p.name}" for p in slice_set.corpus.html_dir.glob("*.html")}
    assert indexed <= expected and len(indexed) >= len(SLICE_ANSWERABLE)
    # A second crawl re-checks every page with a conditional GET and embeds nothing.
    again = crawl_html_files(
        slice_index, slice_set.corpus.html_dir, slice_set.corpus.base_url, start=slice_set.corpus.start
    )
    assert again.embedded == 0 and again.indexed == 0 and again.removed == 0
    assert again.pages == len(indexed) + (0 if any(u.endswith("/index.html") for u in indexed) else 1)


def test_the_slice_answers_and_refuses(slice_set: EvalSet, slice_index: KnowledgeIndex) -> None:
    asker = LocalAsker(slice_index, ExtractiveAnswerer(), Settings().retrieval_top_k)
    report = run_eval(slice_set, asker.respond, "extractive")
    by_id = {r.id: r for r in report.results}
    # Measured 0.9 / 0.5 (pgpass: auth-password.html ranks first; alter-system quotes the description's
    # first sentence, not the one naming postgresql.auto.conf). Answer-first was 0.7 while a page
    # was one section: with DocBook's sections kept, scram, brin-when and enum-type quote the lead
    # sentence of the section retrieval ranks first, which lacks the term (on the whole set answer
    # first rose, 0.385 -> 0.448). The bounds leave room for one more miss, not for a broken path.
    assert report.metrics["hit@1"] is not None and report.metrics["hit@1"] >= 0.8, report.metrics
    assert report.metrics["answer_first"] is not None and report.metrics["answer_first"] >= 0.4
    assert report.metrics["wrong_refusal"] == 0.0
    assert report.metrics["correct_refusal"] == 1.0, [i for i in SLICE_UNANSWERABLE if not by_id[i].refused]
    for case_id in SLICE_ANSWERABLE:
        assert by_id[case_id].cited[0].startswith("http://postgresql.askbase.test/")


def test_the_baseline_is_a_report_of_this_set() -> None:
    baseline = json.loads(PG_BASELINE.read_text(encoding="utf-8"))
    ids = {case.id for case in load_eval_set(PG_SET).cases}
    assert baseline["set"] == "postgresql"
    assert {r["id"] for r in baseline["results"]} == ids
