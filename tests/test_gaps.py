"""The gaps report: grouping quality on a labelled fixture (purity and count), the report's contents
(kinds, pages, filters, CSV), and, on the emulators, who sees what (owners their bots' traffic, admins
all), the page, the CLI, and clearing a history taking questions out of the report.

Figures printed by the fixture test (run with ``-s``) are the ones docs/qa.md quotes.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flask import Flask
from google.api_core import exceptions

from shared.config import Settings
from shared.emulators import free_port
from shared.gcp import firestore_client
from shared.qa.answer_log import AnswerFacts, AnswerLog, QuestionVectors
from shared.qa.answer_rows import AnswerRows, read_rows
from shared.qa.gaps_filters import GapsFilters, InvalidFilter, parse_filters
from shared.qa.gaps_report import build_report
from shared.qa.live_index import LiveIndex
from shared.qa.question_groups import group_vectors
from tests.fakes.scripted_answerer import ScriptedAnswerer
from tests.qa_support import ask, make_app, sign_in

FIXTURE = Path(__file__).parent / "data" / "gap_questions.json"
SIMILARITY = Settings.model_fields["gaps_group_similarity"].default
LOW_SUPPORT = Settings.model_fields["gaps_low_support_score"].default
PURITY_FLOOR = 0.9  # measured: 0.903-0.958 over the orders below (mean 0.946)
COMPLETENESS_FLOOR = 0.9  # measured: 0.917-0.944
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _fixture() -> tuple[list[str], np.ndarray]:
    """The questions interleaved group by group (as traffic would mix them), and their labels."""
    groups = list(json.loads(FIXTURE.read_text())["groups"].items())
    questions, labels = [], []
    for i in range(max(len(qs) for _, qs in groups)):
        for label, qs in groups:
            if i < len(qs):
                questions.append(qs[i])
                labels.append(label)
    return questions, np.array(labels)


def _scores(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Purity (each group counted as its majority label) and completeness (each label counted in the
    group holding most of it)."""
    purity = sum(Counter(truth[found == g]).most_common(1)[0][1] for g in set(found)) / len(found)
    complete = sum(Counter(found[truth == t]).most_common(1)[0][1] for t in set(truth)) / len(found)
    return purity, complete


@pytest.fixture(scope="module")
def fixture_vectors() -> tuple[list[str], np.ndarray, np.ndarray]:
    questions, labels = _fixture()
    return questions, labels, QuestionVectors("minilm-l6-v2", ["askbase"])(questions)


# --- grouping quality ----------------------------------------------------------------------------------
def test_the_labelled_fixture_is_big_enough() -> None:
    questions, labels = _fixture()
    assert len(questions) >= 60 and len(set(labels)) >= 8
    assert len(set(questions)) == len(questions)


def test_paraphrased_questions_group_by_what_they_ask(fixture_vectors) -> None:
    questions, labels, vectors = fixture_vectors
    true_groups = len(set(labels))
    orders = [np.arange(len(questions))] + [
        np.random.default_rng(s).permutation(len(questions)) for s in range(10)
    ]
    figures = []
    for order in orders:
        found = group_vectors(vectors[order], SIMILARITY)
        purity, complete = _scores(found, labels[order])
        sizes = Counter(found.tolist())
        figures.append((purity, complete, len(sizes), sum(1 for n in sizes.values() if n > 1)))
        assert purity >= PURITY_FLOOR and complete >= COMPLETENESS_FLOOR, figures[-1]
        assert true_groups <= len(sizes) <= true_groups + 3, figures[-1]  # a few strays of their own
        assert true_groups - 1 <= figures[-1][3] <= true_groups + 1, figures[-1]
    table = np.array(figures)
    print(
        f"\n{len(questions)} questions in {true_groups} groups, {len(orders)} orders: purity "
        f"{table[:, 0].mean():.3f} (min {table[:, 0].min():.3f}), completeness {table[:, 1].mean():.3f} "
        f"(min {table[:, 1].min():.3f}), groups {table[:, 2].min():.0f}-{table[:, 2].max():.0f} "
        f"({table[:, 3].min():.0f}-{table[:, 3].max():.0f} with two or more questions)"
    )


def test_ignoring_the_products_name_groups_better(fixture_vectors) -> None:
    questions, labels, vectors = fixture_vectors
    plain = QuestionVectors("minilm-l6-v2")(questions)
    orders = [np.random.default_rng(s).permutation(len(questions)) for s in range(10)]
    with_name = np.mean([_scores(group_vectors(plain[o], SIMILARITY), labels[o])[0] for o in orders])
    without = np.mean([_scores(group_vectors(vectors[o], SIMILARITY), labels[o])[0] for o in orders])
    print(f"\nmean purity with the product's name {with_name:.3f}, without {without:.3f}")
    assert without > with_name


def test_grouping_is_deterministic_and_bounded() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    first = group_vectors(vectors, 0.5, max_groups=20, sample=64, block=50)
    assert np.array_equal(first, group_vectors(vectors, 0.5, max_groups=20, sample=64, block=50))
    # Random directions hardly meet a 0.5 cosine: 20 groups fill up, every other row stays on its own.
    assert len(set(first.tolist())) > 20 and sorted(set(first.tolist())) == list(
        range(len(set(first.tolist())))
    )
    assert group_vectors(np.empty((0, 16), dtype=np.float32), 0.5).size == 0


# --- the report -------------------------------------------------------------------------------------------
def _epoch(day: int) -> float:
    return (NOW - timedelta(days=day)).timestamp()


def _filters() -> GapsFilters:
    return GapsFilters(since=NOW - timedelta(days=30), until=NOW)


def test_the_report_groups_the_fixture_with_its_pages_and_dates(fixture_vectors) -> None:
    questions, labels, vectors = fixture_vectors
    rows = AnswerRows()
    for i, q in enumerate(questions):
        rows.add(
            q,
            _epoch(i % 20),
            refused=True,
            top_score=None,
            down_votes=0,
            cited=[],
            related=[("https://docs.example.com/faq", "FAQ", "docs")],
            vector=vectors[i].tobytes(),
        )
    for _ in range(5):  # confident, unrated answers: cited, but no gap
        rows.add(
            "How do I deploy?",
            _epoch(1),
            False,
            0.9,
            0,
            [("https://docs.example.com/deploy", "Deploy", "docs")],
        )
    report = build_report(rows, _filters(), similarity=SIMILARITY, low_support_score=LOW_SUPPORT)
    assert (report.answers, report.gaps) == (len(questions) + 5, len(questions))
    assert sum(g.count for g in report.groups) == len(questions) == sum(g.refused for g in report.groups)
    assert report.total_groups == len(set(group_vectors(vectors, SIMILARITY).tolist()))
    by_question = dict(zip(questions, labels, strict=True))
    # The largest groups are the fixture's groups: nearly all of them show examples of one label only.
    largest = report.groups[: len(set(labels))]
    assert sum(1 for g in largest if len({by_question[q] for q in g.examples}) == 1) >= len(largest) - 2
    for group in report.groups:
        assert (
            group.closest[0].url == "https://docs.example.com/faq" and group.closest[0].count == group.count
        )
        assert group.first_seen <= group.last_seen <= NOW
    assert [p.url for p in report.pages] == ["https://docs.example.com/deploy"] and report.pages[0].cited == 5


def test_a_gap_is_refused_low_support_or_rated_down_and_pages_show_their_down_rate() -> None:
    rows = AnswerRows()
    deploy = ("https://docs.example.com/deploy", "Deploy", "docs")
    bots = ("https://docs.example.com/bots", "Bots", "docs")
    rows.add("Is there SSO?", _epoch(3), True, None, 0, [])
    rows.add("How do I rotate keys?", _epoch(2), False, LOW_SUPPORT - 0.05, 0, [deploy])
    rows.add("How do I deploy?", _epoch(1), False, 0.9, 2, [deploy, bots])  # 👎 twice
    rows.add("How do I deploy to prod?", _epoch(1), False, 0.9, 0, [deploy])
    rows.add("How do I add a bot?", _epoch(1), False, 0.9, 0, [bots])
    vectors = QuestionVectors("minilm-l6-v2")
    report = build_report(
        rows, _filters(), similarity=0.99, low_support_score=LOW_SUPPORT, vectors_of=vectors
    )
    assert (report.answers, report.gaps) == (5, 3)
    kinds = {g.examples[0]: (g.refused, g.low_support, g.thumbs_down) for g in report.groups}
    assert kinds == {
        "Is there SSO?": (1, 0, 0),
        "How do I rotate keys?": (0, 1, 0),
        "How do I deploy?": (0, 0, 1),
    }
    stats = {p.title: (p.cited, p.thumbs_down, round(p.down_rate, 3)) for p in report.pages}
    assert stats == {"Deploy": (3, 1, 0.333), "Bots": (2, 1, 0.5)}
    assert [p.title for p in report.pages] == ["Bots", "Deploy"]  # the worse 👎 rate first


def test_the_same_question_asked_again_counts_in_one_group() -> None:
    rows = AnswerRows()
    for day in range(5):
        rows.add("Is there a Slack app?", _epoch(day), True, None, 0, [])
    rows.add("is there a slack app", _epoch(9), True, None, 0, [])
    report = build_report(
        rows,
        _filters(),
        similarity=SIMILARITY,
        low_support_score=LOW_SUPPORT,
        vectors_of=QuestionVectors("minilm-l6-v2"),
    )
    (group,) = report.groups
    assert group.count == 6 and group.examples == ["Is there a Slack app?"]
    assert group.first_seen == datetime.fromtimestamp(_epoch(9), UTC)
    assert group.last_seen == datetime.fromtimestamp(_epoch(0), UTC)


def test_no_gaps_is_an_empty_report_and_questions_without_vectors_still_count() -> None:
    rows = AnswerRows()
    rows.add(
        "How do I deploy?", _epoch(1), False, 0.9, 0, [("https://docs.example.com/deploy", "Deploy", "docs")]
    )
    empty = build_report(rows, _filters(), similarity=SIMILARITY, low_support_score=LOW_SUPPORT)
    assert (empty.answers, empty.gaps, empty.groups, empty.total_groups) == (1, 0, [], 0)
    # Recorded without a vector (the embedder failed) and no embedder now: alone, but not lost.
    rows.add("Is there SSO?", _epoch(2), True, None, 0, [])
    rows.add("Is there SSO", _epoch(1), True, None, 0, [])
    rows.add("Can I pay by invoice?", _epoch(1), True, None, 0, [])
    report = build_report(rows, _filters(), similarity=SIMILARITY, low_support_score=LOW_SUPPORT)
    assert sorted((g.count, g.examples[0]) for g in report.groups) == [
        (1, "Can I pay by invoice?"),
        (2, "Is there SSO?"),
    ]


def test_csv_has_the_groups_or_the_pages_and_defuses_formulas() -> None:
    rows = AnswerRows()
    rows.add('=HYPERLINK("http://evil")', _epoch(1), True, None, 0, [])
    rows.add(
        "How do I deploy?", _epoch(1), False, 0.9, 1, [("https://docs.example.com/deploy", "Deploy", "docs")]
    )
    report = build_report(
        rows,
        _filters(),
        similarity=SIMILARITY,
        low_support_score=LOW_SUPPORT,
        vectors_of=QuestionVectors("minilm-l6-v2"),
    )
    groups = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(groups) == 2 and {g["examples"] for g in groups} == {
        '\'=HYPERLINK("http://evil")',
        "How do I deploy?",
    }
    pages = list(csv.DictReader(io.StringIO(report.to_csv("pages"))))
    assert pages == [
        {
            "page": "https://docs.example.com/deploy",
            "title": "Deploy",
            "source": "docs",
            "cited": "1",
            "thumbs_down": "1",
            "down_rate": "1.0000",
        }
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, (NOW - timedelta(days=30), NOW, None, None)),
        ({"days": "7", "source": "blog", "bot": "web"}, (NOW - timedelta(days=7), NOW, "blog", "web")),
        (
            {"since": "2026-02-01", "until": "2026-02-10", "days": "7", "bot": "b_1-x"},
            (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 11, tzinfo=UTC), None, "b_1-x"),
        ),
        ({"since": "2026-02-20"}, (datetime(2026, 2, 20, tzinfo=UTC), NOW, None, None)),
    ],
)
def test_filters_from_query_parameters(args: dict, expected: tuple) -> None:
    f = parse_filters(args, NOW)
    assert (f.since, f.until, f.source, f.bot) == expected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"days": "0"}, "whole number"),
        ({"days": "²"}, "whole number"),
        ({"days": "400"}, "whole number"),
        ({"since": "yesterday"}, "date like"),
        ({"since": "2026-02-30"}, "real date"),
        ({"since": "2026-02-10", "until": "2026-02-01"}, "before"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "at most"),
        ({"source": "../etc"}, "source name"),
        ({"bot": "a/b"}, "bot id"),
    ],
)
def test_bad_filters_say_what_is_wrong(args: dict, fragment: str) -> None:
    with pytest.raises(InvalidFilter, match=fragment):
        parse_filters(args, NOW)


# --- on the emulators: who sees what ------------------------------------------------------------------
ASKED = {
    "alice": "Does askbase have an Okta SSO login?",
    "bob": "Is there an Android app for askbase?",
    "web": "How much does the enterprise plan cost?",
}
ALSO_REFUSED = "What does the enterprise plan cost per year?"


@pytest.fixture
def app(emulators, settings: Settings, live: LiveIndex) -> Flask:
    refuse = {*ASKED.values(), ALSO_REFUSED}
    return make_app(
        settings,
        live,
        answerer_factory=lambda name: ScriptedAnswerer(refuse=refuse),
        admin_emails=["admin@example.com"],
    )


def _bot(settings: Settings, bot_id: str, owner: str, name: str) -> None:
    firestore_client(settings.project_id).collection("bots").document(bot_id).set(
        {"owner": owner, "owner_email": owner, "platform": "telegram", "name": name}
    )


def _bot_asks(app: Flask, bot_id: str, user: str, question: str) -> None:
    response = app.test_client().post(
        "/api/ask",
        json={"question": question, "bot_id": bot_id, "user": user},
        headers={"X-Askbase-Service": "botrunner"},
    )
    assert response.status_code == 200, response.json


def _questions(report: dict) -> set[str]:
    return {q for g in report["groups"] for q in g["examples"]}


def test_owners_see_their_bots_traffic_and_admins_see_all(app: Flask, settings: Settings) -> None:
    _bot(settings, "botA", "alice@example.com", "Alice's bot")
    _bot(settings, "botB", "bob@example.com", "Bob's bot")
    _bot_asks(app, "botA", "telegram:1001", ASKED["alice"])
    _bot_asks(app, "botB", "telegram:2002", ASKED["bob"])
    web = app.test_client()
    ask(web, sign_in(web, "carol@example.com"), {"question": ASKED["web"]})

    clients = {}
    for name in ("alice", "bob", "carol", "admin"):
        clients[name] = app.test_client()
        sign_in(clients[name], f"{name}@example.com")

    def report(who: str, **args: str):
        return clients[who].get("/api/gaps", query_string=args)

    assert _questions(report("alice").json) == {ASKED["alice"]}
    assert _questions(report("bob").json) == {ASKED["bob"]}
    assert _questions(report("admin").json) == set(ASKED.values())
    assert _questions(report("admin", bot="web").json) == {ASKED["web"]}
    assert _questions(report("admin", bot="botB").json) == {ASKED["bob"]}
    assert _questions(report("alice", bot="botA").json) == {ASKED["alice"]}
    assert report("alice", bot="botB").status_code == 404  # someone else's bot: not confirmed to exist
    assert report("alice", bot="nope").status_code == 404
    assert report("admin", bot="nope").status_code == 404
    assert report("alice", bot="web").status_code == 403
    denied = report("carol")  # no bots, not an admin
    assert denied.status_code == 403 and "your bots" in denied.json["error"]
    assert report("alice", days="abc").status_code == 400
    assert report("admin", format="xml").status_code == 400
    # No identities in any report: no e-mails, owner keys or platform user ids.
    text = report("admin").get_data(as_text=True) + report("admin", format="csv").get_data(as_text=True)
    for identity in ("carol@example.com", "user:", "telegram:1001", "telegram:2002", "alice@example.com"):
        assert identity not in text


def test_the_page_lists_groups_with_csv_downloads(app: Flask, settings: Settings) -> None:
    user = app.test_client()
    token = sign_in(user, "carol@example.com")
    for question in (ASKED["web"], ALSO_REFUSED):
        ask(user, token, {"question": question})
    admin = app.test_client()
    sign_in(admin, "admin@example.com")
    assert 'href="/gaps"' in admin.get("/").get_data(as_text=True)  # in the admin's top bar
    assert 'href="/gaps"' not in user.get("/").get_data(as_text=True)
    page = admin.get("/gaps?days=7")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and ASKED["web"] in html and "Download groups (CSV)" in html
    assert "/api/gaps?format=csv&amp;table=groups&amp;days=7" in html
    download = admin.get("/api/gaps?format=csv&table=groups&days=7")
    assert download.mimetype == "text/csv" and "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert sum(int(r["count"]) for r in rows) == 2 and sum(int(r["refused"]) for r in rows) == 2
    assert user.get("/gaps").status_code == 403
    assert admin.get("/gaps?since=2026-13-01").status_code == 400


def test_clearing_a_history_takes_its_questions_out_of_the_report(app: Flask) -> None:
    user = app.test_client()
    token = sign_in(user, "carol@example.com")
    ask(user, token, {"question": ASKED["web"]})
    admin = app.test_client()
    sign_in(admin, "admin@example.com")
    assert _questions(admin.get("/api/gaps").json) == {ASKED["web"]}
    assert user.delete("/api/conversations", headers={"X-CSRF-Token": token}).status_code == 200
    assert admin.get("/api/gaps").json["answers"] == 0


def test_period_and_source_filters_read_only_matching_answers(emulators, settings: Settings) -> None:
    db = firestore_client(settings.project_id)
    clock = [NOW]
    log = AnswerLog(db, retention_days=0, clock=lambda: clock[0])
    blog = {"title": "Post > Part", "url": "https://blog.example.com/post#part", "score": 0.9}
    docs = {"title": "Deploy", "url": "https://docs.example.com/deploy", "score": 0.9}
    sources = {"https://blog.example.com/post": "blog", "https://docs.example.com/deploy": "docs"}
    for days_ago, question, cited in (
        (40, "old", docs),
        (5, "from the blog", blog),
        (2, "from the docs", docs),
    ):
        clock[0] = NOW - timedelta(days=days_ago)
        log.record(
            AnswerFacts(f"c-{question}", question, "It is. [1]", [cited], "extractive", False),
            "user:x@y.z",
            sources.get,
        )
    month = GapsFilters(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
    assert read_rows(db, month).questions == ["from the blog", "from the docs"] or sorted(
        read_rows(db, month).questions
    ) == ["from the blog", "from the docs"]
    only_blog = read_rows(db, GapsFilters(month.since, month.until, source="blog"))
    assert only_blog.questions == ["from the blog"]
    assert [p.url for p in only_blog.pages.pages] == ["https://blog.example.com/post"]
    assert read_rows(db, month, bots=["some-bot"]).questions == []
    assert sorted(read_rows(db, month, bots=[None]).questions) == ["from the blog", "from the docs"]


def test_a_database_that_cannot_be_reached_raises_as_the_client_library_does(settings: Settings) -> None:
    # The report reads on a channel of its own; its errors are still google.api_core's, which callers
    # of any Firestore read already know.
    db = firestore_client(settings.project_id, emulator_host=f"127.0.0.1:{free_port()}")
    month = GapsFilters(NOW - timedelta(days=30), NOW)
    with pytest.raises(exceptions.ServiceUnavailable):
        read_rows(db, month)


def test_askbase_gaps_prints_json_csv_and_text(emulators, settings: Settings) -> None:
    from shared.cli import cli

    db = firestore_client(settings.project_id)
    log = AnswerLog(db, retention_days=30, vectors=QuestionVectors("minilm-l6-v2"))
    for question in (
        "Can I log in with SAML?",
        "Is SAML single sign-on supported?",
        "Is there a mobile app?",
    ):
        log.record(AnswerFacts(f"c-{question}", question, "No idea.", [], "extractive", True), "user:x@y.z")
    runner = CliRunner()
    as_json = runner.invoke(cli, ["gaps", "--json", "--days", "7"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["gaps"] == 3 and report["groups"][0]["count"] == 2
    assert set(report["groups"][0]["examples"]) == {
        "Can I log in with SAML?",
        "Is SAML single sign-on supported?",
    }
    as_csv = runner.invoke(cli, ["gaps", "--csv"])
    assert as_csv.exit_code == 0 and as_csv.output.startswith("group,count,refused")
    text = runner.invoke(cli, ["gaps"])
    assert (
        text.exit_code == 0
        and "3 gaps in 2 groups" in text.output
        and "Is there a mobile app?" in text.output
    )
    bad = runner.invoke(cli, ["gaps", "--days", "0"])
    assert bad.exit_code == 2 and "whole number" in bad.output
