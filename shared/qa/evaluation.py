"""Answer-quality evaluation: eval sets, per-case scoring, the metrics ``askbase eval`` prints, and the
regression check against a baseline.

An eval set is a JSON file::

    {
      "name": "sample-site",
      "corpus": {"html_dir": "../shared/devstack/sample_site", "base_url": "http://sample.askbase.test/"},
      "cases": [
        {"id": "deploy", "question": "How do I deploy askbase?",
         "expect": ["deploy.html#deploy"], "expect_terms": ["pulumi up"]},
        {"id": "slack", "question": "Does askbase support Slack?", "unanswerable": true},
        {"id": "cost-after-deploy", "previous": "How do I deploy askbase?",
         "question": "How much does it cost?", "expect": ["faq.html#how-much-does-it-cost"]}
      ]
    }

* ``expect``: the pages that answer the case, optionally at a ``#section``. A relative entry matches
  any cited URL whose path ends with it (so a set works against an index built from the files, the
  local stack's crawl of the same site, or a deployment); an absolute one must match scheme and host too.
  Pages are what hit@k counts; the section is reported on its own (``section_hit@1``).
* ``expect_terms``: what a reader must see in the first :data:`ANSWER_FIRST_CHARS` characters of the
  answer (case-insensitive; ``"a|b"`` accepts either). ``expect_prefix``: how the answer must start
  (``"No."`` for a question the docs answer with a plain no).
* ``unanswerable: true``: the docs do not answer it; the right answer is a refusal.
* ``previous``: the question asked just before in the same conversation (follow-up handling).
* ``corpus`` (optional): a directory of HTML files (relative to the set file, or absolute) and the base
  URL they are indexed under when ``askbase eval`` builds the index itself. With ``"crawl": true`` the
  directory is served on loopback and crawled by the real crawler from ``start`` (a path below the base
  URL) instead of read file by file (:mod:`shared.knowledge.file_corpus`); ``package`` names the system
  package that installs the directory, for the message when it is missing.

Metrics (``answerable`` = cases with ``expect``): hit@k and MRR@5 of the first expected page among the
distinct pages cited, in citation order (a refusal cites nothing: a miss); correct-refusal rate over
unanswerable cases; wrong-refusal rate over answerable ones; citation precision over the sources cited
for answerable cases (a source counts when it is on an expected page or its passage contains an expected
term: it supports the answer); answer-first rate over answerable cases with ``expect_terms``; and the
share of cases that pass all of their own checks. Latency p50/p95 are reported but never compared:
they measure the machine as much as the code.

Everything here is pure except :func:`load_eval_set` (reads the file): the answering is a callable, so
the CLI, the tests and the benchmarks run the same scoring over whatever answers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# What a reader sees before deciding whether to read on: the "answer first" window.
ANSWER_FIRST_CHARS = 300
K_VALUES = (1, 3, 5)
# Metrics where higher is better; everything else compared is lower-is-better.
HIGHER_IS_BETTER = (
    "hit@1",
    "hit@3",
    "hit@5",
    "mrr@5",
    "section_hit@1",
    "correct_refusal",
    "citation_precision",
    "answer_first",
    "cases_passed",
)
LOWER_IS_BETTER = ("wrong_refusal",)
DEFAULT_TOLERANCE = 0.02


class EvalSetError(ValueError):
    """The eval set file is malformed; the message names the case."""


@dataclass(frozen=True)
class EvalCase:
    """One question and what a right answer looks like (see the module docstring)."""

    id: str
    question: str
    expect: tuple[str, ...] = ()
    unanswerable: bool = False
    expect_terms: tuple[str, ...] = ()
    expect_prefix: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class CorpusSpec:
    """HTML files an eval set is written against, indexed under ``base_url``: read file by file, or with
    ``crawl`` served on loopback and crawled from ``start``."""

    html_dir: Path
    base_url: str
    pattern: str = "*.html"
    crawl: bool = False
    start: str = ""
    package: str | None = None


@dataclass(frozen=True)
class EvalSet:
    """A named list of cases and, optionally, the corpus they are about."""

    name: str
    cases: list[EvalCase]
    corpus: CorpusSpec | None = None


@dataclass(frozen=True)
class CitedSource:
    """One source an answer cites: its URL (with ``#anchor``), title and the passage text."""

    url: str
    title: str = ""
    text: str = ""


@dataclass(frozen=True)
class Response:
    """What answering one case produced."""

    answer: str
    refused: bool
    sources: list[CitedSource]
    seconds: float


# (question, previous question or None) -> Response
Responder = Callable[[str, str | None], Response]


@dataclass
class CaseResult:
    """One case scored. ``rank`` is the 1-based position of the first expected page among the distinct
    cited pages (None: not cited); ``checks`` lists the case's own checks that failed."""

    id: str
    question: str
    unanswerable: bool
    refused: bool
    answer: str
    cited: list[str]
    rank: int | None
    section_hit: bool | None
    answer_first: bool | None
    supported: int
    seconds: float
    failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed


@dataclass
class EvalReport:
    """The scored run: per-case results and the metrics over them."""

    name: str
    answerer: str
    results: list[CaseResult]
    metrics: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "answerer": self.answerer,
            "cases": len(self.results),
            "answerable": sum(not r.unanswerable for r in self.results),
            "unanswerable": sum(r.unanswerable for r in self.results),
            "metrics": self.metrics,
            "results": [asdict(r) | {"passed": r.passed} for r in self.results],
        }


# --- loading --------------------------------------------------------------------------------------


def _strings(value: Any, what: str, case_id: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise EvalSetError(f"case {case_id!r}: {what} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def parse_eval_set(data: Any, base_dir: Path, default_name: str = "eval") -> EvalSet:
    """Validate an eval set document (already parsed JSON); relative corpus paths are under ``base_dir``."""
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise EvalSetError('an eval set is a JSON object with a "cases" list')
    cases: list[EvalCase] = []
    seen: set[str] = set()
    for position, raw in enumerate(data["cases"], 1):
        if not isinstance(raw, dict):
            raise EvalSetError(f"case #{position} is not an object")
        case_id = str(raw.get("id") or f"case-{position}")
        if case_id in seen:
            raise EvalSetError(f"case id {case_id!r} is used twice")
        seen.add(case_id)
        question = raw.get("question")
        if not isinstance(question, str) or not question.strip():
            raise EvalSetError(f"case {case_id!r}: question must be a non-empty string")
        unanswerable = raw.get("unanswerable", False)
        if not isinstance(unanswerable, bool):
            raise EvalSetError(f"case {case_id!r}: unanswerable must be true or false")
        expect = _strings(raw.get("expect"), "expect", case_id)
        if unanswerable == bool(expect):
            raise EvalSetError(f"case {case_id!r}: give either expect (pages) or unanswerable: true")
        previous = raw.get("previous")
        if previous is not None and (not isinstance(previous, str) or not previous.strip()):
            raise EvalSetError(f"case {case_id!r}: previous must be a non-empty string")
        prefix = raw.get("expect_prefix")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.strip()):
            raise EvalSetError(f"case {case_id!r}: expect_prefix must be a non-empty string")
        cases.append(
            EvalCase(
                id=case_id,
                question=question.strip(),
                expect=expect,
                unanswerable=unanswerable,
                expect_terms=_strings(raw.get("expect_terms"), "expect_terms", case_id),
                expect_prefix=prefix.strip() if prefix else None,
                previous=previous.strip() if previous else None,
            )
        )
    if not cases:
        raise EvalSetError("the eval set has no cases")
    corpus = None
    raw_corpus = data.get("corpus")
    if raw_corpus is not None:
        if (
            not isinstance(raw_corpus, dict)
            or not raw_corpus.get("html_dir")
            or not raw_corpus.get("base_url")
        ):
            raise EvalSetError("corpus needs html_dir and base_url")
        crawl = raw_corpus.get("crawl", False)
        if not isinstance(crawl, bool):
            raise EvalSetError("corpus crawl must be true or false")
        package = raw_corpus.get("package")
        corpus = CorpusSpec(
            html_dir=(base_dir / str(raw_corpus["html_dir"])).resolve(),
            base_url=str(raw_corpus["base_url"]),
            pattern=str(raw_corpus.get("pattern") or "*.html"),
            crawl=crawl,
            start=str(raw_corpus.get("start") or ""),
            package=str(package) if package else None,
        )
    return EvalSet(name=str(data.get("name") or default_name), cases=cases, corpus=corpus)


def load_eval_set(path: Path) -> EvalSet:
    """Read and validate the eval set at ``path``; raises :class:`EvalSetError` or OSError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_eval_set(data, path.parent, default_name=path.stem)


# --- scoring --------------------------------------------------------------------------------------


def _page_and_section(url: str) -> tuple[str, str, str, str]:
    """(scheme, host, path, fragment) with the path's trailing slash and ``index.html`` folded."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if not parts.netloc and not path.startswith("/"):
        path = "/" + path  # a relative expectation: "index.html" is "/index.html" below the base
    if path.endswith("/index.html"):
        path = path[: -len("index.html")]
    return parts.scheme.lower(), parts.netloc.lower(), path, parts.fragment


def page_matches(cited: str, expected: str) -> bool:
    """Whether ``cited`` is on the page ``expected`` names (sections ignored; see the module docstring)."""
    scheme, host, path, _ = _page_and_section(cited)
    e_scheme, e_host, e_path, _ = _page_and_section(expected)
    if e_host:
        return (scheme, host, path) == (e_scheme, e_host, e_path)
    if e_path == "/":
        return path == "/"
    return path == e_path or path.endswith(e_path)


def section_matches(cited: str, expected: str) -> bool:
    """Whether ``cited`` is the section ``expected`` names (its page when it names none)."""
    if not page_matches(cited, expected):
        return False
    fragment = _page_and_section(expected)[3]
    return not fragment or _page_and_section(cited)[3] == fragment


def term_present(text: str, term: str) -> bool:
    """``term`` (``"a|b"``: any alternative) occurs in ``text``, case-insensitively."""
    folded = " ".join(text.lower().split())
    return any(" ".join(alt.lower().split()) in folded for alt in term.split("|") if alt.strip())


def score_case(case: EvalCase, response: Response) -> CaseResult:
    """Score one response against its case (pure)."""
    cited = [source.url for source in response.sources]
    pages: list[str] = []
    for url in cited:
        page = url.split("#", 1)[0]
        if page not in pages:
            pages.append(page)
    rank = None
    section_hit = None
    answer_first = None
    supported = 0
    failed: list[str] = []
    if case.unanswerable:
        if not response.refused:
            failed.append("answered an unanswerable question")
    else:
        rank = next(
            (i for i, page in enumerate(pages, 1) if any(page_matches(page, e) for e in case.expect)), None
        )
        section_hit = bool(cited) and any(section_matches(cited[0], e) for e in case.expect)
        for source in response.sources:
            if any(page_matches(source.url, e) for e in case.expect) or any(
                term_present(source.text, t) for t in case.expect_terms
            ):
                supported += 1
        if response.refused:
            failed.append("refused an answerable question")
        elif rank is None:
            failed.append("expected page not cited")
        if case.expect_terms:
            window = response.answer[:ANSWER_FIRST_CHARS]
            answer_first = not response.refused and all(term_present(window, t) for t in case.expect_terms)
            if not answer_first:
                missing = [t for t in case.expect_terms if not term_present(window, t)]
                failed.append(f"first {ANSWER_FIRST_CHARS} chars lack {missing}")
        if case.expect_prefix and not response.answer.lstrip().startswith(case.expect_prefix):
            failed.append(f"answer does not start with {case.expect_prefix!r}")
    return CaseResult(
        id=case.id,
        question=case.question,
        unanswerable=case.unanswerable,
        refused=response.refused,
        answer=response.answer,
        cited=cited,
        rank=rank,
        section_hit=section_hit,
        answer_first=answer_first,
        supported=supported,
        seconds=round(response.seconds, 4),
        failed=failed,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0-1) of ``values`` by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def summarize(results: Sequence[CaseResult]) -> dict[str, float | None]:
    """The metrics over scored cases (see the module docstring)."""
    answerable = [r for r in results if not r.unanswerable]
    unanswerable = [r for r in results if r.unanswerable]
    metrics: dict[str, float | None] = {}
    for k in K_VALUES:
        metrics[f"hit@{k}"] = _rate(
            sum(r.rank is not None and r.rank <= k for r in answerable), len(answerable)
        )
    mrr = sum(1.0 / r.rank for r in answerable if r.rank is not None and r.rank <= 5)
    metrics["mrr@5"] = round(mrr / len(answerable), 4) if answerable else None
    metrics["section_hit@1"] = _rate(sum(bool(r.section_hit) for r in answerable), len(answerable))
    metrics["correct_refusal"] = _rate(sum(r.refused for r in unanswerable), len(unanswerable))
    metrics["wrong_refusal"] = _rate(sum(r.refused for r in answerable), len(answerable))
    cited = sum(len(r.cited) for r in answerable)
    metrics["citation_precision"] = _rate(sum(r.supported for r in answerable), cited)
    with_terms = [r for r in answerable if r.answer_first is not None]
    metrics["answer_first"] = _rate(sum(bool(r.answer_first) for r in with_terms), len(with_terms))
    metrics["cases_passed"] = _rate(sum(r.passed for r in results), len(results))
    latencies = [r.seconds * 1000 for r in results]
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    metrics["latency_p50_ms"] = round(p50, 1) if p50 is not None else None
    metrics["latency_p95_ms"] = round(p95, 1) if p95 is not None else None
    return metrics


def run_eval(
    eval_set: EvalSet,
    respond: Responder,
    answerer: str,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Answer every case with ``respond`` and score it. ``respond`` measures its own latency."""
    results = []
    for done, case in enumerate(eval_set.cases, 1):
        results.append(score_case(case, respond(case.question, case.previous)))
        if progress is not None:
            progress(done, len(eval_set.cases))
    return EvalReport(eval_set.name, answerer, results, summarize(results))


def timed(call: Callable[[], Response]) -> Response:
    """Run ``call`` and put its wall time in the response (for responders that do not time themselves)."""
    started = time.perf_counter()
    response = call()
    return Response(response.answer, response.refused, response.sources, time.perf_counter() - started)


# --- comparing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Regression:
    """A metric that got worse than the baseline by more than the tolerance."""

    metric: str
    baseline: float
    current: float | None


def compare(
    metrics: dict[str, float | None], baseline: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE
) -> list[Regression]:
    """Metrics worse than ``baseline`` (an :meth:`EvalReport.to_json` document or its ``metrics``) by more
    than ``tolerance`` (absolute, on rates in 0-1). A metric the baseline lacks is not compared."""
    base = baseline.get("metrics", baseline)
    regressions = []
    for name in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
        before = base.get(name)
        if not isinstance(before, int | float):
            continue
        now = metrics.get(name)
        if now is None:
            regressions.append(Regression(name, float(before), None))
        else:
            worse = now < before - tolerance if name in HIGHER_IS_BETTER else now > before + tolerance
            if worse:
                regressions.append(Regression(name, float(before), now))
    return regressions


def flipped_cases(report: EvalReport, baseline: dict[str, Any]) -> list[str]:
    """Ids of cases that passed in ``baseline`` and fail now (to say *what* regressed)."""
    before = {r.get("id"): r.get("passed") for r in baseline.get("results", []) if isinstance(r, dict)}
    return [r.id for r in report.results if before.get(r.id) is True and not r.passed]


def format_table(report: EvalReport) -> str:
    """The metrics as an aligned two-column table for a terminal."""
    data = report.to_json()
    lines = [
        f"eval set {report.name}: {data['cases']} cases ({data['answerable']} answerable, "
        f"{data['unanswerable']} unanswerable), answerer {report.answerer}",
    ]
    for name, value in report.metrics.items():
        shown = "—" if value is None else (f"{value:.1f}" if name.endswith("_ms") else f"{value:.3f}")
        lines.append(f"  {name:<20} {shown:>8}")
    failed = [r for r in report.results if not r.passed]
    if failed:
        lines.append(f"failed cases ({len(failed)}):")
        for r in failed:
            lines.append(f"  {r.id}: {'; '.join(r.failed)}")
    return "\n".join(lines)
