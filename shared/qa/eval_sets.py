"""Eval sets: the JSON file of questions and what a right answer looks like, read and checked.

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
* ``expect_terms``: what a reader must see in the first
  :data:`shared.qa.evaluation.ANSWER_FIRST_CHARS` characters of the answer (case-insensitive; ``"a|b"``
  accepts either). ``expect_prefix``: how the answer must start
  (``"No."`` for a question the docs answer with a plain no).
* ``unanswerable: true``: the docs do not answer it; the right answer is a refusal.
* ``previous``: the question asked just before in the same conversation (follow-up handling).
* ``corpus`` (optional): a directory of HTML files (relative to the set file, or absolute) and the base
  URL they are indexed under when ``askbase eval`` builds the index itself. With ``"crawl": true`` the
  directory is served on loopback and crawled by the real crawler from ``start`` (a path below the base
  URL) instead of read file by file (:mod:`shared.knowledge.file_corpus`); ``package`` names the system
  package that installs the directory, for the message when it is missing.

:func:`parse_eval_set` checks every case and names the one that is malformed (:class:`EvalSetError`);
scoring them is :mod:`shared.qa.evaluation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
