"""Answerers: extractive quotes and cites real passages and refuses when nothing is relevant; gemini goes
through a fake Vertex AI endpoint on loopback, and falls back to extractive on errors and timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from shared.config import Settings
from shared.knowledge.retrieval import Passage
from shared.qa.answerers import get_answerer
from shared.qa.extractive import ALSO_RELEVANT, ExtractiveAnswerer, sentences
from shared.qa.gemini import NOT_IN_PASSAGES, GeminiAnswerer
from shared.qa.refusal import NOT_COVERED, NOTHING_FOUND, question_names
from shared.qa.sources import source_title
from tests.fakes.gemini import FakeGemini

PASSAGES = [
    Passage(
        chunk_id="c1",
        text=(
            "Snapshots are published to Cloud Storage after every crawl. "
            "The service checks the pointer every 30 seconds and swaps in the new snapshot "
            "without a restart. "
            "Unrelated filler text about colours."
        ),
        url="https://docs.example.com/snapshots",
        title="Snapshots",
        anchor="publishing",
        source="docs",
        score=0.82,
    ),
    Passage(
        chunk_id="c2",
        text="To rotate a bot token, stop the bot, paste the new token and start it again.",
        url="https://docs.example.com/bots",
        title="Bots",
        anchor="",
        source="docs",
        score=0.41,
    ),
]


def _p(chunk_id: str, text: str, url: str, score: float, title: str = "Docs", anchor: str = "") -> Passage:
    return Passage(
        chunk_id=chunk_id, text=text, url=url, title=title, anchor=anchor, source="docs", score=score
    )


DEPLOY = _p(
    "d1",
    "Deploying > Deploy\n\nRun pulumi up in infra/. It builds the containers and deploys the functions.",
    "https://docs.example.com/deploy",
    0.77,
    title="Deploying",
    anchor="deploy",
)
QUICKSTART = _p(
    "q1",
    "Quickstart > Run\n\nRun askbase dev. Open the chat and ask a question such as: how do I deploy askbase?",
    "https://docs.example.com/quickstart",
    0.45,
    title="Quickstart",
)


def test_extractive_answers_with_the_answering_sentence_first_and_cites_it() -> None:
    answer = ExtractiveAnswerer().answer("How often does the service check for a new snapshot?", PASSAGES)
    assert answer.answerer == "extractive" and not answer.refused
    # No opener, no "From ...:" header: the quote is the answer, with its citation.
    assert answer.text.startswith("The service checks the pointer every 30 seconds")
    assert answer.text.endswith("[1]")
    assert "colours" not in answer.text
    # One short quote is a fine answer: the bot-token passage adds nothing and is not cited.
    assert [p.chunk_id for p in answer.sources] == ["c1"]


def test_a_section_named_like_the_question_answers_with_its_first_sentence() -> None:
    # "How do I deploy askbase?": the quickstart sentence that repeats the question is not the answer.
    answer = ExtractiveAnswerer().answer("How do I deploy askbase?", [DEPLOY, QUICKSTART])
    assert answer.text.startswith("Run pulumi up in infra/.")
    assert [p.chunk_id for p in answer.sources] == ["d1"]
    assert "such as" not in answer.text


def test_a_yes_no_question_keeps_the_leading_no() -> None:
    faq = _p(
        "f1",
        "FAQ > Does askbase send my documents anywhere?\n\nNo. Pages are embedded locally. "
        "Only the gemini answerer sends the retrieved passages and the question to Vertex AI.",
        "https://docs.example.com/faq",
        0.9,
        title="FAQ",
    )
    answer = ExtractiveAnswerer().answer("Does askbase send my documents anywhere?", [faq])
    assert answer.text.startswith("No. ")
    assert "sends the retrieved passages" in answer.text
    # Another question answered from the same section does not quote the bare "No." after its answer.
    other = ExtractiveAnswerer().answer("Where are pages embedded?", [faq])
    assert other.text.startswith("Pages are embedded locally.") and "No." not in other.text


def test_a_second_page_is_cited_only_when_the_answer_needs_it() -> None:
    snapshots = _p("s1", "Snapshots are published after every crawl.", "https://docs.example.com/s", 0.6)
    tokens = _p(
        "t1", "To rotate a bot token, stop the bot and start it again.", "https://docs.example.com/t", 0.55
    )
    same_page = _p("s2", "Snapshots are kept for a week.", "https://docs.example.com/s", 0.58)
    answer = ExtractiveAnswerer().answer(
        "snapshot publishing and bot token rotation", [snapshots, same_page, tokens]
    )
    # Two pages, one source each (the page's best section), numbered in order.
    assert [p.chunk_id for p in answer.sources] == ["s1", "t1"]
    assert answer.text.index("[1]") < answer.text.index("[2]")
    # A passage far below the best one is not quoted even if it shares a word.
    weak = _p("t2", "To rotate a bot token, stop the bot.", "https://docs.example.com/t", 0.2)
    assert [
        p.chunk_id for p in ExtractiveAnswerer().answer("snapshot and token", [snapshots, weak]).sources
    ] == ["s1"]


def test_pages_retrieved_almost_as_high_are_listed_as_sources_without_quotes() -> None:
    reference = _p(
        "r1",
        "pg_dump > Description\n\npg_dump is a utility for backing up a database.",
        "https://docs.example.com/app-pgdump",
        0.70,
        title="pg_dump",
    )
    chapter = _p(
        "c1",
        "Backup > SQL Dump\n\nThe idea behind this dump method is to generate a file with SQL commands.",
        "https://docs.example.com/backup-dump",
        0.66,
        title="Backup",
    )
    far = _p(
        "f1", "Backup > Files\n\nCopy the data directory.", "https://docs.example.com/files", 0.4, "Backup"
    )
    answer = ExtractiveAnswerer().answer("How do I back up a database?", [reference, chapter, far])
    # The answer quotes one page; the page retrieval ranks almost as high is a further source,
    # referenced by its number but not quoted; a page far below is not listed at all.
    assert answer.text.startswith("pg_dump is a utility for backing up a database. [1]")
    assert answer.text.endswith(f"{ALSO_RELEVANT} [2]")
    assert "SQL commands" not in answer.text
    assert [p.chunk_id for p in answer.sources] == ["r1", "c1"]
    # Never more sources than the configured number.
    assert [
        p.chunk_id
        for p in ExtractiveAnswerer(max_passages=1)
        .answer("How do I back up a database?", [reference, chapter])
        .sources
    ] == ["r1"]


def test_a_page_the_embedding_clearly_prefers_is_listed_unless_a_quoted_heading_names_the_question() -> None:
    # "How do I attach a description to a table?" on the PostgreSQL manual: fusion quotes ALTER TABLE's
    # ATTACH PARTITION (its heading says "attach" and "table"); MiniLM ranks COMMENT's page higher.
    attach = replace(
        _p(
            "a1",
            "ALTER TABLE > ATTACH PARTITION\n\nThis form attaches an existing table as a partition.",
            "https://docs.example.com/sql-altertable",
            0.70,
            title="ALTER TABLE",
        ),
        vector_score=0.43,
        heading_score=0.56,
    )
    comment = replace(
        _p(
            "c1",
            "COMMENT > Description\n\nCOMMENT stores a comment about a database object.",
            "https://docs.example.com/sql-comment",
            0.53,
            title="COMMENT",
        ),
        vector_score=0.51,
        semantic_pick=True,
    )
    question = "How do I attach a description to a table?"
    answer = ExtractiveAnswerer().answer(question, [attach, comment])
    assert answer.text.startswith(
        "ATTACH PARTITION: This form attaches an existing table as a partition. [1]"
    )
    assert answer.text.endswith(f"{ALSO_RELEVANT} [2]") and "stores a comment" not in answer.text
    assert [p.chunk_id for p in answer.sources] == ["a1", "c1"]
    # Not when its cosine is within the margin of the quoted passage's ...
    close = replace(comment, vector_score=0.45)
    assert [p.chunk_id for p in ExtractiveAnswerer().answer(question, [attach, close]).sources] == ["a1"]
    # ... nor when the quoted section's heading names the question ...
    named = replace(attach, heading_score=0.9)
    assert [p.chunk_id for p in ExtractiveAnswerer().answer(question, [named, comment]).sources] == ["a1"]
    # ... nor a passage that is not a search's pick, nor beyond the configured number of sources.
    unpicked = replace(comment, semantic_pick=False)
    assert [p.chunk_id for p in ExtractiveAnswerer().answer(question, [attach, unpicked]).sources] == ["a1"]
    one = ExtractiveAnswerer(max_passages=1).answer(question, [attach, comment])
    assert [p.chunk_id for p in one.sources] == ["a1"]
    # Listed before a near-tie: with room for one more source, the embedding's favourite gets it.
    near = _p("n1", "CREATE TABLE > Partitions\n\nA table can be partitioned.", "https://x/ct", 0.65)
    both = ExtractiveAnswerer().answer(question, [attach, near, comment])
    assert [p.chunk_id for p in both.sources] == ["a1", "c1", "n1"]
    two = ExtractiveAnswerer(max_passages=2).answer(question, [attach, near, comment])
    assert [p.chunk_id for p in two.sources] == ["a1", "c1"]


def test_a_semantic_pick_is_never_quoted_and_never_decides_a_refusal() -> None:
    quoted = _p("a1", "Backup > Dump\n\npg_dump writes a database to a file.", "https://x/d", 0.62, "Backup")
    # A pick scoring like a near-tie and adding a question word is still only listed, never quoted.
    pick = replace(
        _p("p1", "Restore > Files\n\nRestore the file with psql.", "https://x/r", 0.6, "Restore"),
        vector_score=0.9,
        semantic_pick=True,
    )
    answer = ExtractiveAnswerer().answer("How do I dump and restore a database file?", [quoted, pick])
    assert answer.text.startswith("pg_dump writes a database to a file. [1]")
    assert "Restore the file" not in answer.text and answer.text.endswith(f"{ALSO_RELEVANT} [2]")
    # A pick scoring above the refusal threshold does not lift a question the ranked passages refuse,
    # and its text does not supply a name the question asks about.
    weak = _p("w1", "Backup > Intro\n\nBackups matter.", "https://x/backup", 0.2, "Backup")
    strong_pick = replace(pick, score=0.5, text="Restore > Slack\n\nSlack restores files.")
    refused = ExtractiveAnswerer().answer("How do I restore a file from Slack?", [weak, strong_pick])
    assert refused.refused and not refused.sources
    assert [p.chunk_id for p in refused.related] == ["w1"]


def test_the_best_sentence_comes_first_and_the_next_best_joins_it() -> None:
    section = _p(
        "w1",
        "Resource Consumption > work_mem (integer)\n\n"
        "Sets the base maximum amount of memory to be used by a query operation. "
        "Note that a complex query might perform several sort and hash operations at the same time. "
        "Hash-based operations are generally more sensitive to memory availability.",
        "https://docs.example.com/runtime-config-resource",
        0.77,
        title="Resource Consumption",
    )
    answer = ExtractiveAnswerer().answer(
        "How many sort and hash operations may a complex query perform?", [section]
    )
    # The sentence that answers comes first (after the entry's name, which the quote does not say);
    # the section's opening sentence, which also bears on the question, follows it rather than
    # pushing it out of the first lines.
    assert answer.text.startswith("work_mem (integer): Note that a complex query might perform several")
    assert "Sets the base maximum amount of memory" in answer.text
    assert [p.chunk_id for p in answer.sources] == ["w1"]


def test_extractive_refuses_below_the_calibrated_score_and_names_the_closest_pages() -> None:
    near = [
        _p(
            "a",
            "Configuration > Snapshots\n\ngzip is also supported.",
            "https://docs.example.com/configure",
            0.28,
            title="Configuration",
            anchor="snapshots",
        ),
        _p(
            "b",
            "Bots > Discord\n\nCreate an application.",
            "https://docs.example.com/bots",
            0.2,
            title="Bots",
        ),
        _p(
            "c",
            "Configuration > Limits\n\nRobots are respected.",
            "https://docs.example.com/configure",
            0.19,
            title="Configuration",
        ),
        _p("d", "Unrelated.", "https://docs.example.com/far", 0.05),
    ]
    answer = ExtractiveAnswerer(min_score=0.3).answer("Does askbase support Slack?", near)
    assert answer.refused and answer.sources == []
    assert answer.text.startswith(NOT_COVERED)
    # The closest pages, one line each, with links; one per page; nothing unrelated.
    assert "- Configuration > Snapshots: https://docs.example.com/configure#snapshots" in answer.text
    assert "https://docs.example.com/bots" in answer.text
    assert answer.text.count("docs.example.com/configure") == 1
    assert "docs.example.com/far" not in answer.text
    assert [p.chunk_id for p in answer.related] == ["a", "b"]


def test_extractive_refuses_plainly_when_nothing_is_close() -> None:
    answer = ExtractiveAnswerer().answer(
        "What is the capital of Mongolia?", [_p("x", "Hi.", "https://a/", 0.05)]
    )
    assert answer.text == NOTHING_FOUND and answer.sources == [] and answer.refused
    assert ExtractiveAnswerer().answer("anything", []).text == NOTHING_FOUND


def test_extractive_refuses_below_a_configured_threshold() -> None:
    answer = ExtractiveAnswerer(min_score=0.9).answer("snapshot pointer", PASSAGES)
    assert answer.refused and answer.sources == []


def test_a_question_naming_what_no_passage_mentions_is_refused() -> None:
    # "Slack" is in no retrieved passage: they are about other integrations, however well they score.
    integrations = [
        _p(
            "i1",
            "Bots > Integrations\n\naskbase supports Telegram and Discord bots.",
            "https://docs.example.com/bots",
            0.45,
            title="Bots",
            anchor="integrations",
        )
    ]
    slack = ExtractiveAnswerer(min_score=0.3).answer("Does askbase support Slack?", integrations)
    assert slack.refused and slack.sources == [] and "https://docs.example.com/bots" in slack.text
    # A name the passages do contain is answered; so is a question whose best passage is very strong.
    telegram = ExtractiveAnswerer(min_score=0.3).answer("Does askbase support Telegram?", integrations)
    assert not telegram.refused and telegram.sources[0].chunk_id == "i1"
    strong = [_p("i2", integrations[0].text, "https://docs.example.com/bots", 0.9, title="Bots")]
    assert not ExtractiveAnswerer(min_score=0.3).answer("Does askbase support Slack?", strong).refused


def test_a_name_common_across_the_corpus_does_not_refuse_the_question() -> None:
    # The product's own name is on nearly every page, so retrieval's IDF-weighted keyword score is
    # barely lowered by its absence: passages that match the rest of the question fully answer it.
    freezing = Passage(
        chunk_id="w1",
        text="Vacuuming > Wraparound\n\nRows must be frozen so that transaction ID wraparound cannot "
        "make old rows appear to be in the future.",
        url="https://docs.example.com/vacuum",
        title="Vacuuming",
        anchor="wraparound",
        source="docs",
        score=0.54,
        keyword_score=1.0,
    )
    why = "Why does PostgreSQL need to freeze old rows?"
    answer = ExtractiveAnswerer(min_score=0.3).answer(why, [freezing])
    assert not answer.refused and answer.sources[0].chunk_id == "w1"
    assert "wraparound" in answer.text
    # A name that weighs on the keyword score (rare or absent in the corpus) is still refused.
    rare = replace(freezing, keyword_score=0.5)
    assert ExtractiveAnswerer(min_score=0.3).answer("Does PostgreSQL support Django?", [rare]).refused
    # So is one from a search that reported no keyword score: nothing shows the name is common.
    unknown = replace(freezing, keyword_score=None)
    assert ExtractiveAnswerer(min_score=0.3).answer(why, [unknown]).refused


def test_question_names_are_written_as_names_not_sentence_starts() -> None:
    assert question_names("How do I configure the SQLAlchemy pool for PostgreSQL?") == [
        "SQLAlchemy",
        "PostgreSQL",
    ]
    assert question_names("Does askbase support Slack?") == ["Slack"]
    assert question_names("Can I create an HNSW index?") == ["HNSW"]
    # The first word of each sentence is capitalised because it starts the sentence, not as a name.
    assert question_names("How do I back up a database? And how do I restore it?") == []


def test_hard_wrapped_paragraphs_are_cut_into_whole_sentences() -> None:
    body = (
        "ALTER SYSTEM writes the given parameter setting to\n"
        "the postgresql.auto.conf file, which is read in\n"
        "addition to postgresql.conf.\n"
        "Use RESET\n"
        "ALL to remove all such entries.\n"
        "- FULL\n"
        "- FREEZE"
    )
    assert sentences(body) == [
        "ALTER SYSTEM writes the given parameter setting to the postgresql.auto.conf file, which is read "
        "in addition to postgresql.conf.",
        "Use RESET ALL to remove all such entries.",
        "- FULL",
        "- FREEZE",
    ]


def test_the_answering_sentence_is_found_in_a_later_chunk_of_the_section() -> None:
    # A reference page's first chunk is its synopsis; the sentence that answers is in the next chunk.
    synopsis = _p(
        "s1",
        "ALTER SYSTEM\n\nALTER SYSTEM SET configuration_parameter { TO | = } { value [, ...] | DEFAULT }",
        "https://docs.example.com/sql-altersystem",
        0.64,
        title="ALTER SYSTEM",
    )
    description = _p(
        "s2",
        "ALTER SYSTEM\n\nand then reloads. ALTER SYSTEM writes the given parameter setting to the "
        "postgresql.auto.conf file, which is read in addition to postgresql.conf.",
        "https://docs.example.com/sql-altersystem",
        0.55,
        title="ALTER SYSTEM",
    )
    answer = ExtractiveAnswerer().answer(
        "Where does ALTER SYSTEM write the setting?", [synopsis, description]
    )
    assert answer.text.startswith("ALTER SYSTEM writes the given parameter setting to the postgresql.auto")
    assert [p.chunk_id for p in answer.sources] == ["s2"]
    # The cut-off start of a continuing chunk ("and then reloads.") is not quoted as the answer.
    assert "and then reloads" not in answer.text


def test_a_quote_from_an_entry_named_by_an_identifier_starts_with_its_name() -> None:
    entry = _p(
        "g1",
        "Server Configuration: Resource Consumption > max_parallel_workers_per_gather (integer)\n\n"
        "Sets the maximum number of workers that can be started by a single Gather node.",
        "https://docs.example.com/runtime-config-resource",
        0.7,
        title="Server Configuration: Resource Consumption",
        anchor="GUC-MAX-PARALLEL-WORKERS-PER-GATHER",
    )
    answer = ExtractiveAnswerer().answer(
        "Which setting limits how many workers a single parallel query can use?", [entry]
    )
    # Without the name the answer never says which setting it is.
    assert answer.text.startswith("max_parallel_workers_per_gather (integer): Sets the maximum number")
    # Not put in front: a heading that is not a name, a name the quote already says, a heading whose
    # bracket is a remark, not a type.
    unprefixed = [
        (
            "ALTER TABLE > Examples\n\nTo rename an existing column: ALTER TABLE t RENAME COLUMN a TO b;",
            "How do I rename a column?",
            "To rename",
        ),
        (
            "Server Configuration: Resource Consumption > work_mem (integer)\n\nwork_mem sets the memory.",
            "What does work_mem set?",
            "work_mem sets",
        ),
        (
            "Guide > Setup (optional)\n\nSets the amount of memory the cache may use.",
            "How much memory may the cache use?",
            "Sets",
        ),
    ]
    for n, (text, question, start) in enumerate(unprefixed):
        passage = replace(entry, text=text, chunk_id=f"u{n}", anchor=f"u{n}")
        assert ExtractiveAnswerer().answer(question, [passage]).text.startswith(start)


def test_a_synopsis_gives_way_to_a_plain_section_of_its_page() -> None:
    synopsis = _p(
        "a1",
        "ALTER TABLE > Synopsis\n\nALTER TABLE [ IF EXISTS ] name RENAME [ COLUMN ] column_name TO "
        "new_column_name ALTER TABLE [ IF EXISTS ] name RENAME CONSTRAINT constraint_name TO new_name",
        "https://docs.example.com/sql-altertable",
        0.6,
        title="ALTER TABLE",
        anchor="synopsis",
    )
    examples = _p(
        "a2",
        "ALTER TABLE > Examples\n\nTo rename an existing column:\nALTER TABLE distributors RENAME COLUMN "
        "address TO city;",
        "https://docs.example.com/sql-altertable",
        0.55,
        title="ALTER TABLE",
        anchor="examples",
    )
    other_page = _p(
        "v1",
        "ALTER VIEW > Synopsis\n\nALTER VIEW [ IF EXISTS ] name RENAME [ COLUMN ] column_name TO new_name",
        "https://docs.example.com/sql-alterview",
        0.58,
        title="ALTER VIEW",
        anchor="synopsis",
    )
    answer = ExtractiveAnswerer().answer("How do I rename a column?", [synopsis, other_page, examples])
    assert "ALTER TABLE distributors RENAME COLUMN address TO city;" in answer.text.split("[1]")[0]
    assert answer.sources[0].chunk_id == "a2"
    # With no plain section of the page retrieved, the synopsis is still the answer.
    alone = ExtractiveAnswerer().answer("How do I rename a column?", [synopsis, other_page])
    assert alone.sources[0].chunk_id == "a1"


def test_a_cross_reference_is_not_the_answer() -> None:
    section = _p(
        "c1",
        "Server Setup > Creating a Database Cluster\n\n"
        "Before you can do anything, you must initialize a database storage area on disk. "
        "(See Chapter 23 for information about creating new databases within a cluster.) "
        "To initialize a new database cluster, use the command initdb.",
        "https://docs.example.com/creating-cluster",
        0.76,
        title="Server Setup",
    )
    answer = ExtractiveAnswerer().answer("How do I create a new database cluster?", [section])
    assert answer.text.startswith("To initialize a new database cluster, use the command initdb.")


def test_a_section_named_by_every_question_word_answers_with_its_opening() -> None:
    # Two chunks of one section; the second continues the first (chunks overlap), so its first
    # sentence is not the section's opening, and the sentence that only repeats the heading's words
    # does not beat the definition that opens the section.
    heading = "Routine Vacuuming > The Autovacuum Daemon\n\n"
    opening = _p(
        "v1",
        heading + "PostgreSQL has an optional feature called autovacuum, whose purpose is to automate "
        "the execution of VACUUM and ANALYZE commands. In the default configuration, autovacuuming is "
        "enabled.",
        "https://docs.example.com/routine-vacuuming",
        0.88,
        title="Routine Vacuuming",
        anchor="AUTOVACUUM",
    )
    later = _p(
        "v2",
        heading + "In the default configuration, autovacuuming is enabled. The autovacuum daemon actually "
        "consists of multiple processes.",
        "https://docs.example.com/routine-vacuuming",
        0.91,
        title="Routine Vacuuming",
        anchor="AUTOVACUUM",
    )
    answer = ExtractiveAnswerer().answer("What does the autovacuum daemon do?", [later, opening])
    assert answer.text.startswith("PostgreSQL has an optional feature called autovacuum, whose purpose")
    assert [p.chunk_id for p in answer.sources] == ["v1"]


def test_a_chunk_opening_with_a_connective_gets_no_first_sentence_bonus() -> None:
    # "However, ..." goes on from a sentence before it: this chunk continues its section, and its first
    # sentence is no opening; the sentence naming the setting answers.
    middle = _p(
        "m1",
        "Memory > Buffers\n\nHowever, the cache keeps old pages too. "
        "The cache keeps recent pages in memory as set by shared_buffers.",
        "https://docs.example.com/memory",
        0.7,
        title="Memory",
    )
    answer = ExtractiveAnswerer().answer("What does the cache keep?", [middle])
    assert answer.text.startswith("The cache keeps recent pages in memory as set by shared_buffers.")
    opening = replace(middle, text=middle.text.replace("However, the", "The"), chunk_id="m0")
    assert (
        ExtractiveAnswerer()
        .answer("What does the cache keep?", [opening])
        .text.startswith("The cache keeps old pages too.")
    )


def test_a_function_table_run_together_is_cut_into_its_rows() -> None:
    table = (
        "date_bin ( interval, timestamp, timestamp ) → timestamp Bin input into specified interval; see "
        "Section 9.9.3 date_bin('15 minutes', timestamp '2001-02-16 20:38:40', timestamp "
        "'2001-02-16 20:05:00') → 2001-02-16 20:35:00 date_trunc ( text, timestamp ) → timestamp "
        "Truncate to specified precision; see Section 9.9.2 date_trunc('hour', timestamp "
        "'2001-02-16 20:38:40') → 2001-02-16 20:00:00"
    )
    rows = sentences(table)
    assert [row.split(" (", 1)[0] for row in rows] == ["date_bin", "date_trunc"]
    assert rows[1].endswith("→ 2001-02-16 20:00:00")
    # The first row of a table is one entry among many: the row that answers is quoted first.
    functions = _p(
        "f1",
        "Functions and Operators: Date/Time Functions and Operators\n\n" + table,
        "https://docs.example.com/functions-datetime",
        0.52,
        title="Functions and Operators: Date/Time Functions and Operators",
    )
    answer = ExtractiveAnswerer().answer(
        "How do I truncate a timestamp to the start of the month?", [functions]
    )
    assert answer.text.startswith(
        "date_trunc ( text, timestamp ) → timestamp Truncate to specified precision"
    )


def test_the_sentence_after_the_best_one_joins_it_first() -> None:
    section = _p(
        "u1",
        "Server Setup > Upgrading a Cluster\n\nMinor releases never change the storage format. "
        "The traditional method for moving data to a new major version is to dump and restore the "
        "database, though this can be slow. A faster method is pg_upgrade. "
        "New releases also typically introduce some user-visible incompatibilities. Cautious users "
        "will want to test their client applications on the new version before switching over fully.",
        "https://docs.example.com/upgrading",
        0.65,
        title="Server Setup",
    )
    answer = ExtractiveAnswerer().answer("How do I upgrade a cluster to a new major version?", [section])
    assert answer.text.startswith(
        "The traditional method for moving data to a new major version is to dump and restore the "
        "database, though this can be slow. A faster method is pg_upgrade."
    )


def test_source_titles_lose_permalink_marks_site_names_and_repeated_titles() -> None:
    sphinx = _p(
        "x",
        "Starting the Server¶ > Starting the Server > Server Start-up Failures¶\n\nbody",
        "https://pg/x",
        0.5,
        title="Starting the Server¶",
    )
    assert source_title(sphinx) == "Starting the Server > Server Start-up Failures"
    site = _p(
        "y",
        "Quickstart · askbase docs > Install\n\nbody",
        "https://a/y",
        0.5,
        title="Quickstart · askbase docs",
    )
    assert source_title(site) == "Quickstart > Install"
    assert source_title(_p("z", "no heading path", "https://a/z", 0.5, title="Plain")) == "Plain"


def test_gemini_never_sees_the_semantic_picks(fake: FakeGemini, settings: Settings) -> None:
    fake.reply = "It polls every 30 seconds [2]."
    pick = replace(
        _p("p9", "Elsewhere > Pick\n\nA page the embedding liked.", "https://x/pick", 0.5),
        semantic_pick=True,
    )
    answer = _gemini(fake, settings).answer("How often is the snapshot pointer checked?", [*PASSAGES, pick])
    prompt = fake.requests[-1]["contents"][0]["parts"][0]["text"]
    assert "the embedding liked" not in prompt and f"[{len(PASSAGES) + 1}]" not in prompt
    assert [p.chunk_id for p in answer.sources] == ["c2"]


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


def _gemini(fake: FakeGemini, settings: Settings, timeout: float = 5.0) -> GeminiAnswerer:
    answerer = get_answerer(
        "gemini",
        settings.model_copy(update={"gemini_base_url": fake.base_url, "gemini_timeout_seconds": timeout}),
    )
    assert isinstance(answerer, GeminiAnswerer)
    return answerer


def test_gemini_answers_with_system_prompt_passages_and_citations(
    fake: FakeGemini, settings: Settings
) -> None:
    fake.reply = "It polls every 30 seconds [2]. Tokens are rotated by restarting [9]."
    answer = _gemini(fake, settings).answer(
        "How often is the snapshot pointer checked? bot token", PASSAGES, "Answer like a pirate."
    )
    assert answer.answerer == "gemini"
    # [2] was the second passage; renumbered to [1]; [9] doesn't exist and is dropped.
    assert answer.text == "It polls every 30 seconds [1]. Tokens are rotated by restarting."
    assert [p.chunk_id for p in answer.sources] == ["c2"]
    request = fake.requests[-1]
    instruction = request["systemInstruction"]["parts"][0]["text"]
    assert "Answer like a pirate." in instruction
    # The prompt demands citations by passage number and names the refusal reply.
    assert "[1]" in instruction and NOT_IN_PASSAGES in instruction
    prompt = request["contents"][0]["parts"][0]["text"]
    assert "[1] Snapshots" in prompt and "https://docs.example.com/snapshots#publishing" in prompt
    assert fake.paths[-1].endswith(f"models/{settings.gemini_model}:generateContent")
    assert f"projects/{settings.project_id}/locations/{settings.region}" in fake.paths[-1]


def test_gemini_falls_back_to_extractive_on_timeout(fake: FakeGemini, settings: Settings) -> None:
    fake.delay = 120.0  # the model holds the request until the fake is stopped
    # Long enough for the fake to read and record the request on a busy machine; it is held anyway.
    answerer = _gemini(fake, settings, timeout=2.0)
    answer = answerer.answer("How often does the service check for a new snapshot?", PASSAGES, None)
    assert answer.answerer == "extractive"
    assert "[1]" in answer.text and answer.sources[0].chunk_id == "c1"
    # The answer came back while the model had not responded yet: the timeout cut the call short.
    assert len(fake.requests) == 1 and fake.responded == 0


def test_gemini_falls_back_to_extractive_on_server_error(fake: FakeGemini, settings: Settings) -> None:
    fake.status = 500
    answer = _gemini(fake, settings).answer("snapshot pointer", PASSAGES, None)
    assert answer.answerer == "extractive"
    assert len(fake.requests) == 1, "one attempt: the fallback is the retry"


def test_gemini_falls_back_on_empty_reply(fake: FakeGemini, settings: Settings) -> None:
    fake.reply = ""
    assert _gemini(fake, settings).answer("snapshot pointer", PASSAGES, None).answerer == "extractive"


def test_gemini_refuses_without_calling_the_model_when_nothing_is_relevant(
    fake: FakeGemini, settings: Settings
) -> None:
    far = [_p("x", "Unrelated filler about colours.", "https://docs.example.com/x", 0.05)]
    answer = _gemini(fake, settings).answer("What is the capital of Mongolia?", far, None)
    assert answer.text == NOTHING_FOUND and answer.sources == [] and answer.refused
    assert fake.requests == []


def test_unknown_answerer_name_is_extractive(settings: Settings) -> None:
    assert get_answerer("nope", settings).name == "extractive"


def test_gemini_keeps_a_verbatim_quote_and_drops_an_invented_one(
    fake: FakeGemini, settings: Settings
) -> None:
    fake.reply = (
        'The service "checks the pointer every 30 seconds" [1]. '
        'Snapshots are "replicated to three regions" [1]. '
        'To rotate a token, "stop the bot, paste the new token" [2][2].'
    )
    answer = _gemini(fake, settings).answer("How often is the pointer checked? bot token", PASSAGES, None)
    assert answer.answerer == "gemini" and not answer.refused
    assert "checks the pointer every 30 seconds" in answer.text
    # Passage 1 never says "replicated to three regions": that sentence is gone.
    assert "three regions" not in answer.text
    assert answer.text.endswith("[2].") and "[2][2]" not in answer.text
    assert [p.chunk_id for p in answer.sources] == ["c1", "c2"]


@pytest.mark.parametrize(
    "reply",
    [
        NOT_IN_PASSAGES,
        "The capital of Mongolia is Ulaanbaatar.",  # off-topic, cites nothing
        "It is Ulaanbaatar [7].",  # cites only a passage that does not exist
    ],
)
def test_gemini_reply_without_grounding_becomes_a_refusal(
    fake: FakeGemini, settings: Settings, reply: str
) -> None:
    fake.reply = reply
    answer = _gemini(fake, settings).answer("How often is the snapshot pointer checked?", PASSAGES, None)
    assert len(fake.requests) == 1
    assert answer.refused and answer.sources == [] and answer.answerer == "gemini"
    assert "Ulaanbaatar" not in answer.text
    assert answer.text.startswith(NOT_COVERED)
