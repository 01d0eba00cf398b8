"""Answer-quality evaluation: per-case scoring, the metrics ``askbase eval`` prints, and the regression
check against a baseline. The eval set file and its cases: :mod:`shared.qa.eval_sets`.

Metrics (``answerable`` = cases with ``expect``): hit@k and MRR@5 of the first expected page among the
distinct pages cited, in citation order (a refusal cites nothing: a miss); correct-refusal rate over
unanswerable cases; wrong-refusal rate over answerable ones; citation precision over the sources cited
for answerable cases (a source counts when it is on an expected page or its passage contains an expected
term: it supports the answer); answer-first rate over answerable cases with ``expect_terms``; and the
share of cases that pass all of their own checks. Latency p50/p95 are reported but never compared:
they measure the machine as much as the code.

Everything here is pure: the answering is a callable, so the CLI, the tests and the benchmarks run the
same scoring over whatever answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shared.qa.eval_sets import EvalCase, EvalSet

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
